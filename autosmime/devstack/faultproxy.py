"""A TCP proxy on 127.0.0.1 that cuts connections abruptly after a chosen number of client bytes.

    >>> from autosmime.devstack.faultproxy import CuttingProxy
    >>> proxy = CuttingProxy("127.0.0.1", 143)      # doctest: +SKIP
    >>> proxy.cut_after(500)                         # doctest: +SKIP
    >>> # connect to 127.0.0.1:proxy.port: the connection dies after the client's 500th byte
    >>> proxy.cut_after(None); proxy.stop()          # doctest: +SKIP

Fault injection for tests: "the network fails in the middle of an IMAP
APPEND". A cut resets both sockets (SO_LINGER 0 → RST), so the client sees
a reset, not an orderly close. Threads only; the number of connections is
bounded and the proxy stops by itself after ``lifetime`` seconds.
"""

from __future__ import annotations

import atexit
import socket
import struct
import threading
import time

_LINGER_RST = struct.pack("ii", 1, 0)


class CuttingProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host``:``target_port``."""

    def __init__(self, target_host: str, target_port: int, *, max_connections: int = 64,
                 idle_timeout: float = 60.0, lifetime: float = 1800.0) -> None:
        self.target = (target_host, target_port)
        self._limit: int | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._idle = idle_timeout
        self._stopping = threading.Event()
        self.connections = 0       # accepted so far
        self.cuts = 0              # connections cut on purpose
        self.active = 0            # connections holding a slot now
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port: int = self._server.getsockname()[1]
        self._deadline = time.monotonic() + lifetime
        self._thread = threading.Thread(target=self._accept_loop, name=f"CuttingProxy:{self.port}", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def cut_after(self, n_bytes: int | None) -> None:
        """Cut every connection accepted from now on once the client has sent ``n_bytes``.

        ``0`` cuts right after accepting (before the server greeting reaches
        the client); ``None`` stops cutting. Open connections keep the limit
        they were accepted with.
        """
        if n_bytes is not None and n_bytes < 0:
            raise ValueError("n_bytes must be >= 0 or None")
        with self._lock:
            self._limit = n_bytes

    def stop(self) -> None:
        """Close the listener and reset every open connection."""
        self._stopping.set()
        try:
            self._server.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            _reset(sock)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            if time.monotonic() > self._deadline:
                self.stop()
                return
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                _reset(client)
                continue
            with self._lock:
                limit = self._limit
                self.connections += 1
                self.active += 1
            threading.Thread(target=self._serve, args=(client, limit), daemon=True).start()

    def _serve(self, client: socket.socket, limit: int | None) -> None:
        upstream: socket.socket | None = None
        try:
            if limit == 0:
                self._count_cut()
                _reset(client)
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                _reset(client)
                return
            for sock in (client, upstream):
                sock.settimeout(self._idle)
            with self._lock:
                self._conns.update((client, upstream))
            done = threading.Event()
            state = {"sent": 0}

            def cut() -> None:
                if not done.is_set():
                    done.set()
                    _reset(client)
                    _reset(upstream)

            def pump(src: socket.socket, dst: socket.socket, from_client: bool) -> None:
                try:
                    while not done.is_set():
                        data = src.recv(65536)
                        if not data:
                            break
                        if from_client and limit is not None:
                            room = limit - state["sent"]
                            if len(data) >= room:
                                dst.sendall(data[:room])
                                state["sent"] += room
                                self._count_cut()
                                break
                            state["sent"] += len(data)
                        dst.sendall(data)
                except OSError:
                    pass
                cut()

            other = threading.Thread(target=pump, args=(upstream, client, False), daemon=True)
            other.start()
            pump(client, upstream, True)
            other.join(timeout=self._idle)
        finally:
            with self._lock:
                self._conns.discard(client)
                if upstream is not None:
                    self._conns.discard(upstream)
                self.active -= 1
                self._slots.release()

    def _count_cut(self) -> None:
        with self._lock:
            self.cuts += 1


def _reset(sock: socket.socket) -> None:
    """Abort ``sock``: wake a thread blocked reading it, then close it with an RST (SO_LINGER 0).

    close() alone does not wake a recv() blocked in another thread on Linux: the
    connection (and the server's session) then lived on until the idle timeout,
    holding a slot. shutdown(SHUT_RD) wakes the reader and sends nothing.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class SilentServer:
    """A server on 127.0.0.1 that accepts connections and then never answers (after an optional banner).

        >>> with SilentServer() as silent:                       # doctest: +SKIP
        ...     ImapMailbox.connect(account_on(silent.port), pw)  # raises MailboxTimeout

    The hung provider of a timeout test: the TCP handshake completes (the kernel
    does it), ``banner`` (e.g. an IMAP greeting) is sent if given, and whatever
    the client sends is read and dropped. Connections are bounded in number and
    the server stops by itself after ``lifetime`` seconds.
    """

    def __init__(self, banner: bytes = b"", *, max_connections: int = 16, lifetime: float = 600.0) -> None:
        self.banner = banner
        self.connections = 0
        self._max = max_connections
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port: int = self._server.getsockname()[1]
        self._deadline = time.monotonic() + lifetime
        self._thread = threading.Thread(target=self._accept_loop, name=f"SilentServer:{self.port}", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        """Close the listener and every connection."""
        self._stopping.set()
        try:
            self._server.close()
        except OSError:
            pass
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            _reset(sock)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set() and time.monotonic() < self._deadline:
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                full = len(self._conns) >= self._max
                if not full:
                    self._conns.append(client)
                    self.connections += 1
            if full:
                _reset(client)
                continue
            threading.Thread(target=self._drain, args=(client,), daemon=True).start()
        self.stop()

    def _drain(self, client: socket.socket) -> None:
        try:
            client.settimeout(1.0)
            if self.banner:
                client.sendall(self.banner)
            while not self._stopping.is_set():
                try:
                    if not client.recv(65536):
                        return
                except TimeoutError:
                    continue
        except OSError:
            return
