"""An in-memory mailbox for fast tests: many devices, one account, and connection cuts on demand.

    >>> from autosmime.mailbox.memory import MemoryServer
    >>> server = MemoryServer()
    >>> laptop, phone = server.session(), server.session()
    >>> laptop.ensure_folder("keys"); uid = laptop.append("keys", b"Subject: hi\\r\\n\\r\\n")
    >>> phone.search_header("keys", "subject", "HI") == [uid]
    True
    >>> server.faults = lambda op: "before" if op == "append" else None
    >>> try:
    ...     phone.append("keys", b"Subject: lost\\r\\n\\r\\n")
    ... except Exception as e:
    ...     print(type(e).__name__)
    MailboxError

It implements :class:`autosmime.mailbox.session.MailboxSession` with the
IMAP behaviour the backup code relies on: UIDs grow and are never reused,
APPEND reports the new UID (UIDPLUS), SEARCH HEADER is a case-insensitive
substring match, FETCH returns the stored bytes exactly. ``faults`` decides
per operation whether the connection breaks before the server acts
(``"before"``) or after it acted but before the answer arrived (``"after"``,
the nasty case: an APPEND that happened although the client saw an error).
A broken session stays broken, as a dropped TCP connection does.
"""

from __future__ import annotations

import email.parser
import email.policy
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal

from autosmime.errors import FolderError, MailboxError

__all__ = ["Fault", "MemoryMailbox", "MemoryServer"]

Fault = Literal["before", "after"] | None


class MemoryServer:
    """The account's folders; thread-safe, shared by every session it opens."""

    def __init__(self, *, faults: Callable[[str], Fault] | None = None) -> None:
        self.folders: dict[str, dict[int, bytes]] = {}
        self._uidnext: dict[str, int] = {}
        self.faults = faults
        self.lock = threading.RLock()
        self.operations = 0  # every operation attempted, for tests that count round trips

    def session(self) -> MemoryMailbox:
        """A new logged-in session (one per device or per command)."""
        return MemoryMailbox(self)

    def _fault(self, op: str) -> Fault:
        self.operations += 1
        return self.faults(op) if self.faults is not None else None


class MemoryMailbox:
    """One session on a :class:`MemoryServer`."""

    def __init__(self, server: MemoryServer) -> None:
        self._server = server
        self._closed = False

    def __enter__(self) -> MemoryMailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True

    def _run(self, op: str, action: Callable[[], object]) -> object:
        if self._closed:
            raise MailboxError("memory mailbox: connection already closed")
        with self._server.lock:
            fault = self._server._fault(op)
            if fault == "before":
                self._closed = True
                raise MailboxError(f"memory mailbox: connection lost during {op}")
            result = action()
            if fault == "after":
                self._closed = True
                raise MailboxError(f"memory mailbox: connection lost during {op} (after the server acted)")
            return result

    def _folder(self, name: str) -> dict[int, bytes]:
        try:
            return self._server.folders[name]
        except KeyError:
            raise FolderError(f"memory mailbox: folder {name!r} does not exist [NONEXISTENT]") from None

    def folder_exists(self, name: str) -> bool:
        return bool(self._run("list", lambda: name in self._server.folders))

    def ensure_folder(self, name: str) -> None:
        def create() -> None:
            if name not in self._server.folders:
                self._server.folders[name] = {}
                self._server._uidnext.setdefault(name, 1)
        self._run("create", create)

    def append(self, folder: str, raw: bytes, flags: Sequence[str] = (r"\Seen",)) -> int | None:
        def store() -> int:
            box = self._folder(folder)
            uid = self._server._uidnext[folder]
            self._server._uidnext[folder] = uid + 1
            box[uid] = bytes(raw)
            return uid
        result = self._run("append", store)
        assert isinstance(result, int)
        return result

    def uids(self, folder: str) -> list[int]:
        """Every UID in ``folder``, ascending."""
        result = self._run("search", lambda: sorted(self._folder(folder)))
        assert isinstance(result, list)
        return result

    def search_header(self, folder: str, header: str, value: str) -> list[int]:
        wanted, needle = header.lower(), value.lower()
        parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)

        def search() -> list[int]:
            found = []
            for uid, raw in self._folder(folder).items():
                values = parser.parsebytes(raw).get_all(wanted) or []
                if any(needle in " ".join(str(v).split()).lower() for v in values):
                    found.append(uid)
            return sorted(found)
        result = self._run("search", search)
        assert isinstance(result, list)
        return result

    def fetch(self, folder: str, uids: Sequence[int]) -> dict[int, bytes]:
        def get() -> dict[int, bytes]:
            box = self._folder(folder)
            return {uid: box[uid] for uid in uids if uid in box}
        result = self._run("fetch", get)
        assert isinstance(result, dict)
        return result

    def delete(self, folder: str, uids: Sequence[int]) -> None:
        def remove() -> None:
            box = self._folder(folder)
            for uid in uids:
                box.pop(uid, None)
        if uids:
            self._run("delete", remove)

    def wait_for(self, folder: str, header: str, value: str, timeout: float = 10,
                 interval: float = 0.1) -> list[int]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                uids = self.search_header(folder, header, value)
            except FolderError:
                uids = []
            if uids or time.monotonic() >= deadline:
                return uids
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
