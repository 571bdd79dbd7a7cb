"""The S/MIME message engine: sign, verify, encrypt, decrypt, and read through nested layers.

    >>> from autosmime.smime import sign, verify, encrypt, sign_and_encrypt, decrypt, read
    >>> out = encrypt(sign(raw, key, cert), [bob_cert], sender_cert=cert)   # doctest: +SKIP
    >>> out = sign_and_encrypt(raw, key, cert, [bob_cert])                  # doctest: +SKIP
    >>> read(out, keys=[(bob_key, bob_cert)], trust_roots=[ca]).message    # doctest: +SKIP

The names are imported on first use (PEP 562): a command that only decrypts
does not pay for the signature verifier's imports, and ``autosmime --help``
for none of them.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autosmime.smime.decrypt import decrypt
    from autosmime.smime.encrypt import encrypt, sign_and_encrypt
    from autosmime.smime.models import DecryptResult, ReadResult, VerifyResult
    from autosmime.smime.read import read
    from autosmime.smime.sign import sign
    from autosmime.smime.verify import verify

__all__ = ["sign", "verify", "encrypt", "sign_and_encrypt", "decrypt", "read",
           "VerifyResult", "DecryptResult", "ReadResult"]

_HOMES = {"sign": "sign", "verify": "verify", "encrypt": "encrypt", "sign_and_encrypt": "encrypt",
          "decrypt": "decrypt", "read": "read", "VerifyResult": "models", "DecryptResult": "models",
          "ReadResult": "models"}


class _Package(types.ModuleType):
    """Keeps ``autosmime.smime.decrypt`` (and sign, verify, ...) the function, as the eager
    package had it: importing a submodule binds it on its package under the same name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOMES and isinstance(value, types.ModuleType):
            return  # the function is bound on first use instead, by __getattr__
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'autosmime.smime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"autosmime.smime.{home}"), name)
    globals()[name] = value  # once: later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
