"""Send a finished message over SMTP exactly as it is.

    >>> from autosmime.mailbox.smtp import send
    >>> send(account, password, raw, "a@example.test", ["b@example.test"])   # doctest: +SKIP
    >>> check_login(account, password)                                        # doctest: +SKIP

``raw`` goes on the wire byte for byte (only SMTP dot-stuffing applies): a
signed message must never be re-serialised by the ``email`` package on its
way out (smime-crypto.md §7 rule 3). A server that accepts but never answers
fails with MailboxTimeout after the account's timeout (10 s unless
configured); the server's replies are shown only through
:func:`autosmime.mailbox.text.server_text`.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
from collections.abc import Iterator, Sequence

from autosmime.errors import AuthenticationFailed, MailboxError, MailboxTimeout, MessageRefused, TLSFailure
from autosmime.mailbox.account import Account, check_security, network_timeout
from autosmime.mailbox.greeting import await_greeting, plain_text_answer, starttls_hint
from autosmime.mailbox.imap import connect_error, tls_context
from autosmime.mailbox.text import server_text


@contextlib.contextmanager
def _session(account: Account, password: str, timeout: float | None) -> Iterator[tuple[smtplib.SMTP, str]]:
    """A connected, TLS-protected (unless plain on loopback), logged-in SMTP session.

    ``timeout`` bounds the connection and every wait for a reply (smtplib sets it on the socket).
    """
    timeout = network_timeout(account) if timeout is None else timeout
    host, port = account.smtp_host, account.smtp_port
    where = f"SMTP server {host}:{port}"
    security = account.smtp_security
    check_security(security, host)
    ctx = tls_context(account.ca_file) if security != "plain" else None
    try:
        if security == "tls":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ctx)
        else:
            conn = _GreetedSMTP(host, port, timeout=timeout, where=where)
    except (OSError, smtplib.SMTPException) as e:
        if security == "tls" and plain_text_answer(e):
            raise TLSFailure(starttls_hint(where, "smtp")) from None
        raise _error(e, where) from None
    ok = False
    try:
        conn.ehlo()
        if security == "starttls":
            if not conn.has_extn("starttls"):
                raise TLSFailure(f"{where} does not offer STARTTLS")
            conn.starttls(context=ctx)
            conn.ehlo()
        if conn.has_extn("auth"):
            conn.login(account.username, password)
        yield conn, where
        ok = True
    except (OSError, smtplib.SMTPException) as e:
        raise _error(e, where, account.username) from None
    finally:
        if not ok:  # after a failure (a silent server above all) a QUIT would only wait once more
            conn.close()
        else:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()


class _GreetedSMTP(smtplib.SMTP):
    """smtplib.SMTP whose connection fails fast when the port expects TLS (see mailbox.greeting)."""

    def __init__(self, host: str, port: int, *, timeout: float, where: str) -> None:
        self._where = where
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        await_greeting(sock, timeout=timeout, where=self._where, protocol="smtp")
        return sock


def send(account: Account, password: str, raw: bytes, sender: str, recipients: Sequence[str], *,
         timeout: float | None = None) -> None:
    """Submit ``raw`` from ``sender`` to ``recipients`` with SMTP AUTH."""
    if not isinstance(raw, (bytes, bytearray)):
        raise TypeError("raw must be bytes")
    if not recipients:
        raise MailboxError("no recipients")
    with _session(account, password, timeout) as (conn, _where):
        options = ["BODY=8BITMIME"] if not bytes(raw).isascii() and conn.has_extn("8bitmime") else []
        conn.sendmail(sender, list(recipients), bytes(raw), mail_options=options)


def check_login(account: Account, password: str, *, timeout: float | None = None) -> None:
    """Connect, secure and log in to the SMTP server, sending nothing: proves the settings work."""
    with _session(account, password, timeout):
        pass


def _error(e: BaseException, where: str, username: str = "") -> MailboxError:
    if isinstance(e, OSError) and not isinstance(e, smtplib.SMTPException):  # sockets, TLS, timeouts
        return connect_error(e, where)
    if isinstance(e, smtplib.SMTPAuthenticationError):
        return AuthenticationFailed(f"{where} rejected the login for {username}: {e.smtp_code} {_reply(e.smtp_error)}")
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        refused = ", ".join(f"{rcpt} ({code} {_reply(msg)})" for rcpt, (code, msg) in e.recipients.items())
        permanent = all(code >= 500 for code, _ in e.recipients.values())
        return (MessageRefused if permanent else MailboxError)(f"{where} refused recipients: {refused}")
    if isinstance(e, smtplib.SMTPResponseException):
        kind = MessageRefused if e.smtp_code >= 500 else MailboxError  # 4xx: try again later; 5xx: never as it is
        return kind(f"{where}: {e.smtp_code} {_reply(e.smtp_error)}")
    if isinstance(e, smtplib.SMTPServerDisconnected) and isinstance(e.__context__, TimeoutError):
        return MailboxTimeout(f"{where}: timed out (no answer)")  # smtplib reports a read timeout so
    if isinstance(e, smtplib.SMTPServerDisconnected):
        return MailboxError(f"{where}: connection lost: {server_text(str(e))}")
    if isinstance(e, smtplib.SMTPException):
        return MailboxError(f"{where}: {server_text(str(e))}")
    return MailboxError(f"{where}: {server_text(str(e))}")


def _reply(text: bytes | str) -> str:
    return server_text(text)
