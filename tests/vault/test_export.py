"""``autosmime export``: one PKCS#12 with every key that OpenSSL and NSS import, plus PEM certificates."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from autosmime.pki.pkcs12 import parse_pfx
from autosmime.vault.export import export_all
from autosmime.vault.importing import import_p12
from autosmime.vault.store import Vault

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"  # shared/ lies beside the checkout


def _run(*args):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    vault = Vault.open(home)
    # alice is RSA: NSS 3.87 cannot import the Ed25519/X25519 personas (carlos, dana) at all
    import_p12(vault, (VECTORS / "rfc9216/keys/alice.p12").read_bytes(), b"alice")
    import_p12(vault, (VECTORS / "nss-interop-openssl/Fran.p12").read_bytes(), b"nss")
    return home


def test_export_all_writes_private_files_with_every_key(home, tmp_path):
    files = export_all(Vault.open(home), tmp_path / "out", b"export-pw")
    assert files[0].name == "autosmime-export.p12"
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    assert len(parse_pfx(files[0].read_bytes(), b"export-pw")) == 3
    bundle = (tmp_path / "out" / "certificates.pem").read_text()
    assert bundle.count("BEGIN CERTIFICATE") == 4  # 3 leaves + the cross-signed CA
    assert len([p for p in files if p.suffix == ".pem"]) == 4


@pytest.mark.interop
@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("pk12util")), reason="openssl/NSS tools missing")
@pytest.mark.parametrize("legacy", [False, True])
def test_cli_export_imports_into_openssl_and_nss(home, tmp_path, legacy):
    out = tmp_path / "out"
    r = _run(sys.executable, "-m", "autosmime", "--home", str(home), "export", "--out", str(out), *(["--legacy"] if legacy else []))
    assert r.returncode == 0, r.stderr
    pw_file = out / "export-password.txt"
    password = pw_file.read_text().strip()
    assert "export-password.txt" in r.stderr and password not in r.stderr + r.stdout
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    p12 = out / "autosmime-export.p12"
    o = _run("openssl", "pkcs12", "-info", "-nodes", "-in", str(p12), "-passin", f"file:{pw_file}", *(["-legacy"] if legacy else []))
    assert o.returncode == 0, o.stderr
    assert o.stdout.count("BEGIN PRIVATE KEY") == 3
    db = f"sql:{tmp_path}"
    _run("certutil", "-N", "-d", db, "--empty-password")
    n = _run("pk12util", "-i", str(p12), "-d", db, "-w", str(pw_file))
    assert n.returncode == 0, n.stdout + n.stderr
    keys = _run("certutil", "-K", "-d", db).stdout
    assert sum(1 for line in keys.splitlines() if line.startswith("<")) == 3


def test_cli_export_with_password_file_and_empty_vault(tmp_path, home):
    (tmp_path / "pw").write_text("my export password\n")
    r = _run(sys.executable, "-m", "autosmime", "--home", str(home), "export", "--out", str(tmp_path / "o"),
             "--password-file", str(tmp_path / "pw"))
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "o" / "export-password.txt").exists()
    assert len(parse_pfx((tmp_path / "o" / "autosmime-export.p12").read_bytes(), b"my export password")) == 3
    Vault.open(tmp_path / "empty")
    r = _run(sys.executable, "-m", "autosmime", "--home", str(tmp_path / "empty"), "export", "--out", str(tmp_path / "e"))
    assert r.returncode == 1 and "no keys" in r.stderr


@pytest.mark.parametrize("length, legacy, warned", [(40, True, True), (31, True, False), (40, False, False)])
def test_cli_legacy_export_warns_of_a_password_gpgsm_refuses(home, tmp_path, length, legacy, warned):
    password = "p" * length
    (tmp_path / "pw").write_text(password + "\n")
    r = _run(sys.executable, "-m", "autosmime", "--home", str(home), "export", "--out", str(tmp_path / "o"),
             "--password-file", str(tmp_path / "pw"), *(["--legacy"] if legacy else []))
    assert r.returncode == 0, r.stderr
    assert ("gpgsm" in r.stderr) is warned and password not in r.stderr + r.stdout
    assert len(parse_pfx((tmp_path / "o" / "autosmime-export.p12").read_bytes(), password.encode())) == 3


def test_export_refuses_a_folder_that_is_not_empty(home, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    r = _run(sys.executable, "-m", "autosmime", "--home", str(home), "export", "--out", str(out))
    assert r.returncode == 1 and "not empty" in r.stderr and "--force" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]      # nothing written
    r = _run(sys.executable, "-m", "autosmime", "--home", str(home), "export", "--out", str(out), "--force")
    assert r.returncode == 0, r.stderr
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "autosmime-export.p12").exists()
    # an existing empty folder is fine without --force
    (tmp_path / "empty").mkdir()
    assert export_all(Vault.open(home), tmp_path / "empty", b"export-pw")[0].exists()


@pytest.mark.parametrize("password, warned", [("short-pw123", True), ("twelve-chars", False), ("äöüäöüäöüäö", True)])
def test_cli_export_warns_of_a_short_password(home, tmp_path, password, warned):
    (tmp_path / "pw").write_text(password + "\n", encoding="utf-8")
    r = _run(sys.executable, "-m", "autosmime", "--home", str(home), "export", "--out", str(tmp_path / "o"),
             "--password-file", str(tmp_path / "pw"))
    assert r.returncode == 0, r.stderr
    assert ("shorter than 12 characters" in r.stderr) is warned, r.stderr
    assert password not in r.stderr + r.stdout


def test_legacy_export_adds_one_file_per_key(home, tmp_path):
    files = export_all(Vault.open(home), tmp_path / "out", b"export-pw", legacy=True)
    singles = [p for p in files if p.suffix == ".p12" and p.name != "autosmime-export.p12"]
    assert len(singles) == 3
    held = [parse_pfx(p.read_bytes(), b"export-pw") for p in singles]
    assert all(len(pairs) == 1 for pairs in held)
    assert {pairs[0].cert for pairs in held} == {p.cert for p in parse_pfx(files[0].read_bytes(), b"export-pw")}
    assert not [p for p in export_all(Vault.open(home), tmp_path / "modern", b"export-pw") if p.name.endswith(".p12")][1:]
