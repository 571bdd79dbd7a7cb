"""The device's keys: the vault, the recovery code, and key backup in the user's mailbox.

    >>> from autosmime.vault import Vault  # doctest: +SKIP
    >>> vault = Vault.open(home); [e.email for e in vault.entries()]  # doctest: +SKIP

Modules: ``store`` (the encrypted vault), ``recovery`` (the recovery code),
``importing``, ``export``; ``format`` (the backup message, normative text in
docs/backup-format.md), ``backup`` (write, verify, prune, restore) and
``join`` (device join) build the mailbox backup on top. The PKCS#12 codec and
the certificate helpers live in :mod:`autosmime.pki`. Names are imported on
first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Vault": "store", "VaultEntry": "store",
    "import_p12": "importing", "export_all": "export",
    "new_code": "recovery", "normalize": "recovery",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autosmime.vault' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autosmime.vault.{module}"), name)
