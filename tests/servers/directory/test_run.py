"""The server's listening socket: bound before start returns, and without Nagle's delay."""

from __future__ import annotations

import socket

import httpx

from autosmime.servers.directory.run import _bind, parse_hostport, start
from tests.servers.directory import support


def test_listening_socket_disables_nagle():
    # uvicorn writes a response's head and body in two sends; with Nagle the body waited for the client's
    # delayed ACK, 40 ms per request. Accepted connections inherit TCP_NODELAY from the listening socket.
    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()


def test_start_serves_and_stops(pki, tmp_path):
    running = start(support.config(pki, f"sqlite:///{tmp_path}/run.db"))
    try:
        assert httpx.get(running.url + "/healthz").text == "ok"
        assert running.directory.config.public_url == running.url
    finally:
        running.stop()


def test_parse_hostport():
    assert parse_hostport("127.0.0.1:8480") == ("127.0.0.1", 8480)
    assert parse_hostport("localhost", 25) == ("localhost", 25)
    assert parse_hostport("[::1]:25") == ("::1", 25)
