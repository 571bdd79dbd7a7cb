"""Where replies come in: the CA's own SMTP listener (aiosmtpd) or a polled IMAP mailbox.

    >>> from autosmime.servers.ca.inbound import SMTPInbound      # doctest: +SKIP
    >>> inbound = SMTPInbound(service.handle_reply, "127.0.0.1", 2526).start()   # doctest: +SKIP
    >>> inbound.stop()                                             # doctest: +SKIP

Both hand every message to one callable (``CAService.handle_reply``), which
decides on its own whether the mail counts. The SMTP listener accepts any
recipient and always answers 250 after processing, so a sender learns nothing
about validation from the SMTP dialogue; messages over 1 MB are refused. The
IMAP poller fetches every message in the folder, hands it over, then deletes
and expunges it (the mailbox is the CA's own).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("autosmime.ca")

MAX_MESSAGE = 1024 * 1024


class _Handler:
    def __init__(self, deliver: Callable[[bytes], Any]) -> None:
        self.deliver = deliver

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd API
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.deliver, raw)
        except Exception:
            log.exception("handling an inbound reply failed")
            return "451 4.3.0 temporary failure, try again"
        return "250 2.0.0 OK"


class SMTPInbound:
    """An aiosmtpd listener in its own thread."""

    def __init__(self, deliver: Callable[[bytes], Any], host: str = "127.0.0.1", port: int = 0) -> None:
        self.deliver, self.host, self.port = deliver, host, port
        self._controller: Any = None

    def start(self) -> SMTPInbound:
        from aiosmtpd.controller import Controller

        if self.port == 0:
            import socket

            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = int(s.getsockname()[1])
        self._controller = Controller(_Handler(self.deliver), hostname=self.host, port=self.port,
                                      data_size_limit=MAX_MESSAGE, ready_timeout=10,
                                      server_hostname="autosmime-ca")
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class IMAPPoller:
    """Polls an IMAP folder every ``interval`` seconds in a thread."""

    def __init__(self, deliver: Callable[[bytes], Any], host: str, port: int, user: str, password: str, *,
                 use_ssl: bool = True, folder: str = "INBOX", interval: float = 2.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.deliver = deliver
        self.host, self.port, self.user, self._password = host, port, user, password
        self.use_ssl, self.folder, self.interval = use_ssl, folder, interval
        self.ssl_context = ssl_context
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> IMAPPoller:
        self._thread = threading.Thread(target=self._run, name="ca-imap-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def poll_once(self) -> int:
        """Fetch, hand over and delete every message in the folder; returns how many."""
        from imapclient import IMAPClient

        context = self.ssl_context or ssl.create_default_context()
        with IMAPClient(self.host, self.port, ssl=self.use_ssl, ssl_context=context if self.use_ssl else None,
                        timeout=30) as client:
            if not self.use_ssl:
                client.starttls(context)
            client.login(self.user, self._password)
            client.select_folder(self.folder)
            uids = client.search(["NOT", "DELETED"])
            for uid, data in client.fetch(uids, ["RFC822"]).items():
                raw = data.get(b"RFC822")
                if raw:
                    try:
                        self.deliver(bytes(raw))
                    except Exception:
                        log.exception("handling a polled reply failed")
                        continue
                client.delete_messages([uid])
            if uids:
                client.expunge()
            return len(uids)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as e:  # the server may be down for a while; keep polling
                log.warning("IMAP poll failed: %s", type(e).__name__)
            self._stop.wait(self.interval)
