"""``autosmime import`` and ``keys``, driven as a user would: a real process, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from autosmime.vault.importing import import_p12
from autosmime.vault.store import Vault

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"  # shared/ lies beside the checkout


def autosmime(home, *args, **kw):
    return subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, **kw)


def test_import_then_keys_json_shows_every_key(tmp_path):
    home = tmp_path / "home"
    (tmp_path / "pw").write_text("alice\n")
    r = autosmime(home, "import", str(VECTORS / "rfc9216/keys/alice.p12"), "--password-file", str(tmp_path / "pw"))
    assert r.returncode == 0, r.stderr
    assert "autosmime: imported 2 new keys" in r.stderr and "alice" not in r.stdout
    (tmp_path / "pw2").write_text("nss")
    r = autosmime(home, "import", str(VECTORS / "nss-interop-openssl/Fran.p12"), "--password-file", str(tmp_path / "pw2"))
    assert r.returncode == 0, r.stderr
    r = autosmime(home, "keys", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    emails = sorted(k["email"] for k in doc["keys"])
    assert emails == ["alice@smime.example", "alice@smime.example", "fran@example.com"]
    assert all(len(k["fingerprint"]) == 64 and k["not_after"].startswith(("2052", "9999")) for k in doc["keys"])
    assert "backup_pending" in doc["backup"]
    table = autosmime(home, "keys")
    assert table.returncode == 0 and "fran@example.com" in table.stdout and "backup" in table.stdout


def test_wrong_password_file_exits_1_and_leaves_vault_unchanged(tmp_path):
    home = tmp_path / "home"
    import_p12(Vault.open(home), (VECTORS / "nss-interop-openssl/Fran-ec.p12").read_bytes(), b"nss")
    before = (home / "vault.bin").read_bytes()
    (tmp_path / "pw").write_text("not-bob\n")
    r = autosmime(home, "import", str(VECTORS / "rfc9216/keys/bob.p12"), "--password-file", str(tmp_path / "pw"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("autosmime: error:") and "password" in r.stderr
    assert (home / "vault.bin").read_bytes() == before
    r = autosmime(home, "import", str(tmp_path / "missing.p12"), "--password-file", str(tmp_path / "pw"))
    assert r.returncode == 1 and (home / "vault.bin").read_bytes() == before


def test_import_twice_adds_nothing_new(tmp_path):
    vault = Vault.open(tmp_path)
    data = (VECTORS / "rfc9216/keys/dana.p12").read_bytes()
    assert len(import_p12(vault, data, b"dana")) == 2
    assert import_p12(vault, data, b"dana") == []
    assert len(vault.entries()) == 2
