"""verify and read on a set-up device learn the signer's certificate (issue 12's harvesting);
without a device home they create nothing."""

from __future__ import annotations

from autosmime.exchange.contacts import Contacts
from autosmime.pki.certs import fingerprint
from autosmime.vault.store import Vault
from tests.engine.test_cli import run


def _signed(pki, message, name="alice"):
    user = pki[name]
    rc, out, err = run("sign", "--key", user.key_path, "--cert", user.cert_path, stdin=message)
    assert rc == 0, err
    return out


def test_verify_and_read_learn_the_good_signer_on_a_device(pki, message, tmp_path):
    home = tmp_path / "device"
    Vault.open(home)  # a set-up device has a vault
    rc, _, err = run("verify", "--trust", pki.ca_path, stdin=_signed(pki, message), home=home)
    assert rc == 0, err
    (learned,) = Contacts(home).certificates("alice@example.test")
    assert learned.sha256 == fingerprint(pki["alice"].cert)
    other = tmp_path / "other"
    Vault.open(other).add(pki["bob"].key, pki["bob"].cert, [])  # read wants a key to decrypt with
    rc, _, err = run("read", "--trust", pki.ca_path, stdin=_signed(pki, message), home=other)
    assert rc == 0, err
    assert [c.sha256 for c in Contacts(other).certificates("alice@example.test")] == [fingerprint(pki["alice"].cert)]


def test_a_second_certificate_for_a_known_address_is_held_back_and_said(pki, message, tmp_path):
    home = tmp_path / "device"
    Vault.open(home)
    assert run("verify", "--trust", pki.ca_path, stdin=_signed(pki, message), home=home)[0] == 0
    old = message.replace(b"From: Alice", b"From: Alice")  # alice's retired key signs the same mail
    rc, _, err = run("verify", "--trust", pki.ca_path, stdin=_signed(pki, old, "alice_old"), home=home)
    assert rc == 0, err
    assert "held back" in err and err.startswith("autosmime: ")


def test_no_home_is_created_for_a_plain_verdict(pki, message, tmp_path):
    home = tmp_path / "never"
    rc, _, err = run("verify", "--trust", pki.ca_path, stdin=_signed(pki, message), home=home)
    assert rc == 0, err
    assert not home.exists()
