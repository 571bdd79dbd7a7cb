"""Process helpers for the devstack: readiness probes and stopping by PID.

    >>> from autosmime.devstack._procs import descendants
    >>> import os
    >>> os.getpid() in descendants(os.getppid()) or True
    True
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def _ppids() -> dict[int, int]:
    table: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # comm may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        table[int(entry)] = int(fields[1])
    return table


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (not ``pid`` itself)."""
    table = _ppids()
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in table.items():
            if ppid == parent and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2:].split()[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def terminate(pids: dict[int, str], grace: float = 10.0) -> None:
    """SIGTERM every PID whose command line still contains its marker, wait, then SIGKILL.

    The marker check guards against a stale pid file naming a recycled PID.
    Children are collected first so that nothing a master leaves behind survives.
    """
    ours = {pid for pid, marker in pids.items() if alive(pid) and marker in cmdline(pid)}
    family = set(ours)
    for pid in ours:
        family |= descendants(pid)
    for pid in ours:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in ours):
        _reap(ours)
        time.sleep(0.05)
    for pid in family:
        if alive(pid):
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in family):
        _reap(family)
        time.sleep(0.02)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pids: set[int]) -> None:
    # Our own children become zombies until waited for.
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def banner(port: int, expect: bytes | None, timeout: float = 0.5) -> bool:
    """True once 127.0.0.1:port accepts (and greets with ``expect`` if given)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            if expect is None:
                return True
            data = b""
            while b"\n" not in data:
                chunk = s.recv(512)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(expect)
    except OSError:
        return False


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (a race remains; callers retry start)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def log_tail(*paths: Path, lines: int = 15) -> str:
    out = []
    for path in paths:
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if text:
            out.append(f"--- {path.name} ---\n" + "\n".join(text))
    return "\n".join(out) or "(no log output)"
