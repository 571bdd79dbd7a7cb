"""The user's IMAP mailbox: folders, APPEND, header search and byte-exact FETCH.

    >>> from autosmime.mailbox.imap import ImapMailbox
    >>> with ImapMailbox.connect(account, password) as box:          # doctest: +SKIP
    ...     box.ensure_folder("autosmime-keys")
    ...     uid = box.append("autosmime-keys", raw)
    ...     box.fetch("autosmime-keys", [uid])[uid] == raw
    True

Every failure surfaces as an :mod:`autosmime.errors` MailboxError subclass:
AuthenticationFailed, ServerUnreachable, MailboxTimeout, TLSFailure,
FolderError, or MailboxError (e.g. the connection dropped mid-command).
Passwords never appear in messages or logs; the server's own text is passed
through :func:`autosmime.mailbox.text.server_text` first. A server that
accepts but never answers fails with MailboxTimeout after the account's
timeout (10 s unless configured), for the connection and for every answer.
"""

from __future__ import annotations

import ast
import contextlib
import imaplib
import re
import socket
import ssl
import time
from collections.abc import Iterator, Sequence

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.imap4 import IMAP4WithTimeout

from autosmime.errors import (
    AuthenticationFailed,
    FolderError,
    MailboxError,
    MailboxTimeout,
    ServerUnreachable,
    TLSFailure,
)
from autosmime.mailbox.account import Account, check_security, network_timeout
from autosmime.mailbox.greeting import await_greeting, plain_text_answer, starttls_hint
from autosmime.mailbox.text import server_text

_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]", re.I)
_FOLDER_CODES = ("NONEXISTENT", "TRYCREATE", "NOPERM", "CANNOT", "ALREADYEXISTS")


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificate and hostname verification always on; ``ca_file`` replaces the system roots."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise TLSFailure(f"cannot load CA file {ca_file}: {getattr(e, 'strerror', None) or e}") from None


def connect_error(e: BaseException, what: str) -> MailboxError:
    """Map a connection-time exception to the error the user should see."""
    if isinstance(e, (TimeoutError, socket.timeout)):  # before SSLError: a TLS handshake can time out too
        return MailboxTimeout(f"{what}: timed out (no answer)")
    if isinstance(e, ssl.SSLCertVerificationError):
        return TLSFailure(f"{what}: certificate not trusted: {e.verify_message or e.reason}")
    if isinstance(e, ssl.SSLError):
        return TLSFailure(f"{what}: TLS handshake failed: {e.reason or e}")
    if isinstance(e, socket.gaierror):
        return ServerUnreachable(f"{what}: host not found: {e.strerror}")
    if isinstance(e, ConnectionRefusedError):
        return ServerUnreachable(f"{what}: connection refused")
    if isinstance(e, OSError):
        return ServerUnreachable(f"{what}: {server_text(e.strerror or str(e))}")
    return MailboxError(f"{what}: {server_text(str(e))}")


def _text(e: BaseException) -> str:
    """The server's words in an imaplib/IMAPClient exception, made safe to show."""
    text = str(e)
    if len(e.args) == 1 and isinstance(e.args[0], bytes):   # imaplib passes server text as bytes
        text = e.args[0].decode(errors="replace")
    elif re.fullmatch(r"b'.*'|b\".*\"", text, re.S):        # IMAPClient passes str(bytes): read the repr back
        try:
            text = ast.literal_eval(text).decode(errors="replace")
        except (ValueError, SyntaxError, AttributeError):
            text = text[2:-1]
    return server_text(text) or type(e).__name__


