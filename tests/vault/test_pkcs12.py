"""Multi-key PKCS#12: our files open in OpenSSL 3 and NSS; we read every foreign flavour; unsafe files are refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from autosmime.errors import BackupRejected, WrongPassword
from autosmime.pki.pkcs12 import build_pfx, parse_pfx
from tests.vault.store_support import issuing_ca, mailbox

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"  # shared/ lies beside the checkout
VECTOR_P12 = [
    ("rfc9216/keys/alice.p12", b"alice", 2), ("rfc9216/keys/bob.p12", b"bob", 2),
    ("rfc9216/keys/carlos.p12", b"carlos", 2), ("rfc9216/keys/dana.p12", b"dana", 2),
    ("nss-interop-openssl/Fran.p12", b"nss", 1), ("nss-interop-openssl/Fran-ec.p12", b"nss", 1),
]
needs_openssl = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
needs_nss = pytest.mark.skipif(not shutil.which("pk12util"), reason="NSS tools not installed")


def _items():
    """RSA and EC keys under an RSA and an EC CA: four keys, two chains."""
    return [
        mailbox("rsa1@example.test", "rsa", ca_kind="rsa"), mailbox("ec1@example.test", "ec"),
        mailbox("rsa2@example.test", "rsa", ca_kind="ec"), mailbox("ec2@example.test", "ec384", ca_kind="rsa"),
    ]


def _spki(k):
    return k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _run(*args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def items():
    return _items()


@pytest.mark.parametrize("legacy", [False, True])
def test_own_output_round_trips_every_key(items, legacy):
    pfx = build_pfx(items, b"pw", legacy=legacy, iterations=2048)
    pairs = parse_pfx(pfx, b"pw")
    assert [p.cert for p in pairs] == [c for _, c, _ in items]
    assert [_spki(p.key) for p in pairs] == [_spki(k) for k, _, _ in items]
    assert {c for p in pairs for c in p.chain} == {issuing_ca("rsa")[1], issuing_ca("ec")[1]}
    with pytest.raises(WrongPassword):
        parse_pfx(pfx, b"wrong")


@needs_openssl
@pytest.mark.interop
@pytest.mark.parametrize("legacy", [False, True])
def test_openssl_reads_every_key(items, legacy, tmp_path):
    path = tmp_path / "all.p12"
    path.write_bytes(build_pfx(items, "pässword".encode(), legacy=legacy))  # default 600,000 iterations
    args = ["openssl", "pkcs12", "-info", "-nodes", "-in", str(path), "-passin", "pass:pässword"]
    out = _run(*args, *(["-legacy"] if legacy else []))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("BEGIN PRIVATE KEY") == 4
    assert out.stdout.count("BEGIN CERTIFICATE") == 6  # four leaves, two CAs once each
    assert ("Iteration 600000" in out.stderr) and ("sha1" if legacy else "sha256") in out.stderr.split("MAC:")[1].split(",")[0]


@needs_nss
@pytest.mark.interop
@pytest.mark.parametrize("legacy", [False, True])
def test_nss_pk12util_imports_every_key(items, legacy, tmp_path):
    path = tmp_path / "all.p12"
    path.write_bytes(build_pfx(items, b"nss-pw", legacy=legacy, iterations=10_000))
    db = f"sql:{tmp_path}"
    assert _run("certutil", "-N", "-d", db, "--empty-password").returncode == 0
    out = _run("pk12util", "-i", str(path), "-d", db, "-W", "nss-pw")
    assert out.returncode == 0 and "SUCCESSFUL" in out.stdout, out.stdout + out.stderr
    keys = _run("certutil", "-K", "-d", db).stdout
    assert sum(1 for line in keys.splitlines() if line.startswith("<")) == 4
    for _, cert, _ in items:
        assert cert.subject.get_attributes_for_oid(cert.subject.rdns[0].__iter__().__next__().oid)[0].value in keys


@pytest.mark.parametrize("name,password,count", VECTOR_P12)
def test_reads_every_vector_file(name, password, count):
    pairs = parse_pfx((VECTORS / name).read_bytes(), password)
    assert len(pairs) == count
    for p in pairs:
        assert _spki(p.key) == p.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert len({p.cert for p in pairs}) == count
    if count == 2:  # RFC 9216: the cross-signed CA is the third certificate
        assert all(len(p.chain) == 1 for p in pairs)


def _pem_files(tmp_path, item):
    key, cert, chain = item
    k, c, ca = tmp_path / "k.pem", tmp_path / "c.pem", tmp_path / "ca.pem"
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca.write_bytes(chain[0].public_bytes(serialization.Encoding.PEM))
    return k, c, ca


@needs_openssl
@pytest.mark.interop
@pytest.mark.parametrize("extra", [[], ["-legacy"], ["-descert", "-keypbe", "DES-EDE3-CBC", "-certpbe", "DES-EDE3-CBC", "-macalg", "sha1", "-legacy"]])
def test_reads_openssl_exports(tmp_path, items, extra):
    k, c, ca = _pem_files(tmp_path, items[0])
    out = tmp_path / "o.p12"
    r = _run("openssl", "pkcs12", "-export", "-inkey", str(k), "-in", str(c), "-certfile", str(ca),
             "-out", str(out), "-passout", "pass:ossl", *extra)
    assert r.returncode == 0, r.stderr
    [pair] = parse_pfx(out.read_bytes(), b"ossl")
    assert pair.cert == items[0][1] and pair.chain == items[0][2]
    with pytest.raises(WrongPassword):
        parse_pfx(out.read_bytes(), b"osl")


@needs_nss
@pytest.mark.interop
@pytest.mark.parametrize("ciphers", [
    [],  # pk12util default: PBES2 AES, SHA-256 MAC
    ["-c", "PKCS #12 V2 PBE With SHA-1 And 3KEY Triple DES-CBC",  # Thunderbird's legacy default
     "-C", "PKCS #12 V2 PBE With SHA-1 And 40 Bit RC2 CBC", "-M", "SHA-1"],
])
def test_reads_nss_exports_including_thunderbird_legacy(tmp_path, items, ciphers):
    db = f"sql:{tmp_path}"
    _run("certutil", "-N", "-d", db, "--empty-password")
    src = tmp_path / "in.p12"
    src.write_bytes(build_pfx(items[:2], b"in", iterations=1000))
    assert _run("pk12util", "-i", str(src), "-d", db, "-W", "in").returncode == 0
    nick = _run("certutil", "-L", "-d", db).stdout
    name = "rsa1@example.test"
    assert name in nick
    out = tmp_path / "nss.p12"
    r = _run("pk12util", "-o", str(out), "-n", name, "-d", db, "-W", "tb-export", *ciphers)
    assert r.returncode == 0, r.stdout + r.stderr
    [pair] = parse_pfx(out.read_bytes(), b"tb-export")
    assert pair.cert == items[0][1] and _spki(pair.key) == _spki(items[0][0])


@needs_openssl
@pytest.mark.interop
def test_planted_unprotected_pfx_is_rejected(tmp_path, items):
    k, c, ca = _pem_files(tmp_path, items[1])
    out = tmp_path / "planted.p12"
    r = _run("openssl", "pkcs12", "-export", "-nomac", "-keypbe", "NONE", "-certpbe", "NONE",
             "-inkey", str(k), "-in", str(c), "-out", str(out), "-passout", "pass:")
    assert r.returncode == 0, r.stderr
    for password in (b"any", b"", None):
        with pytest.raises(BackupRejected):
            parse_pfx(out.read_bytes(), password)
    # a user's own old file may still be imported deliberately
    assert parse_pfx(out.read_bytes(), b"", require_protected=False)[0].cert == items[1][1]


@needs_openssl
@pytest.mark.interop
def test_macless_pfx_with_encrypted_bags_is_rejected(tmp_path, items):
    k, c, _ = _pem_files(tmp_path, items[1])
    out = tmp_path / "nomac.p12"
    r = _run("openssl", "pkcs12", "-export", "-nomac", "-inkey", str(k), "-in", str(c), "-out", str(out), "-passout", "pass:pw")
    assert r.returncode == 0, r.stderr
    with pytest.raises(BackupRejected, match="MAC"):
        parse_pfx(out.read_bytes(), b"pw")


@needs_openssl
@pytest.mark.interop
def test_mac_but_plain_key_bag_is_rejected(tmp_path, items):
    k, c, _ = _pem_files(tmp_path, items[1])
    out = tmp_path / "plainkey.p12"
    r = _run("openssl", "pkcs12", "-export", "-keypbe", "NONE", "-certpbe", "NONE", "-inkey", str(k), "-in", str(c),
             "-out", str(out), "-passout", "pass:pw")
    assert r.returncode == 0, r.stderr
    with pytest.raises(BackupRejected, match="unencrypted"):
        parse_pfx(out.read_bytes(), b"pw")


def test_garbage_is_a_keyfile_error():
    from autosmime.errors import KeyFileError
    for junk in (b"", b"\x30\x03\x02\x01\x03", b"not asn.1 at all", (VECTORS / "rfc9216/keys/alice.p12").read_bytes()[:300]):
        with pytest.raises(KeyFileError):
            parse_pfx(junk, b"alice")


def test_iterations_are_capped():
    from autosmime.errors import KeyFileError
    with pytest.raises(KeyFileError):
        build_pfx(_items()[:1], b"pw", iterations=600_001)
