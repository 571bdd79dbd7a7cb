"""A wrong security mode fails in seconds with a hint, not after the full timeout.

    >>> from autosmime.mailbox.greeting import tls_expected_hint
    >>> tls_expected_hint("IMAP server mail.example.test:993", "imap", 3)
    'IMAP server mail.example.test:993: timed out: no plain-text greeting within 3 s; it may expect TLS from the start: try --security tls (or imap=tls)'

The two mistakes a user makes with a port and a mode:

- STARTTLS (or plain) on an implicit-TLS port (993, 465): the server waits for a
  TLS ClientHello while the client waits for a greeting, so both sit silent until
  the timeout. IMAP and SMTP servers greet at once, so :func:`await_greeting` gives
  the greeting :data:`GREETING_WAIT` seconds (or the account's timeout if shorter)
  and then fails with a :class:`MailboxTimeout` saying to try TLS.
- TLS on a plain-text port (143, 587, 25): the server's greeting arrives where the
  TLS handshake expects a record, and OpenSSL fails at once (``WRONG_VERSION_NUMBER``
  and relatives); :func:`plain_text_answer` recognises that, and the error says to
  try STARTTLS.
"""

from __future__ import annotations

import selectors
import socket
import ssl

from autosmime.errors import MailboxTimeout

__all__ = ["GREETING_WAIT", "await_greeting", "plain_text_answer", "starttls_hint", "tls_expected_hint"]

#: seconds a server has to send its plain-text greeting (real servers greet within milliseconds)
GREETING_WAIT = 3.0

# What OpenSSL says when the bytes after the ClientHello are "* OK ..." or "220 ..." instead of a TLS record
_PLAIN_TEXT_REASONS = frozenset({"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE",
                                 "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST", "RECORD_TOO_LARGE",
                                 "TLSV1_ALERT_PROTOCOL_VERSION", "UNEXPECTED_RECORD"})


def tls_expected_hint(where: str, protocol: str, wait: float) -> str:
    return (f"{where}: timed out: no plain-text greeting within {wait:g} s; it may expect TLS from the start: "
            f"try --security tls (or {protocol}=tls)")


def starttls_hint(where: str, protocol: str) -> str:
    return (f"{where}: TLS handshake failed: the server answered in plain text; it may expect STARTTLS: "
            f"try --security starttls (or {protocol}=starttls)")


def await_greeting(sock: socket.socket, *, timeout: float | None, where: str, protocol: str) -> None:
    """Return once ``sock`` has something to read; close it and raise MailboxTimeout with the TLS hint if
    the server stays silent for :data:`GREETING_WAIT` seconds (or ``timeout``, if shorter). Reads nothing."""
    wait = GREETING_WAIT if timeout is None else min(GREETING_WAIT, timeout)
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        if selector.select(wait):
            return
    sock.close()
    raise MailboxTimeout(tls_expected_hint(where, protocol, wait))


def plain_text_answer(e: BaseException) -> bool:
    """True if ``e`` is a TLS handshake that failed because the server spoke plain text."""
    return (isinstance(e, ssl.SSLError) and not isinstance(e, ssl.SSLCertVerificationError)
            and str(getattr(e, "reason", "") or "").upper() in _PLAIN_TEXT_REASONS)
