"""Legacy (3DES) PKCS#12 files that gpgsm 2.2.40 can open: its key derivation defect and our way around it.

gpgsm's minip12.c string_to_key stores (I_j + B + 1) mod 2^512 left-aligned
when its top byte is 0, so for ~1 salt in 128 it derives a wrong 3DES key and
refuses the file as "possibly bad passphrase given". build_pfx(legacy=True)
redraws the salts of such a file (autosmime.pki.pkcs12._gpgsm_misderives).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import pytest

from autosmime.pki.pkcs12 import _bmp, _gpgsm_misderives, _kdf, build_pfx, gpgsm_misderives_key, parse_pfx
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from tests.interop.peers import Gpgsm, PeerRefused, tool_version

TESTDATA = Path(__file__).with_name("testdata")
SAMPLE_PASSWORD = b"interop-pass"


def _gpgsm_string_to_key(salt: bytes, iterations: int, pw: bytes, n: int) -> bytes:
    """A transliteration of gnupg sm/minip12.c string_to_key (2.2.40), purpose 1 (key), defect included."""
    buf_i = bytearray(salt[i % len(salt)] for i in range(64))
    j = 0
    for _ in range(32):
        buf_i += bytes([0, pw[j] if j < len(pw) else 0])
        j += 1
        if j > len(pw):  # the trailing zero is included
            j = 0
    out = b""
    while True:
        h = hashlib.sha1(b"\x01" * 64 + bytes(buf_i)).digest()
        for _ in range(iterations - 1):
            h = hashlib.sha1(h).digest()
        out += h
        if len(out) >= n:
            return out[:n]
        b1 = int.from_bytes((h * 4)[:64], "big") + 1
        for i in (0, 64):
            num = (int.from_bytes(buf_i[i:i + 64], "big") + b1) % (1 << 512)
            raw = num.to_bytes((num.bit_length() + 7) // 8, "big")
            buf_i[i:i + len(raw)] = raw  # gcry_mpi_print: as few bytes as needed, at the start


@pytest.mark.parametrize("name", ["gpgsm-fail1.p12", "gpgsm-fail2.p12", "gpgsm-fail-keybag.p12"])
def test_predicate_recognises_files_gpgsm_refused(name):
    data = (TESTDATA / name).read_bytes()
    assert parse_pfx(data, SAMPLE_PASSWORD)  # the file itself is sound: right password, right MAC
    assert gpgsm_misderives_key(data, SAMPLE_PASSWORD)


def test_predicate_passes_a_file_gpgsm_imported():
    data = (TESTDATA / "gpgsm-pass.p12").read_bytes()
    assert parse_pfx(data, SAMPLE_PASSWORD)
    assert not gpgsm_misderives_key(data, SAMPLE_PASSWORD)


def test_predicate_matches_gpgsm_key_derivation():
    """Over random salts, the predicate holds exactly when gpgsm's key differs from RFC 7292's."""
    bmp, hits = _bmp(SAMPLE_PASSWORD), 0
    for _ in range(3000):
        salt = secrets.token_bytes(8)
        theirs = _gpgsm_string_to_key(salt, 1, SAMPLE_PASSWORD, 24)
        differs = theirs != _kdf("sha1", bmp, salt, 1, 1, 24)
        assert _gpgsm_misderives(bmp, salt, 1, 24) == differs, salt.hex()
        hits += differs
    assert 5 <= hits <= 60  # ~2/256 of 3000: the defect is exercised, not just absent


def test_legacy_writer_never_trips_the_predicate():
    """Without the redraw ~1 in 40 single-key files trips it; 200 in a row would almost surely hit one."""
    ca_key, ca = make_ca("gpgsm legacy CA", new_key("ec"))
    key = new_key("ec")
    cert = make_mailbox_cert("a@x.test", key.public_key(), ca_key, ca)
    for _ in range(200):
        pfx = build_pfx([(key, cert, (ca,))], SAMPLE_PASSWORD, legacy=True, iterations=1)
        assert not gpgsm_misderives_key(pfx, SAMPLE_PASSWORD)


@pytest.fixture(scope="module")
def gpgsm(tmp_path_factory):
    if tool_version("gpgsm") is None:
        message = "gpgsm is not installed (apt: gpgsm)"
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must run every peer")
        pytest.skip(message)
    peer = Gpgsm(tmp_path_factory.mktemp("gnupg"))
    # The agent re-protects every imported key; its calibrated S2K (~0.5 s a key) would dominate.
    with open(peer.home / "gpg-agent.conf", "a") as f:
        f.write("s2k-count 65536\n")
    try:
        yield peer
    finally:
        peer.close()


@pytest.mark.interop
def test_sample_files_fail_and_pass_in_gpgsm(gpgsm, tmp_path):
    """The saved samples still behave as recorded (and the fixed writer is what avoids them)."""
    for name, email in (("gpgsm-fail1.p12", "alice@example.test"), ("gpgsm-fail-keybag.p12", "u5@example.test")):
        with pytest.raises(PeerRefused):
            gpgsm.import_p12(TESTDATA / name, SAMPLE_PASSWORD, email)
    gpgsm.import_p12(TESTDATA / "gpgsm-pass.p12", SAMPLE_PASSWORD, "alice@example.test")  # fail1's key, other salts


N_EXPORTS = 100


@pytest.mark.interop
def test_legacy_exports_all_import_into_gpgsm(gpgsm, tmp_path):
    """N fresh legacy files (one RSA key + CA each: three 3DES blobs) all import; unfixed, ~9 runs in 10 fail.

    Every file has its own key: a key gpgsm already holds would hide a key bag it cannot decrypt.
    """
    ca_key, ca = make_ca("gpgsm legacy CA")  # gpgsm 2.2.40 has no ECC
    password = b"legacy-export-pw"
    failures = []
    for i in range(N_EXPORTS):
        email = f"user{i}@example.test"
        key = new_key("rsa")
        cert = make_mailbox_cert(email, key.public_key(), ca_key, ca)
        path = tmp_path / f"{i}.p12"
        path.write_bytes(build_pfx([(key, cert, (ca,))], password, legacy=True, iterations=2048))
        try:
            gpgsm.import_p12(path, password, email)
        except PeerRefused as e:
            failures.append((i, str(e)[-300:]))
    assert not failures, failures


@pytest.mark.interop
def test_cli_legacy_export_with_its_generated_password_imports_into_gpgsm(gpgsm, tmp_path):
    """`autosmime export --legacy` without --password-file: the password it makes must suit gpgsm 2.2 too."""
    import subprocess
    import sys

    from autosmime.vault.importing import import_p12
    from autosmime.vault.store import Vault

    ca_key, ca = make_ca("gpgsm export CA")
    email = "exported@example.test"
    key = new_key("rsa")  # gpgsm 2.2.40 has no ECC
    home = tmp_path / "home"
    import_p12(Vault.open(home), build_pfx([(key, make_mailbox_cert(email, key.public_key(), ca_key, ca), (ca,))],
                                          b"in"), b"in")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), "export", "--out", str(out),
                        "--legacy"], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    password = (out / "export-password.txt").read_bytes().strip()
    assert len(password) <= 31
    gpgsm.import_p12(out / "autosmime-export.p12", password, email)


def _vault_with_rsa_keys(home: Path, emails: list[str]) -> None:
    from autosmime.vault.importing import import_p12
    from autosmime.vault.store import Vault

    ca_key, ca = make_ca("gpgsm multi-key CA")
    vault = Vault.open(home)
    for email in emails:
        key = new_key("rsa")  # gpgsm 2.2.40 has no ECC
        pfx = build_pfx([(key, make_mailbox_cert(email, key.public_key(), ca_key, ca), (ca,))], b"in", iterations=1000)
        import_p12(vault, pfx, b"in")


@pytest.mark.interop
@pytest.mark.parametrize("count", [1, 2, 3])
def test_cli_legacy_export_of_n_keys_imports_every_key_into_gpgsm(gpgsm, tmp_path, count):
    """gpgsm 2.2 reads one private key per PKCS#12 ("a key has already been received" at the second), so
    `export --legacy` writes one file per key beside the all-keys file; importing them gives gpgsm every key."""
    import subprocess
    import sys

    emails = [f"legacy{count}-{i}@example.test" for i in range(count)]
    home = tmp_path / "home"
    _vault_with_rsa_keys(home, emails)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), "export", "--out", str(out),
                        "--legacy"], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    password = (out / "export-password.txt").read_bytes().strip()
    singles = sorted(p for p in out.glob("*.p12") if p.name != "autosmime-export.p12")
    assert len(singles) == count
    for email in emails:
        [single] = [p for p in singles if p.name.startswith(email)]
        assert [pair.cert for pair in parse_pfx(single.read_bytes(), password)][0].subject.rfc4514_string().endswith(
            f"CN={email}")
        gpgsm.import_p12(single, password, email)   # raises unless gpgsm now holds the secret key
    # the all-keys file stays, for NSS, Windows and OpenSSL
    assert len(parse_pfx((out / "autosmime-export.p12").read_bytes(), password)) == count
