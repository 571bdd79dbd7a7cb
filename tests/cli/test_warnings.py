"""``encrypt`` warns when your own copy is left out; ``sign`` warns when From is not the certificate's address."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from autosmime.vault.store import Vault
from tests.cli import support
from tests.cli.support import run

MESSAGE = "From: {sender}\nTo: bob@example.test\nSubject: hi\n\nhello\n"


@pytest.fixture
def files(tmp_path):
    out = {}
    for name in ("alice", "bob"):
        key, cert, _ = support.ca_issued(f"{name}@example.test")
        (tmp_path / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (tmp_path / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[name] = (tmp_path / f"{name}.key", tmp_path / f"{name}.pem", (key, cert, _))
    return out


def test_encrypt_without_your_own_certificate_warns(tmp_path, files):
    msg = MESSAGE.format(sender="alice@example.test")
    r = run(tmp_path / "empty-home", "encrypt", "--to", str(files["bob"][1]), input=msg)
    assert r.returncode == 0 and "application/pkcs7-mime" in r.stdout
    assert r.stderr.startswith("autosmime: warning: your own copy is left out")
    assert len(r.stderr.splitlines()) == 1
    r = run(tmp_path / "empty-home", "encrypt", "--to", str(files["bob"][1]), "--self", str(files["alice"][1]),
            input=msg)
    assert r.returncode == 0 and r.stderr == ""
    home = tmp_path / "home"
    Vault.open(home).add(*files["alice"][2])
    r = run(home, "encrypt", "--to", str(files["bob"][1]), input=msg)
    assert r.returncode == 0 and r.stderr == ""


def test_sign_warns_when_from_is_not_the_certificates_address(tmp_path, files):
    key, cert, _ = files["alice"]
    r = run(None, "sign", "--key", str(key), "--cert", str(cert), input=MESSAGE.format(sender="carol@example.test"))
    assert r.returncode == 0 and "pkcs7-signature" in r.stdout
    assert r.stderr == ("autosmime: warning: From is carol@example.test but the certificate is for "
                        "alice@example.test: recipients' mail clients will show the signature as not matching "
                        "the sender\n")
    r = run(None, "sign", "--key", str(key), "--cert", str(cert),
            input=MESSAGE.format(sender="Alice <Alice@Example.test>"))
    assert r.returncode == 0 and r.stderr == ""
