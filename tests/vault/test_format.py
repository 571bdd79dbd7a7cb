"""Backup message format v1: build, strict parse, authentication, and stock-tool import."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import shutil
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.serialization import pkcs12

from autosmime.errors import BackupRejected, RolledBackBackup, WrongRecoveryCode
from autosmime.pki.pkcs12 import build_pfx
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.vault import format as fmt
from autosmime.vault.recovery import new_code

ADDRESS = "alice@example.test"


@pytest.fixture(scope="module")
def pairs():
    ca_key, ca = make_ca("format test CA", new_key("ec"))
    out = []
    for _ in range(2):
        key = new_key("ec")
        out.append((key, make_mailbox_cert(ADDRESS, key.public_key(), ca_key, ca), (ca,)))
    return out


@pytest.fixture(scope="module")
def code():
    return new_code()


@pytest.fixture(scope="module")
def p12(pairs, code):
    return build_pfx(pairs, code.encode(), iterations=fmt.PFX_ITERATIONS)


def records(pairs, statuses=("active", "retired")):
    return [fmt.CertRecord.of(cert, status) for (_, cert, _), status in zip(pairs, statuses)]


@pytest.fixture(scope="module")
def raw(pairs, code, p12):
    return fmt.build_message(address=ADDRESS, seq=5, p12=p12, certificates=records(pairs), code=code)


def _parts(raw: bytes):
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    by_type = {p.get_content_type(): p for p in msg.get_payload()}
    return msg, by_type


def replace_part(raw: bytes, content_type: str, data: bytes) -> bytes:
    """The same message with one attachment's decoded bytes replaced (still valid MIME)."""
    msg, by_type = _parts(raw)
    by_type[content_type].set_payload(base64.encodebytes(data).decode("ascii"))
    return msg.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))


def manifest_of(raw: bytes) -> dict:
    _, by_type = _parts(raw)
    return json.loads(by_type["application/json"].get_payload(decode=True))


def test_round_trip_returns_every_key_with_its_status(raw, pairs, code):
    backup = fmt.verify_message(raw, code=code, address=ADDRESS, seq_seen=5)
    assert backup.manifest.seq == 5
    got = {fmt.fingerprint(p.cert): backup.status_of(p) for p in backup.keys}
    assert got == {fmt.fingerprint(c): s for (_, c, _), s in zip(pairs, ("active", "retired"))}
    for pair in backup.keys:  # the private keys themselves came back
        original = next(k for k, c, _ in pairs if c == pair.cert)
        assert pair.key.private_numbers() == original.private_numbers()


def test_headers_are_generic_and_mark_the_message(raw, pairs):
    msg, by_type = _parts(raw)
    assert msg["X-Autosmime-Backup"] == "v1"
    assert msg["From"] == msg["To"] == ADDRESS
    assert msg["Subject"] == "autosmime key backup"
    assert msg["Date"] and msg["Message-ID"]
    assert msg.get_content_type() == "multipart/mixed"
    assert set(by_type) == {"text/plain", "application/pkcs12", "application/json"}
    assert by_type["application/pkcs12"].get_filename() == "autosmime-keys.p12"
    assert by_type["application/json"].get_filename() == "autosmime-manifest.json"
    header_text = raw.split(b"\r\n\r\n", 1)[0].decode().lower()
    for _, cert, _ in pairs:  # no fingerprint or name in clear headers
        assert fmt.fingerprint(cert)[:16] not in header_text
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only


def test_an_independent_reader_following_the_document_accepts_the_mac(raw, code):
    """Re-derive the MAC exactly as docs/backup-format.md §5 says, without autosmime code."""
    manifest = manifest_of(raw)
    tag = base64.b64decode(manifest.pop("mac")["value"])
    kdf = manifest["kdf"]
    key = Argon2id(salt=base64.b64decode(kdf["salt"]), length=32, iterations=kdf["iterations"],
                   lanes=kdf["lanes"], memory_cost=kdf["memory_kib"]).derive(code.encode())
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    assert hmac.new(key, b"autosmime-key-backup-v1\x00" + canonical, hashlib.sha256).digest() == tag
    assert (kdf["memory_kib"], kdf["iterations"], kdf["lanes"]) == (65536, 3, 4)
    assert len(base64.b64decode(kdf["salt"])) == 16
    _, by_type = _parts(raw)
    assert manifest["p12"]["sha256"] == hashlib.sha256(by_type["application/pkcs12"].get_payload(decode=True)).hexdigest()


