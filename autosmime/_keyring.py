"""The OS keyring, when this machine has a real one: the one path every secret lookup takes.

    >>> from autosmime._keyring import real_keyring, get_secret
    >>> real_keyring() is None or hasattr(real_keyring(), "get_password")
    True

Headless machines (CI, servers) have only keyring's fail/null backends, or a
chainer with nothing in it; callers then fall back to a 0600 file. A locked
or broken keyring behaves as "not stored" (logged, never raised), so it never
stops a command that has another source.
"""

from __future__ import annotations

import logging
from typing import Any

SERVICE = "autosmime"

log = logging.getLogger(__name__)


def real_keyring() -> Any | None:
    """The keyring backend if it can actually store secrets, else None."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null

        backend = keyring.get_keyring()
    except Exception:  # a broken keyring install must not stop autosmime
        return None
    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    if "plaintext" in type(backend).__name__.lower():
        return None  # keyrings.alt's plaintext file: no safer than our 0600 file, and outside the home
    return backend


def get_secret(name: str) -> str | None:
    """The secret stored under ``name`` for autosmime, or None (no keyring, nothing stored, keyring failed)."""
    backend = real_keyring()
    if backend is None:
        return None
    try:
        value = backend.get_password(SERVICE, name)
    except Exception as e:  # keyring locked or gone: behave as "not stored"
        log.warning("keyring unavailable: %s", type(e).__name__)
        return None
    return value if isinstance(value, str) and value else None


def put_secret(name: str, value: str) -> bool:
    """Store ``value`` under ``name``; True only if the keyring has it afterwards."""
    backend = real_keyring()
    if backend is None:
        return False
    try:
        backend.set_password(SERVICE, name, value)
        return bool(backend.get_password(SERVICE, name) == value)
    except Exception as e:
        log.warning("keyring refused the secret (%s)", type(e).__name__)
        return False
