"""With a real keyring backend, secrets live in it: the IMAP password, the vault's device key, the recovery code.

Nothing secret is left in the home, and every command still finds what it needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key

pytestmark = pytest.mark.mailserver


def _env(store: Path) -> dict:
    here = str(Path(__file__).parent)
    return {**os.environ, "PYTHON_KEYRING_BACKEND": "filekeyring.FileKeyring", "AUTOSMIME_TEST_KEYRING": str(store),
            "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}


def cli(env: dict, home: Path, *args) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), *map(str, args)], env=env,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return r


def test_secrets_go_to_the_keyring_and_commands_still_work(mailstack, mail_user, tmp_path):
    email, password = mail_user
    store = tmp_path / "keyring.json"
    env = _env(store)
    home = tmp_path / "home"
    pw = tmp_path / "imap-pw"
    pw.write_text(password)
    cli(env, home, "account", "add", "--email", email, "--imap", f"127.0.0.1:{mailstack.imap_port}",
        "--smtp", f"127.0.0.1:{mailstack.smtp_port}", "--password-file", pw, "--ca-file", mailstack.ca_file)
    pw.unlink()  # from now on the password can only come from the keyring
    assert password not in (home / "account.json").read_text()
    assert json.loads((home / "account.json").read_text()).get("password_file") is None

    ca_key, ca = make_ca("keyring CA", new_key("ec"))
    key = new_key("ec")
    cert = make_mailbox_cert(email, key.public_key(), ca_key, ca)
    (tmp_path / "k.p12").write_bytes(pkcs12.serialize_key_and_certificates(
        b"k", key, cert, None, serialization.BestAvailableEncryption(b"pw")))
    (tmp_path / "p12pw").write_text("pw")
    r = cli(env, home, "import", tmp_path / "k.p12", "--password-file", tmp_path / "p12pw",
            "--recovery-code-out", tmp_path / "code")
    assert b"key backup 1 stored" in r.stderr

    kept = json.loads(store.read_text())
    assert any(k.startswith("autosmime\0device-key:") for k in kept)
    assert any(k.startswith("autosmime\0recovery-code:") for k in kept)
    assert kept.get(f"autosmime\0{email}") == password
    assert not (home / "device.key").exists() and not (home / "recovery-code").exists()
    assert json.loads(cli(env, home, "status", "--json").stdout)["recovery_code_stored"] is True

    # A second device with its own keyring entries restores with the code.
    phone = tmp_path / "phone"
    pw.write_text(password)
    cli(env, phone, "account", "add", "--email", email, "--imap", f"127.0.0.1:{mailstack.imap_port}",
        "--smtp", f"127.0.0.1:{mailstack.smtp_port}", "--password-file", pw, "--ca-file", mailstack.ca_file)
    cli(env, phone, "restore", "--recovery-code-file", tmp_path / "code")
    keys = json.loads(cli(env, phone, "keys", "--json").stdout)["keys"]
    assert [k["fingerprint"] for k in keys] == [cert.fingerprint(hashes.SHA256()).hex()]
