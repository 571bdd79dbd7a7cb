"""The servers' listening socket and uvicorn instance, one way for the CA and the directory.

    >>> from autosmime.servers.listen import bind, uvicorn_server
    >>> sock = bind("127.0.0.1", 0)               # bound and listening: port 0 picks a free one
    >>> sock.getsockname()[1] > 0
    True
    >>> sock.close()
    >>> server = uvicorn_server(app)               # doctest: +SKIP
    >>> server.run(sockets=[sock])                 # doctest: +SKIP

The socket is bound before uvicorn runs, so a caller knows its port (and
connections made meanwhile wait in the backlog).
"""

from __future__ import annotations

import socket
from typing import Any, Literal

__all__ = ["bind", "uvicorn_server"]


def bind(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on (host, port) with TCP_NODELAY; OSError (socket closed) if it cannot bind."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: uvicorn writes a response's head and body in two sends, and with
        # Nagle the body waited for the client's delayed ACK (40 ms per request on Linux loopback).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app: Any, *, lifespan: Literal["auto", "on", "off"] = "on") -> Any:
    """A quiet uvicorn Server for ``app``, to be run on a socket from :func:`bind`.

    loop and http stay "auto": uvicorn picks uvloop and httptools when they are installed
    (``uvicorn[standard]``), which more than doubled the requests per server core against
    the asyncio loop and h11 (benchmarks/bench_directory.py, healthz bound).
    """
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan, timeout_keep_alive=30)
    return uvicorn.Server(config)