def test_each_backup_gets_a_fresh_salt(pairs, code, p12):
    a = fmt.build_message(address=ADDRESS, seq=1, p12=p12, certificates=records(pairs), code=code)
    b = fmt.build_message(address=ADDRESS, seq=1, p12=p12, certificates=records(pairs), code=code)
    assert manifest_of(a)["kdf"]["salt"] != manifest_of(b)["kdf"]["salt"]


def test_wrong_code_is_reported_as_wrong_code(raw):
    with pytest.raises(WrongRecoveryCode):
        fmt.verify_message(raw, code=new_code(), address=ADDRESS)


def test_altered_manifest_is_rejected_as_altered_not_as_wrong_code(raw, code):
    manifest = manifest_of(raw)
    manifest["certificates"][1]["status"] = "active"  # try to resurrect a retired key
    altered = replace_part(raw, "application/json", json.dumps(manifest).encode())
    with pytest.raises(BackupRejected, match="altered") as info:
        fmt.verify_message(altered, code=code, address=ADDRESS)
    assert not isinstance(info.value, WrongRecoveryCode)


def test_altered_p12_byte_is_rejected(raw, code, p12):
    flipped = bytearray(p12)
    flipped[len(flipped) // 2] ^= 0x01
    with pytest.raises(BackupRejected, match="altered or truncated"):
        fmt.verify_message(replace_part(raw, "application/pkcs12", bytes(flipped)), code=code, address=ADDRESS)


def test_truncated_p12_is_rejected(raw, code, p12):
    with pytest.raises(BackupRejected, match="altered or truncated"):
        fmt.verify_message(replace_part(raw, "application/pkcs12", p12[:-40]), code=code, address=ADDRESS)


def test_planted_unprotected_p12_with_forged_manifest_is_rejected(raw, code, pairs):
    attacker_key = new_key("ec")
    ca_key, ca = make_ca("attacker CA", new_key("ec"))
    cert = make_mailbox_cert(ADDRESS, attacker_key.public_key(), ca_key, ca)
    planted = pkcs12.serialize_key_and_certificates(None, attacker_key, cert, None,
                                                    serialization.NoEncryption())
    manifest = manifest_of(raw)
    manifest["p12"]["sha256"] = hashlib.sha256(planted).hexdigest()
    manifest["certificates"] = [fmt.CertRecord.of(cert, "active").to_json()]
    forged = replace_part(replace_part(raw, "application/pkcs12", planted), "application/json",
                          json.dumps(manifest).encode())
    with pytest.raises(BackupRejected):
        fmt.verify_message(forged, code=code, address=ADDRESS)


def test_backup_of_another_account_is_rejected(pairs, code, p12):
    other = fmt.build_message(address="mallory@example.test", seq=9, p12=p12, certificates=records(pairs),
                              code=code)
    with pytest.raises(BackupRejected, match="another account"):
        fmt.verify_message(other, code=code, address=ADDRESS)
    # the address comparison ignores case only
    fmt.authenticate(other, code=code, address="MALLORY@example.test")


def test_rolled_back_sequence_is_rejected(raw, code):
    with pytest.raises(RolledBackBackup):
        fmt.verify_message(raw, code=code, address=ADDRESS, seq_seen=6)


def test_manifest_not_matching_p12_contents_is_rejected(pairs, code, p12):
    # Authentic manifest listing only one of the two keys the PFX holds.
    lying = fmt.build_message(address=ADDRESS, seq=1, p12=p12, certificates=records(pairs)[:1], code=code)
    with pytest.raises(BackupRejected, match="exactly the certificates"):
        fmt.verify_message(lying, code=code, address=ADDRESS)


@pytest.mark.parametrize("kdf", [
    {"memory_kib": 4 * 1024 * 1024},   # 4 GiB: would exhaust the device
    {"iterations": 1000},
    {"lanes": 255},
])
def test_kdf_parameters_are_bounded_before_any_work(raw, code, kdf):
    manifest = manifest_of(raw)
    manifest["kdf"].update(kdf)
    hostile = replace_part(raw, "application/json", json.dumps(manifest).encode())
    start = time.perf_counter()
    with pytest.raises(BackupRejected, match="out of (the accepted )?range"):
        fmt.verify_message(hostile, code=code, address=ADDRESS)
    assert time.perf_counter() - start < 0.05


@pytest.mark.parametrize("mutate", [
    lambda m: m.update(extra=1),
    lambda m: m.pop("created"),
    lambda m: m.update(version=2),
    lambda m: m.update(seq=-1),
    lambda m: m.update(seq="5"),
    lambda m: m["certificates"].append(dict(m["certificates"][0])),
    lambda m: m["certificates"][0].update(fingerprint="ZZ" * 32),
    lambda m: m["mac"].update(value="not base64!"),
], ids=["extra-field", "missing-field", "version", "negative-seq", "string-seq", "duplicate-cert",
        "bad-fingerprint", "bad-mac-encoding"])
def test_manifest_shape_is_strict(raw, mutate):
    manifest = manifest_of(raw)
    mutate(manifest)
    with pytest.raises(BackupRejected):
        fmt.read_message(replace_part(raw, "application/json", json.dumps(manifest).encode()))


@pytest.mark.parametrize("edit", [
    lambda r: r.replace(b"X-Autosmime-Backup: v1", b"X-Autosmime-Backup: v2"),
    lambda r: r.replace(b"X-Autosmime-Backup: v1\r\n", b"X-Autosmime-Backup: v1\r\nX-Autosmime-Backup: v1\r\n"),
    lambda r: r.replace(b"application/pkcs12", b"application/octet-stream"),
    lambda r: r.replace(b"autosmime-manifest.json", b"manifest.json"),
    lambda r: r[: len(r) // 2],
    lambda r: b"",
    lambda r: b"\xff\xfe garbage",
], ids=["header-v2", "header-twice", "p12-type", "manifest-name", "half-message", "empty", "garbage"])
def test_message_shape_is_strict(raw, edit):
    with pytest.raises(BackupRejected):
        fmt.read_message(edit(raw))


def _attachment(raw: bytes, tmp_path):
    _, by_type = _parts(raw)
    path = tmp_path / "autosmime-keys.p12"
    path.write_bytes(by_type["application/pkcs12"].get_payload(decode=True))
    return path


@pytest.mark.interop
def test_attachment_imports_into_openssl_with_the_code(raw, code, pairs, tmp_path):
    path = _attachment(raw, tmp_path)
    out = subprocess.run(["openssl", "pkcs12", "-in", str(path), "-nodes", "-passin", "stdin"],
                         input=code.encode() + b"\n", capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.count(b"-----BEGIN PRIVATE KEY-----") == len(pairs)
    for _, cert, _ in pairs:
        assert cert.public_bytes(serialization.Encoding.PEM) in out.stdout
    wrong = subprocess.run(["openssl", "pkcs12", "-in", str(path), "-nodes", "-passin", "stdin"],
                           input=new_code().encode() + b"\n", capture_output=True, timeout=60)
    assert wrong.returncode != 0


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("pk12util") is None, reason="NSS pk12util not installed")
def test_attachment_imports_into_nss_pk12util_with_the_code(raw, code, pairs, tmp_path):
    path = _attachment(raw, tmp_path)
    db = tmp_path / "nssdb"
    db.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    pw = tmp_path / "pw"
    pw.write_text(code)
    out = subprocess.run(["pk12util", "-i", str(path), "-d", f"sql:{db}", "-w", str(pw)],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, (out.stdout + out.stderr).decode()
    keys = subprocess.run(["certutil", "-K", "-d", f"sql:{db}"], capture_output=True, timeout=60)
    assert keys.stdout.decode().count("<") >= len(pairs)  # one line "< n> ec ..." per private key
    pw.write_text(new_code())
    bad = subprocess.run(["pk12util", "-i", str(path), "-d", f"sql:{db}", "-w", str(pw)],
                         capture_output=True, timeout=60)
    assert bad.returncode != 0
