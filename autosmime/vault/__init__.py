"""The device's keys: the vault, the recovery code, PKCS#12 in and out, and key backup.

    >>> from autosmime.vault.store import Vault  # doctest: +SKIP
    >>> vault = Vault.open(home); [e.email for e in vault.entries()]  # doctest: +SKIP

Modules: ``store`` (the encrypted vault), ``recovery`` (the recovery code),
``pkcs12`` (multi-key PKCS#12 writer and strict reader), ``importing``,
``export``; ``format`` and ``backup`` build the mailbox backup on top.
"""
