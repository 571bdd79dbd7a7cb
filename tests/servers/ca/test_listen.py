"""The CA's listening socket: without Nagle's delay, like the directory's (autosmime.servers.listen)."""

from __future__ import annotations

import socket

import httpx

from tests.servers.ca.conftest import CA


def test_listening_socket_disables_nagle(ca: CA) -> None:
    # uvicorn writes a response's head and body in two sends; with Nagle the body waited for the client's
    # delayed ACK, 40 ms per request. Accepted connections inherit TCP_NODELAY from the listening socket.
    assert ca.server._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert httpx.get(ca.directory_url).status_code == 200
