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

import logging
from pathlib import Path

from autosmime._files import ensure_home, write_private
from autosmime._keyring import SERVICE, real_keyring

log = logging.getLogger(__name__)


def _name(home: Path, kind: str) -> str:
    return f"{kind}:{home.expanduser().absolute()}"


def get_secret(home: Path, kind: str, file_name: str) -> str | None:
    path = home / file_name
    if path.exists():
        try:
            return path.read_text("ascii").strip() or None
        except (OSError, UnicodeDecodeError):
            return None
    backend = real_keyring()
    if backend is None:
        return None
    try:
        return backend.get_password(SERVICE, _name(home, kind))
    except Exception as e:  # keyring locked or gone: behave as "not stored"
        log.warning("keyring unavailable: %s", type(e).__name__)
        return None


def put_secret(home: Path, kind: str, file_name: str, value: str) -> None:
    ensure_home(home)
    path = home / file_name
    backend = real_keyring()
    if backend is not None and not path.exists():
        try:
            backend.set_password(SERVICE, _name(home, kind), value)
            if backend.get_password(SERVICE, _name(home, kind)) == value:
                return
        except Exception as e:
            log.warning("keyring refused the secret (%s); using a file in the home", type(e).__name__)
    write_private(path, (value + "\n").encode("ascii"))
