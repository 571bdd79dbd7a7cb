"""Export everything the vault holds for other mail clients (Thunderbird, Outlook, Apple Mail).

    >>> from autosmime.vault.export import export_all  # doctest: +SKIP
    >>> export_all(vault, Path("out"), b"a strong password")  # doctest: +SKIP
    [PosixPath('out/autosmime-export.p12'), PosixPath('out/certificates.pem'), ...]

One PKCS#12 with every key, current and old (old mail stays readable in the
other client), plus each certificate as PEM and one PEM bundle of all of
them. Every file is 0600 and written atomically.
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from autosmime._files import write_private
from autosmime.errors import NoKey, VaultError
from autosmime.pki.pkcs12 import build_pfx
from autosmime.vault.recovery import new_code
from autosmime.vault.store import Vault

EXPORT_NAME = "autosmime-export.p12"
BUNDLE_NAME = "certificates.pem"
# gpgsm 2.2 (minip12.c, string_to_key) refuses longer passwords for the legacy PKCS#12 key
# derivation: a longer one makes a --legacy file it can never import.
GPGSM_MAX_PASSWORD = 31


def new_export_password() -> str:
    """A generated export password: 120 random bits in six groups of four, 29 characters,
    short enough for every importer (gpgsm 2.2 included)."""
    return new_code(24)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._-]+", "_", text)[:80]


def export_all(vault: Vault, out_dir: Path, password: bytes, *, legacy: bool = False) -> list[Path]:
    """Write the export into ``out_dir`` (created 0700 if missing); return the files written."""
    entries = vault.entries()
    if not entries:
        raise NoKey("the vault holds no keys to export")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise VaultError(f"cannot create {out_dir}: {e.strerror}") from None
    names = [f"{e.email or 'key'} ({e.effective_status()}, {e.cert.not_valid_before_utc:%Y-%m-%d})" for e in entries]
    pfx = build_pfx([(e.key, e.cert, e.chain) for e in entries], password, legacy=legacy, friendly_names=names)
    written: list[tuple[Path, bytes]] = [(out_dir / EXPORT_NAME, pfx)]
    bundle, seen = [], set()
    for e in entries:
        pem = e.cert.public_bytes(serialization.Encoding.PEM)
        written.append((out_dir / f"{_safe(e.email or 'cert')}-{e.fingerprint[:16]}.pem", pem))
        for cert in (e.cert, *e.chain):
            der = cert.public_bytes(serialization.Encoding.DER)
            if der not in seen:
                seen.add(der)
                bundle.append(cert.public_bytes(serialization.Encoding.PEM))
    written.append((out_dir / BUNDLE_NAME, b"".join(bundle)))
    try:
        for path, data in written:
            write_private(path, data)
    except OSError as e:
        raise VaultError(f"cannot write the export into {out_dir}: {e.strerror}") from None
    return [p for p, _ in written]
