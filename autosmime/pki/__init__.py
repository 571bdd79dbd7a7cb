"""Keys and certificates: loading, naming, validating, PKCS#12 in and out.

    >>> from autosmime.pki import fingerprint, KeyPair, parse_pfx  # doctest: +SKIP

Modules: ``keys`` (key and certificate files, :class:`KeyPair`, the
``PrivateKey`` type), ``certs`` (address, fingerprint, key roles, public-key
comparison), ``pkcs12`` (multi-key writer and strict reader), ``validate``
(S/MIME path validation), ``profiles`` (test and development certificates),
``certcache``. Names are imported on first use, so ``import autosmime.pki``
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "KeyPair": "keys", "PrivateKey": "keys", "as_private_key": "keys", "load_certificates": "keys",
    "load_key_and_cert": "keys", "load_p12": "keys", "load_private_key": "keys", "read_first_line": "keys",
    "cert_address": "certs", "cert_addresses": "certs", "fingerprint": "certs", "key_roles": "certs",
    "same_key": "certs", "spki": "certs",
    "build_pfx": "pkcs12", "parse_pfx": "pkcs12",
    "validate_signer": "validate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autosmime.pki' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autosmime.pki.{module}"), name)
