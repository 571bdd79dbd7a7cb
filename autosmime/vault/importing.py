"""Import any .p12 (Thunderbird, Outlook, OpenSSL, a CA's download) into the vault.

    >>> from autosmime.vault.importing import import_p12  # doctest: +SKIP
    >>> new = import_p12(vault, open("alice.p12", "rb").read(), b"alice")  # doctest: +SKIP
    >>> [e.email for e in new]  # doctest: +SKIP

Every key in the file is added (multi-key files too); keys already held are
skipped, so importing the same file twice changes nothing. User files may be
old-style (no MAC, plain key bags): they are accepted, since the user chose
them; only backups are held to the strict structural check.
"""

from __future__ import annotations

from autosmime.pki.certs import fingerprint
from autosmime.pki.pkcs12 import parse_pfx
from autosmime.vault.store import Vault, VaultEntry


def import_p12(vault: Vault, data: bytes, password: bytes | None) -> list[VaultEntry]:
    """Add every key of the PKCS#12 ``data``; return the entries that were new."""
    pairs = parse_pfx(data, password, require_protected=False)
    before = {e.fingerprint for e in vault.entries()}
    vault.add_many([(p.key, p.cert, p.chain) for p in pairs], source="import")
    wanted = {fingerprint(p.cert) for p in pairs} - before
    return [e for e in vault.entries() if e.fingerprint in wanted]