class ImapMailbox:
    """One logged-in IMAP connection. Not thread-safe; use one per thread."""

    def __init__(self, client: imapclient.IMAPClient, where: str) -> None:
        self._client = client
        self._where = where
        self._selected: str | None = None
        self._closed = False

    @classmethod
    def connect(cls, account: Account, password: str, *, timeout: float | None = None) -> ImapMailbox:
        """Connect, secure and log in. ``timeout`` (seconds; default: :func:`network_timeout`) bounds
        the connection and then every wait for an answer."""
        timeout = network_timeout(account) if timeout is None else timeout
        host, port = account.imap_host, account.imap_port
        where = f"IMAP server {host}:{port}"
        security = account.imap_security
        check_security(security, host)
        ctx = tls_context(account.ca_file) if security != "plain" else None
        try:
            client = _Client(host, port=port, ssl=security == "tls", ssl_context=ctx, timeout=timeout, where=where)
        except (OSError, imaplib.IMAP4.error) as e:
            if security == "tls" and plain_text_answer(e):
                raise TLSFailure(starttls_hint(where, "imap")) from None
            raise connect_error(e, where) from None
        try:
            if security == "starttls":
                if b"STARTTLS" not in client.capabilities():
                    raise TLSFailure(f"{where} does not offer STARTTLS")
                client.starttls(ctx)
            client.login(account.username, password)
        except LoginError as e:
            _shutdown(client)
            raise AuthenticationFailed(f"{where} rejected the login for {account.username}: {_text(e)}") from None
        except OSError as e:       # includes ssl.SSLError
            _shutdown(client)
            raise connect_error(e, where) from None
        except imaplib.IMAP4.error as e:
            _shutdown(client)
            raise MailboxError(f"{where}: {_text(e)}") from None
        except BaseException:
            _shutdown(client)
            raise
        return cls(client, where)

    # --- context manager -----------------------------------------------------------

    def __enter__(self) -> ImapMailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Log out; never raises (the connection may already be gone)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client.logout()
        except Exception:
            pass
        _shutdown(self._client)

    # --- folders ---------------------------------------------------------------------

    def list_folders(self) -> list[str]:
        with self._errors("LIST"):
            return [name for _flags, _sep, name in self._client.list_folders()]

    def special_folder(self, use: str) -> str | None:
        """The folder the server marks with SPECIAL-USE ``use`` (e.g. ``\\Sent``, RFC 6154), or None."""
        wanted = use.encode().lower()
        with self._errors("LIST"):
            for flags, _sep, name in self._client.list_folders():
                if any(bytes(f).lower() == wanted for f in flags):
                    return str(name)
        return None

    def folder_exists(self, name: str) -> bool:
        if not name:  # LIST "" "" answers with the hierarchy delimiter (RFC 3501 6.3.8): no folder is named ""
            return False
        with self._errors("LIST"):
            return bool(self._client.folder_exists(name))

    def ensure_folder(self, name: str) -> None:
        """Create ``name`` unless it exists (safe when two clients race to create it)."""
        if self.folder_exists(name):
            return
        try:
            with self._errors(f"CREATE {name}"):
                self._client.create_folder(name)
        except FolderError:
            if not self.folder_exists(name):   # lost a race with another client: fine
                raise

    # --- messages --------------------------------------------------------------------

    def append(self, folder: str, raw: bytes, flags: Sequence[str] = (r"\Seen",)) -> int | None:
        """APPEND ``raw`` (sent as a literal, byte for byte; use CRLF line ends). Returns the
        new message's UID when the server reports it (UIDPLUS), else None."""
        with self._errors(f"APPEND to {folder}"):
            response = self._client.append(folder, raw, flags=tuple(flags))
        match = _APPENDUID.search(response if isinstance(response, bytes) else str(response).encode())
        return int(match.group(1)) if match else None

    def uids(self, folder: str) -> list[int]:
        """Every UID in ``folder``, ascending (the newest last)."""
        self._select(folder)
        with self._errors(f"SEARCH in {folder}"):
            return sorted(int(uid) for uid in self._client.search(["ALL"]))

    def search_header(self, folder: str, header: str, value: str) -> list[int]:
        """UIDs in ``folder`` whose ``header`` contains ``value`` (IMAP substring match)."""
        self._select(folder)
        criteria = ["HEADER", header, value]
        charset = None if value.isascii() and header.isascii() else "UTF-8"
        with self._errors(f"SEARCH in {folder}"):
            return sorted(int(uid) for uid in self._client.search(criteria, charset=charset))

    def fetch(self, folder: str, uids: Sequence[int]) -> dict[int, bytes]:
        """The exact bytes of each message (BODY.PEEK[]: leaves \\Seen alone). Missing UIDs are absent."""
        if not uids:
            return {}
        self._select(folder)
        with self._errors(f"FETCH in {folder}"):
            data = self._client.fetch(list(uids), ["BODY.PEEK[]"])
        out: dict[int, bytes] = {}
        for uid, item in data.items():
            body = item.get(b"BODY[]")
            if body is not None:
                out[int(uid)] = bytes(body)
        return out

    def delete(self, folder: str, uids: Sequence[int]) -> None:
        """Flag \\Deleted and UID EXPUNGE exactly these messages (others' \\Deleted untouched)."""
        if not uids:
            return
        self._select(folder)
        with self._errors(f"DELETE in {folder}"):
            self._client.delete_messages(list(uids))
            self._client.uid_expunge(list(uids))

    def wait_for(self, folder: str, header: str, value: str, timeout: float = 10,
                 interval: float = 0.1) -> list[int]:
        """Poll until a message matching ``header``/``value`` is in ``folder``; [] on timeout.

        Each poll sends a NOOP first: Dovecot shows messages appended by other
        connections to a repeated SEARCH only after one.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                uids = self.search_header(folder, header, value)
            except FolderError:
                uids = []            # the folder may appear with the first delivery
                self._selected = None
            if uids or time.monotonic() >= deadline:
                return uids
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            if self._selected is not None:
                with self._errors("NOOP"):
                    self._client.noop()

    # --- internals ---------------------------------------------------------------------

    def _select(self, folder: str) -> None:
        if self._selected == folder:
            return
        self._selected = None
        with self._errors(f"SELECT {folder}"):
            self._client.select_folder(folder)
        self._selected = folder

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        if self._closed:
            raise MailboxError(f"{self._where}: connection already closed")
        try:
            yield
        except imaplib.IMAP4.abort as e:
            self._lost()
            raise MailboxError(f"{self._where}: connection lost during {what}: {_text(e)}") from None
        except (IMAPClientError, imaplib.IMAP4.error) as e:
            text = _text(e)
            if any(code in text.upper() for code in _FOLDER_CODES) or "doesn't exist" in text.lower():
                raise FolderError(f"{self._where}: {what} failed: {text}") from None
            raise MailboxError(f"{self._where}: {what} failed: {text}") from None
        except (OSError, EOFError) as e:
            self._lost()
            if isinstance(e, (TimeoutError, socket.timeout)):
                raise MailboxTimeout(f"{self._where}: timed out during {what} (no answer)") from None
            raise MailboxError(f"{self._where}: connection lost during {what}: "
                               f"{server_text(getattr(e, 'strerror', None) or '') or _text(e)}") from None

    def _lost(self) -> None:
        self._closed = True
        self._selected = None
        _shutdown(self._client)


class _Client(imapclient.IMAPClient):
    """IMAPClient whose plain-text connections fail fast when the port expects TLS (see mailbox.greeting)."""

    def __init__(self, *args: object, where: str, **kwargs: object) -> None:
        self._where = where
        super().__init__(*args, **kwargs)

    def _create_IMAP4(self) -> imaplib.IMAP4:
        if self.ssl or self.stream:
            return super()._create_IMAP4()
        return _GreetedIMAP4(self.host, self.port, getattr(self._timeout, "connect", None), self._where)


class _GreetedIMAP4(IMAP4WithTimeout):
    def __init__(self, host: str, port: int, timeout: float | None, where: str) -> None:
        self._where = where
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        sock = super()._create_socket(timeout)
        await_greeting(sock, timeout=self._timeout, where=self._where, protocol="imap")
        return sock


def _shutdown(client: imapclient.IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception:
        pass
