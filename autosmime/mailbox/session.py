"""What the key backup and device join need from a mailbox: one small protocol, two implementations.

    >>> from autosmime.mailbox.memory import MemoryServer
    >>> from autosmime.mailbox.session import MailboxSession
    >>> box: MailboxSession = MemoryServer().session()
    >>> box.ensure_folder("keys"); uid = box.append("keys", b"X-Tag: v1\\r\\n\\r\\nbody\\r\\n")
    >>> box.search_header("keys", "X-Tag", "v1") == [uid], box.fetch("keys", [uid])[uid][-6:]
    (True, b'body\\r\\n')

:class:`autosmime.mailbox.imap.ImapMailbox` is the real one (IMAP with
UIDPLUS where the server has it); :class:`autosmime.mailbox.memory.MemoryMailbox`
is the in-memory one the fast tests and property tests use. Only
:mod:`autosmime.agent` opens sessions; the vault's backup and join code is
handed one that is already open.

Every method raises :class:`autosmime.errors.MailboxError` (or a subclass) for
server trouble; after a lost connection every further call raises too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["MailboxSession"]


class MailboxSession(Protocol):
    """One logged-in connection to the user's mailbox."""

    def folder_exists(self, name: str) -> bool:
        """True if the folder exists."""
        ...

    def ensure_folder(self, name: str) -> None:
        """Create ``name`` unless it exists (safe when two clients race)."""
        ...

    def append(self, folder: str, raw: bytes, flags: Sequence[str] = ...) -> int | None:
        """Store ``raw`` byte for byte; the new UID when the server reports it, else None."""
        ...

    def search_header(self, folder: str, header: str, value: str) -> list[int]:
        """UIDs (ascending) of messages whose ``header`` contains ``value`` (case-insensitive)."""
        ...

    def fetch(self, folder: str, uids: Sequence[int]) -> dict[int, bytes]:
        """The exact bytes of each message; UIDs that are gone are absent."""
        ...

    def delete(self, folder: str, uids: Sequence[int]) -> None:
        """Remove exactly these messages."""
        ...

    def wait_for(self, folder: str, header: str, value: str, timeout: float = 10,
                 interval: float = 0.1) -> list[int]:
        """Poll until :meth:`search_header` finds something or ``timeout`` seconds pass ([] then)."""
        ...

    def close(self) -> None:
        """Log out; never raises."""
        ...
