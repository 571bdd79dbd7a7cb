"""The vault: never deletes, retires older keys, encrypted at rest, private files, clear errors."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from autosmime.errors import NoKey, VaultError
from autosmime.pki.certs import fingerprint as fingerprint_of
from autosmime.vault.store import Vault
from tests.vault.store_support import mailbox


def test_add_then_newer_cert_retires_older_and_nothing_is_deleted(tmp_path):
    vault = Vault.open(tmp_path / "home")
    old = mailbox("alice@example.test", days_ago=30)
    new = mailbox("alice@example.test", days_ago=1)
    assert vault.add(*old) is True
    assert vault.add(*new) is True
    assert vault.add(*old) is False  # already held
    by_fp = {e.fingerprint: e for e in Vault.open(tmp_path / "home").entries()}
    assert len(by_fp) == 2
    assert by_fp[fingerprint_of(new[1])].status == "active"
    statuses = sorted(e.status for e in by_fp.values())
    assert statuses == ["active", "retired"]
    assert vault.signing_pair("Alice@Example.test").cert == new[1]


def test_importing_an_older_cert_later_keeps_the_newest_active(tmp_path):
    vault = Vault.open(tmp_path)
    new = mailbox("bob@example.test", days_ago=1)
    old = mailbox("bob@example.test", days_ago=90)
    vault.add(*new)
    vault.add(*old)
    assert vault.signing_pair("bob@example.test").cert == new[1]
    assert {e.cert: e.status for e in vault.entries()}[old[1]] == "retired"


def test_decryption_keys_include_every_key_newest_first(tmp_path):
    vault = Vault.open(tmp_path)
    items = [mailbox("carol@example.test", days_ago=d) for d in (300, 200, 100)]
    expired = mailbox("carol@example.test", days_ago=900, days=30)
    for item in items + [expired]:
        vault.add(*item)
    vault.set_status(fingerprint_of(items[0][1]), "revoked")
    certs = [c for _, c in vault.decryption_keys()]
    assert certs == [items[2][1], items[1][1], items[0][1], expired[1]]
    eff = {e.cert: e.effective_status() for e in vault.entries()}
    assert eff[expired[1]] == "expired" and eff[items[0][1]] == "revoked"


def test_add_many_is_one_save_and_counts_new(tmp_path):
    vault = Vault.open(tmp_path)
    items = [mailbox(f"u{i}@example.test") for i in range(4)]
    assert vault.add_many(items[:2], source="restore") == 2
    assert vault.add_many(items, source="restore") == 2
    assert {e.source for e in vault.entries()} == {"restore"}
    # explicit statuses survive (a restore keeps what the backup said)
    extra = mailbox("z@example.test")
    vault.add_many([(*extra, "revoked")], source="restore")
    assert [e.status for e in vault.entries() if e.cert == extra[1]] == ["revoked"]


def test_signing_pair_without_key_raises_nokey(tmp_path):
    vault = Vault.open(tmp_path)
    with pytest.raises(NoKey):
        vault.signing_pair("nobody@example.test")
    vault.add(*mailbox("old@example.test", days_ago=900, days=30))
    with pytest.raises(NoKey):
        vault.signing_pair("old@example.test")


def test_state_round_trip_and_removal(tmp_path):
    vault = Vault.open(tmp_path)
    vault.update_state(backup_seq_seen=4, backup_pending=True)
    vault.update_state(backup_pending=None)
    assert Vault.open(tmp_path).state == {"backup_seq_seen": 4}


def test_encrypted_at_rest_and_private_permissions(tmp_path):
    home = tmp_path / "home"
    vault = Vault.open(home)
    key, cert, chain = mailbox("dave@example.test", kind="rsa")
    vault.add(key, cert, chain)
    blob = (home / "vault.bin").read_bytes()
    der_key = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    der_cert = cert.public_bytes(serialization.Encoding.DER)
    for secret in (der_key, der_key[40:80], der_cert[40:80], base64.b64encode(der_key)[:40], b"-----BEGIN", b"dave@"):
        assert secret not in blob
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in ("vault.bin", "device.key", "vault.lock"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name


def test_corrupted_vault_is_an_error_and_not_replaced(tmp_path):
    vault = Vault.open(tmp_path)
    vault.add(*mailbox("erin@example.test"))
    path = tmp_path / "vault.bin"
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(VaultError, match="cannot be decrypted"):
        Vault.open(tmp_path)
    assert path.read_bytes() == bytes(blob)
    path.write_bytes(b"garbage that is not a vault at all, long enough to pass the length check")
    with pytest.raises(VaultError, match="not an autosmime key vault"):
        Vault.open(tmp_path)


def test_foreign_vault_or_missing_device_key(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    Vault.open(a).add(*mailbox("f@example.test"))
    Vault.open(b)
    (b / "vault.bin").write_bytes((a / "vault.bin").read_bytes())
    with pytest.raises(VaultError, match="another device key"):
        Vault.open(b)
    os.unlink(a / "device.key")
    with pytest.raises(VaultError, match="device key"):
        Vault.open(a)


def test_open_without_create(tmp_path):
    with pytest.raises(VaultError):
        Vault.open(tmp_path / "none", create=False)
    assert not (tmp_path / "none").exists()


def test_separate_signing_and_encryption_certificates_both_stay_active(tmp_path):
    """RFC 9216's Alice: one signing and one encryption certificate for the same address."""
    from autosmime.pki.pkcs12 import parse_pfx

    vectors = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "rfc9216" / "keys"
    pairs = parse_pfx((vectors / "alice.p12").read_bytes(), b"alice")
    vault = Vault.open(tmp_path / "home")
    vault.add_many(pairs, source="import")
    statuses = {e.effective_status() for e in vault.entries()}
    assert statuses == {"active"}
    sign_cert = vault.signing_pair().cert
    enc_cert = vault.encryption_pair().cert
    assert sign_cert != enc_cert
    assert sign_cert.fingerprint(hashes.SHA256()) == x509.load_pem_x509_certificate(
        (vectors / "alice.sign.crt").read_bytes()).fingerprint(hashes.SHA256())
    assert enc_cert == x509.load_pem_x509_certificate((vectors / "alice.encrypt.crt").read_bytes())


def _append_many(home: str, tag: str, count: int) -> None:
    vault = Vault.open(Path(home), create=False)
    for i in range(count):
        vault.modify_state("items", lambda old, i=i: [*(old or []), f"{tag}{i}"])


def test_modify_state_loses_nothing_when_two_processes_append(tmp_path):
    """Read-modify-write under the vault lock: two processes appending at once keep every item."""
    import multiprocessing

    Vault.open(tmp_path / "home").update_state(items=[])
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_append_many, args=(str(tmp_path / "home"), tag, 15)) for tag in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    items = Vault.open(tmp_path / "home", create=False).state["items"]
    assert sorted(items) == sorted(f"{t}{i}" for t in "ab" for i in range(15))
    vault = Vault.open(tmp_path / "home", create=False)
    assert vault.modify_state("items", lambda old: None) is None and "items" not in vault.state
    with pytest.raises(Exception, match="JSON"):
        vault.modify_state("items", lambda old: {1, 2})
