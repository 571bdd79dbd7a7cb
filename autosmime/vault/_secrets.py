"""Small per-home secrets: in the OS keyring when a real one exists, else a 0600 file in the home.

    >>> from pathlib import Path; import tempfile
    >>> home = Path(tempfile.mkdtemp())
    >>> put_secret(home, "device-key", "device.key", "c2VjcmV0"); get_secret(home, "device-key", "device.key")
    'c2VjcmV0'

Headless machines (CI, servers) have only keyring's fail/null backends; the
home directory (0700) with a 0600 file is then the best place there is. A
secret already in a file stays in the file, so a keyring that appears later
does not hide it.
"""

from __future__ import annotations

from pathlib import Path

from autosmime import _keyring
from autosmime._files import ensure_home, write_private


def _name(home: Path, kind: str) -> str:
    return f"{kind}:{home.expanduser().absolute()}"


def get_secret(home: Path, kind: str, file_name: str) -> str | None:
    """The secret ``kind`` of this home: its file if present, else the keyring entry, else None."""
    path = home / file_name
    if path.exists():
        try:
            return path.read_text("ascii").strip() or None
        except (OSError, UnicodeDecodeError):
            return None
    return _keyring.get_secret(_name(home, kind))


def put_secret(home: Path, kind: str, file_name: str, value: str) -> None:
    """Keep ``value`` in the keyring when a real one takes it (and no file holds it yet), else in a 0600 file."""
    ensure_home(home)
    path = home / file_name
    if not path.exists() and _keyring.put_secret(_name(home, kind), value):
        return
    write_private(path, (value + "\n").encode("ascii"))
