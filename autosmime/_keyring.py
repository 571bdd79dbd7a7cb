"""The OS keyring, when this machine has a real one.

    >>> from autosmime._keyring import real_keyring
    >>> real_keyring() is None or hasattr(real_keyring(), "get_password")
    True

Headless machines (CI, servers) have only keyring's fail/null backends, or a
chainer with nothing in it; callers then fall back to a 0600 file.
"""

from __future__ import annotations

SERVICE = "autosmime"


def real_keyring():
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
