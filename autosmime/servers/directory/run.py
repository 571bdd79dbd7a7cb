"""Run the directory: blocking for the CLI, or in a background thread for the devstack and tests.

    >>> from autosmime.servers.directory.run import start
    >>> running = start(Config(db="sqlite:////tmp/d.db", trust=[ca], smtp=("127.0.0.1", 25)))   # doctest: +SKIP
    >>> running.url                                                                                # doctest: +SKIP
    'http://127.0.0.1:40123'
    >>> running.stop()                                                                             # doctest: +SKIP

``start`` binds the socket before returning (port 0 picks a free one), so the
URL it gives is already accepting connections.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

import uvicorn

from autosmime.errors import UsageError
from autosmime.servers.directory.app import make_app
from autosmime.servers.directory.service import Config, Directory
from autosmime.servers.listen import bind, uvicorn_server

__all__ = ["RunningDirectory", "parse_hostport", "serve", "start"]


def parse_hostport(value: str, default_port: int | None = None) -> tuple[str, int]:
    """'HOST:PORT', '[v6]:PORT' or ':PORT' (loopback); a bare host takes ``default_port``."""
    from autosmime._hostport import parse_hostport as parse

    try:
        return parse(value, default_host="127.0.0.1", default_port=default_port, listen=True)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _bind(host: str, port: int) -> socket.socket:
    try:
        return bind(host, port)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def _server(directory: Directory) -> uvicorn.Server:
    return uvicorn_server(make_app(directory))


@dataclass
class RunningDirectory:
    url: str
    directory: Directory
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.directory.engine.dispose()


def start(config: Config, host: str = "127.0.0.1", port: int = 0) -> RunningDirectory:
    """The directory serving in a daemon thread of this process."""
    directory = Directory(config)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    url = f"http://{host}:{bound}" if ":" not in host else f"http://[{host}]:{bound}"
    if not config.public_url:
        config.public_url = url
    server = _server(directory)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="autosmime-directory", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.02)
    if not server.started:
        raise UsageError(f"the directory did not start on {url}")
    return RunningDirectory(url, directory, server, thread)


def serve(config: Config, host: str, port: int) -> None:
    """Serve in the foreground until interrupted (the CLI's ``directory serve``)."""
    directory = Directory(config)
    sock = _bind(host, port)
    if not config.public_url:
        config.public_url = f"http://{host}:{sock.getsockname()[1]}"
    _server(directory).run(sockets=[sock])
