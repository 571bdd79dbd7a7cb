"""Atomic private files and an exclusive lock, for everything autosmime writes.

    >>> from pathlib import Path; import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> write_private(d / "x", b"secret"); oct((d / "x").stat().st_mode & 0o777)
    '0o600'

A write goes to a temporary file in the same directory, is fsynced, renamed
over the target and the directory is fsynced: a crash at any moment leaves
either the old or the new content, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

TEMP_PREFIX = ".autosmime-tmp-"
#: the device vault inside a home (here so "is there a vault?" needs no vault code)
VAULT_FILE = "vault.bin"


def ensure_home(home: Path) -> None:
    """Create ``home`` (0700) if missing."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Replace ``path`` with ``data`` (bytes, or pieces written as they come) atomically; the file is 0600."""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.writelines((data,) if isinstance(data, bytes) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def remove_stale_temps(directory: Path) -> None:
    """Remove temporary files a killed writer left behind (call only under the lock)."""
    for p in directory.glob(TEMP_PREFIX + "*"):
        with contextlib.suppress(OSError):
            p.unlink()


@contextlib.contextmanager
def locked(lock_path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an fcntl lock on ``lock_path`` (released by the kernel if the process dies)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
