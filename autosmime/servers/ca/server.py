"""Running the CA: HTTP (uvicorn) + the challenge mailer + the inbound reply listener.

    >>> from autosmime.servers.ca.server import CAServer
    >>> server = CAServer("/tmp/ca", "sqlite:////tmp/ca/ca.db", listen=("127.0.0.1", 0),   # doctest: +SKIP
    ...                   smtp=("127.0.0.1", 2525), inbound_smtp=("127.0.0.1", 0),
    ...                   dns_zones=["/tmp/stack/dns.zone"]).start()
    >>> server.directory_url, server.inbound_smtp_port                                     # doctest: +SKIP
    ('http://127.0.0.1:40123/acme/directory', 40124)
    >>> server.stop()                                                                      # doctest: +SKIP

Port 0 picks a free port (read it back from the attributes). ``start()``
runs uvicorn in a background thread and returns once the port answers;
``serve_forever()`` (the CLI) runs it in the calling thread until SIGINT or
SIGTERM. The CA directory's own zone file (DIR/dns.zone) is always loaded
with the ``--dns-zone`` files, so the CA can check its own mails' DKIM; with
no zone file at all, DKIM keys come from real DNS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from autosmime.errors import CAServerError
from autosmime.servers.ca.app import make_app
from autosmime.servers.ca.authority import Authority
from autosmime.servers.ca.dns import SystemResolver, TxtResolver, ZoneResolver
from autosmime.servers.ca.inbound import IMAPPoller, SMTPInbound
from autosmime.servers.ca.mail import Outbox, SMTPOutbox
from autosmime.servers.ca.service import CAService
from autosmime.servers.ca.settings import Settings
from autosmime.servers.ca.storage import Store
from autosmime.servers.listen import bind, uvicorn_server


def parse_hostport(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """'HOST:PORT', ':PORT' or 'PORT' -> (host, port); [v6]:port too."""
    from autosmime._hostport import parse_hostport as parse

    try:
        return parse(value, default_host=default_host, listen=True)
    except ValueError as e:
        raise CAServerError(f"not HOST:PORT: {e}") from None


class CAServer:
    def __init__(self, ca_dir: str | Path, db_url: str, *, listen: tuple[str, int] = ("127.0.0.1", 0),
                 smtp: tuple[str, int] | None = None, outbox: Outbox | None = None,
                 inbound_smtp: tuple[str, int] | None = None, inbound_imap: IMAPPoller | None = None,
                 dns_zones: Sequence[str | Path] = (), resolver: TxtResolver | None = None,
                 base_url: str | None = None, settings: Settings | None = None) -> None:
        self.authority = Authority.open(ca_dir)
        try:
            self._sock = bind(*listen)   # connections made before uvicorn runs wait in the backlog
        except OSError as e:
            raise CAServerError(f"cannot listen on {listen[0]}:{listen[1]}: {e.strerror or e}") from None
        self.host, self.port = self._sock.getsockname()[:2]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = base_url.rstrip("/") if base_url else f"http://{host}:{self.port}"
        self.directory_url = self.url + "/acme/directory"
        settings = settings or Settings()
        if not settings.base_url:
            settings.base_url = self.url
        if outbox is None:
            if smtp is None:
                raise CAServerError("no SMTP relay for the challenge mails (--smtp HOST:PORT)")
            outbox = SMTPOutbox(*smtp)
        if resolver is None:
            own = self.authority.directory / "dns.zone"
            files = ([own] if own.exists() else []) + [Path(z) for z in dns_zones]
            resolver = ZoneResolver.from_files(files) if dns_zones else _Layered(ZoneResolver.from_files(files))
        self.store = Store(db_url)
        self.service = CAService(self.authority, self.store, outbox, resolver, settings)
        self.app = make_app(self.service)
        self._inbound_smtp_addr = inbound_smtp
        self.inbound: SMTPInbound | None = None
        self.inbound_smtp_port: int | None = None
        self.imap = inbound_imap
        if self.imap is not None:
            self.imap.deliver = self.service.handle_reply
        self._uvicorn: Any = None
        self._thread: threading.Thread | None = None

    def _start_inbound(self) -> None:
        if self._inbound_smtp_addr is not None:
            self.inbound = SMTPInbound(self.service.handle_reply, *self._inbound_smtp_addr).start()
            self.inbound_smtp_port = self.inbound.port
        if self.imap is not None:
            self.imap.start()

    def _make_uvicorn(self) -> Any:
        return uvicorn_server(self.app, lifespan="off")

    def start(self, timeout: float = 15.0) -> CAServer:
        """Serve in background threads; returns when the HTTP port accepts requests."""
        self._start_inbound()
        self._uvicorn = self._make_uvicorn()
        self._uvicorn.config.install_signal_handlers = False  # not the main thread
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._sock]},
                                        name="ca-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise CAServerError("the CA's HTTP server did not start")
            time.sleep(0.01)
        return self

    def serve_forever(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve in this thread until SIGINT/SIGTERM (the CLI); ``on_ready`` runs once the ports listen."""
        self._start_inbound()
        if on_ready is not None:
            on_ready()
        self._uvicorn = self._make_uvicorn()
        try:
            self._uvicorn.run(sockets=[self._sock])
        finally:
            self.stop()

    def stop(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.inbound is not None:
            self.inbound.stop()
            self.inbound = None
        if self.imap is not None:
            self.imap.stop()
        self._sock.close()
        self.store.dispose()

    def __enter__(self) -> CAServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Layered:
    """The CA's own zone first, then real DNS (no --dns-zone given)."""

    def __init__(self, local: ZoneResolver) -> None:
        self.local = local
        self.system = SystemResolver()

    def txt(self, name: str) -> list[bytes]:
        return self.local.txt(name) or self.system.txt(name)
