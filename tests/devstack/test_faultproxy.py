"""The cutting proxy frees a cut connection at once, even while the server side stays silent.

A cut used to close the upstream socket under the thread blocked reading it: on
Linux that read does not wake, so the connection held its slot (and the
server's session) until the 60 s idle timeout, and after enough cuts the proxy
reset every new connection, the healed one included.
"""

from __future__ import annotations

import socket
import threading
import time

from autosmime.devstack.faultproxy import CuttingProxy


def _silent_server() -> tuple[socket.socket, list[socket.socket]]:
    """A server that accepts and never says a word, like an IMAP server awaiting a literal."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server, accepted


def _is_cut(client: socket.socket) -> bool:
    """The proxy ended the connection: a reset (what a cut sends) or, at worst, an end of stream."""
    try:
        return client.recv(10) == b""
    except ConnectionResetError:
        return True


def _wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_cut_connections_release_their_slots_while_the_server_is_silent():
    server, accepted = _silent_server()
    try:
        with CuttingProxy("127.0.0.1", server.getsockname()[1], max_connections=2, idle_timeout=60) as proxy:
            proxy.cut_after(3)
            for i in range(6):  # three times the slots
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
                    client.sendall(b"hello")
                    assert _is_cut(client)
                assert _wait_until(lambda: proxy.cuts == i + 1), f"cut {i + 1} not counted"
                # The slot comes back at once, not after the 60 s idle timeout (a refused connection is no cut).
                assert _wait_until(lambda: proxy.active == 0), f"cut {i + 1} still holds its slot"
            assert _wait_until(lambda: len(proxy._conns) == 0), "cut connections still held"
            # Healed: a new connection reaches the server and is forwarded both ways.
            proxy.cut_after(None)
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
                client.sendall(b"ping")
                assert _wait_until(lambda: len(accepted) == 7)
                accepted[-1].sendall(b"pong")
                assert client.recv(10) == b"pong"
    finally:
        server.close()
        for conn in accepted:
            conn.close()
