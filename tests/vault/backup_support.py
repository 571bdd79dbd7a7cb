"""Helpers shared by the backup/restore/fault tests (loaded by path, see ``_support`` there; no tests here).

Real everything: EC keys issued by a real test CA, a real vault in a temp
home, a real account on the loopback Dovecot.
"""

from __future__ import annotations

import base64
import email
import email.policy
import functools
import hashlib
import json
import os
from pathlib import Path

from autosmime.mailbox.account import Account, save_account
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.vault.store import Vault


@functools.cache
def shared_ca():
    return make_ca("autosmime backup test CA", new_key("ec"))


def new_pair(email: str):
    """(key, cert, chain) of a fresh small EC key for ``email``."""
    ca_key, ca_cert = shared_ca()
    key = new_key("ec")
    return key, make_mailbox_cert(email, key.public_key(), ca_key, ca_cert), (ca_cert,)


def make_device(root: Path, name: str, account: Account, password: str, *, keys: int = 0) -> Vault:
    """A device home with the account (password in a 0600 file) and ``keys`` fresh keys."""
    home = root / name
    home.mkdir(parents=True, exist_ok=True)
    pw_file = root / f"{name}.imap-password"
    pw_file.write_text(password)
    os.chmod(pw_file, 0o600)
    acct = Account(**{**account.__dict__, "password_file": str(pw_file)})
    save_account(home, acct)
    vault = Vault.open(home, create=True)
    if keys:
        vault.add_many([new_pair(account.email) for _ in range(keys)], source="import")
    return vault


def snapshot(home: Path) -> dict[str, str]:
    """Name -> SHA-256 of every file under ``home``: proves "the local vault is unchanged"."""
    if not home.exists():
        return {}
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file() and p.name != "vault.lock"}


def fingerprints(vault: Vault) -> set[str]:
    return {e.fingerprint for e in vault.entries()}


def _parts(raw: bytes):
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return msg, {p.get_content_type(): p for p in msg.get_payload()}


def attachment(raw: bytes, content_type: str) -> bytes:
    return _parts(raw)[1][content_type].get_payload(decode=True)


def replace_part(raw: bytes, content_type: str, data: bytes) -> bytes:
    """The same message with one attachment's decoded bytes replaced (still valid MIME)."""
    msg, by_type = _parts(raw)
    by_type[content_type].set_payload(base64.encodebytes(data).decode("ascii"))
    return msg.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))


def rewrite_folder(account, password, transform) -> None:
    """Replace every backup message in the folder by ``transform(raw)`` (an attacker with mailbox access)."""
    from autosmime.mailbox.imap import ImapMailbox
    from autosmime.vault import format as fmt

    folder = account.backup_folder
    with ImapMailbox.connect(account, password) as box:
        uids = box.search_header(folder, fmt.MARKER_HEADER, fmt.MARKER_VALUE)
        originals = box.fetch(folder, uids)
        for uid in sorted(originals):
            box.append(folder, transform(originals[uid]))
        box.delete(folder, uids)


def planted_backup(address: str, seq: int, *, kdf=None, pfx_iterations: int = 10_000_000) -> bytes:
    """A backup message planted by someone without the code, asking for the most work it can.

    Well-formed in every way a reader can check before deriving: a manifest with
    ``kdf`` (default: the ceiling a reader accepts) and its own salt, and a PKCS#12
    (protected, MAC'd, encrypted) whose MAC claims ``pfx_iterations``. Made with
    the planter's own code, so its manifest MAC never verifies with ours.
    """
    from asn1crypto import pkcs12 as ap12

    from autosmime.pki.pkcs12 import build_pfx
    from autosmime.vault import format as fmt
    from autosmime.vault.recovery import new_code

    ceiling = fmt.KdfParams(fmt.KdfParams.MAX_MEMORY_KIB, fmt.KdfParams.MAX_ITERATIONS, fmt.KdfParams.MAX_LANES)
    kdf = kdf or ceiling
    theirs = new_code()
    pair = new_pair(address)
    pfx = ap12.Pfx.load(build_pfx([pair], theirs.encode(), iterations=1))
    mac_data = pfx["mac_data"]  # the count is only a claim: checking it would cost the derivation
    mac_data["iterations"] = pfx_iterations
    p12 = ap12.Pfx({"version": "v3", "auth_safe": pfx["auth_safe"], "mac_data": mac_data}).dump(force=True)
    raw = fmt.build_message(address=address, seq=seq, p12=p12,
                            certificates=[fmt.CertRecord.of(pair[1], "active")], code=theirs, kdf=ceiling)
    if kdf != ceiling:  # past the ceiling no writer goes: claim it in the manifest (its MAC is wrong anyway)
        manifest = json.loads(attachment(raw, "application/json"))
        manifest["kdf"].update(memory_kib=kdf.memory_kib, iterations=kdf.iterations, lanes=kdf.lanes)
        raw = replace_part(raw, "application/json", json.dumps(manifest).encode())
    return raw


# --- the agent's flows, for tests that drive one device's vault -------------------------


def agent_of(target):
    """The agent of a device (a Vault or a home path), with the real IMAP mailbox."""
    from autosmime.agent.context import Agent

    return Agent(target.home if isinstance(target, Vault) else Path(target))


def back_up(vault: Vault, **options):
    """What every key change does: back up, queueing on server trouble; returns the BackupOutcome."""
    from autosmime.agent.backup import after_key_change

    return after_key_change(agent_of(vault), **options)


def back_up_or_raise(vault: Vault) -> int:
    """Back up now and return the sequence number; server trouble raises."""
    from autosmime.agent.backup import backup

    return backup(agent_of(vault), queue=False).seq


def retry(vault: Vault):
    from autosmime.agent.backup import retry_pending

    return retry_pending(agent_of(vault))


def restore_with(home, code: str):
    from autosmime.agent.backup import restore

    return restore(agent_of(home), code)
