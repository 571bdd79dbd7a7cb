"""Export everything the vault holds for other mail clients (Thunderbird, Outlook, Apple Mail).

    >>> from autosmime.vault.export import export_all  # doctest: +SKIP
    >>> export_all(vault, Path("out"), b"a strong password")  # doctest: +SKIP
    [PosixPath('out/autosmime-export.p12'), PosixPath('out/certificates.pem'), ...]

One PKCS#12 with every key, current and old (old mail stays readable in the
other client), plus each certificate as PEM and one PEM bundle of all of
them. ``legacy`` (3DES, SHA-1 MAC) adds one PKCS#12 per key: gpgsm 2.2 reads
a single private key per file (minip12.c stops at the second shrouded key bag
with "a key has already been received"; 2.4 stops at the third), so a
multi-key file imports nothing there. Every file is 0600 and written
atomically, into a folder that is new or empty unless ``force``.
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from autosmime._files import write_private
from autosmime.errors import NoKey, VaultError
from autosmime.pki.pkcs12 import build_legacy_pfxs, build_pfx
from autosmime.vault.recovery import new_code
from autosmime.vault.store import Vault

EXPORT_NAME = "autosmime-export.p12"
BUNDLE_NAME = "certificates.pem"
# gpgsm 2.2 (minip12.c, string_to_key) refuses longer passwords for the legacy PKCS#12 key
# derivation: a longer one makes a --legacy file it can never import.
GPGSM_MAX_PASSWORD = 31
#: a chosen export password shorter than this gets a warning (the generated one has 29 characters)
MIN_PASSWORD_CHARS = 12


def new_export_password() -> str:
    """A generated export password: 120 random bits in six groups of four, 29 characters,
    short enough for every importer (gpgsm 2.2 included)."""
    return new_code(24)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._-]+", "_", text)[:80]


def password_too_short(password: bytes) -> bool:
    """True for an export password under MIN_PASSWORD_CHARS characters (guessable from the file alone).

    >>> password_too_short(b"hunter2"), password_too_short(b"correct horse battery")
    (True, False)
    """
    return len(password.decode("utf-8", errors="replace")) < MIN_PASSWORD_CHARS


def _check_folder(out_dir: Path, force: bool) -> None:
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise VaultError(f"{out_dir} is not a folder")
        if not force and out_dir.is_dir() and any(out_dir.iterdir()):
            raise VaultError(f"the export folder {out_dir} is not empty; choose a new one, or pass --force to "
                             "write into it (files of the same name are replaced)")
    except OSError as e:
        raise VaultError(f"cannot read {out_dir}: {e.strerror}") from None


def export_all(vault: Vault, out_dir: Path, password: bytes, *, legacy: bool = False,
               force: bool = False) -> list[Path]:
    """Write the export into ``out_dir`` (created 0700 if missing); return the files written, the
    PKCS#12 with every key first. VaultError, with nothing written, if ``out_dir`` holds anything
    and ``force`` is not set."""
    entries = vault.entries()
    if not entries:
        raise NoKey("the vault holds no keys to export")
    out_dir = Path(out_dir)
    _check_folder(out_dir, force)
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise VaultError(f"cannot create {out_dir}: {e.strerror}") from None
    names = [f"{e.email or 'key'} ({e.effective_status()}, {e.cert.not_valid_before_utc:%Y-%m-%d})" for e in entries]
    items = [(e.key, e.cert, e.chain) for e in entries]
    if legacy:  # one key per file as well: what gpgsm 2.2 can read
        pfx, singles = build_legacy_pfxs(items, password, friendly_names=names)
    else:
        pfx, singles = build_pfx(items, password, friendly_names=names), []
    written: list[tuple[Path, bytes]] = [(out_dir / EXPORT_NAME, pfx)]
    bundle, seen = [], set()
    for i, entry in enumerate(entries):
        stem = f"{_safe(entry.email or 'cert')}-{entry.fingerprint[:16]}"
        pem = entry.cert.public_bytes(serialization.Encoding.PEM)
        written.append((out_dir / f"{stem}.pem", pem))
        if singles:
            written.append((out_dir / f"{stem}.p12", singles[i]))
        for cert in (entry.cert, *entry.chain):
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
