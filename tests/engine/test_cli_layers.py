"""`autosmime read` (plain and --json) and `verify` against issue 9's contract: content printed,
one summary line on stderr, exit 0 only for a good (or absent) signature."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

from autosmime.smime import encrypt, sign, sign_and_encrypt
from tests.engine.test_cli import run
from tests.engine.test_layers import _entity, _multipart, _outer, _pgp_signed
from tests.engine.test_signature_rules import _dated, two_signers


def _keys(pki, who="bob"):
    u = pki[who]
    return ["--key", u.key_path, "--cert", u.cert_path, "--trust", pki.ca_path]


def test_read_prints_content_and_a_summary_despite_a_broken_outer_signature(pki, message):
    a = pki["alice"]
    outer = sign(sign_and_encrypt(message, a.key, a.cert, [pki["bob"].cert]), a.key, a.cert)
    altered = outer.replace(b'filename="smime.p7m"\r\n', b'filename="smime.p7m"; size=1\r\n', 1)
    rc, out, err = run("read", *_keys(pki), stdin=altered)
    assert rc == 0 and out == message, err
    assert err.count("\n") == 1 and err.startswith("autosmime: outer signature broken")
    assert "inner signature by alice@example.test (good)" in err


def test_read_json(pki, message):
    a = pki["alice"]
    wrapped = _pgp_signed(_outer(message), _entity(sign_and_encrypt(message, a.key, a.cert, [pki["bob"].cert])))
    rc, out, err = run("read", "--json", *_keys(pki), stdin=wrapped)
    assert rc == 0, err
    doc = json.loads(out)
    assert [(x["kind"], x["verdict"], x["covers"], x["decides"]) for x in doc["layers"]] == [
        ("foreign", "unsupported", "message", False), ("enveloped", "good", "message", False),
        ("clear-signed", "good", "message", True), ("plain", None, "message", False)]
    assert doc["verdict"] == "good" and doc["exit"] == 0 and doc["content"].encode() == message
    assert doc["layers"][2]["signer"]["address"] == "alice@example.test"


def test_read_exit_1_when_the_inner_signature_is_bad(pki, message):
    a = pki["alice"]
    tampered = sign(message, a.key, a.cert).replace(b"numbers are attached", b"numbers are changed!")
    rc, out, err = run("read", *_keys(pki), stdin=encrypt(tampered, [pki["bob"].cert]))
    assert rc == 1 and b"numbers are changed!" in out  # printed all the same, flagged
    assert "bad-digest" in err and err.count("\n") == 1
    rc, out, err = run("read", "--json", *_keys(pki), stdin=encrypt(tampered, [pki["bob"].cert]))
    assert rc == 1 and json.loads(out)["verdict"] == "bad-digest"


def test_read_efail_alternative_prints_the_message_unopened(pki, message):
    enc = encrypt(message, [pki["bob"].cert])
    efail = _multipart(_outer(message), b"alternative", [_entity(enc), _entity(enc)])
    rc, out, err = run("read", *_keys(pki), stdin=efail)
    assert rc == 0 and out == efail and b"Hello Bob" not in out, err
    assert "part 1: enveloped, not opened" in err


def test_read_not_for_me(pki, message):
    rc, out, err = run("read", *_keys(pki), stdin=encrypt(message, [pki["carol"].cert]))
    assert rc == 1 and out == b"" and err.count("\n") == 1 and "not-for-me" in err


def test_read_warns_about_weak_ciphers_as_decrypt_does(pki, message, tmp_path):
    c = pki["carol"]  # RSA: openssl's key transport
    (tmp_path / "m.eml").write_bytes(message)
    enc = subprocess.run(["openssl", "cms", "-encrypt", "-des3", "-in", tmp_path / "m.eml", c.cert_path],
                         capture_output=True, check=True).stdout
    rc, out, err = run("decrypt", "--key", c.key_path, "--cert", c.cert_path, stdin=enc)
    assert rc == 0 and "warning: weak encryption (tripledes_3key)" in err
    rc, out, err = run("read", *_keys(pki, "carol"), stdin=enc)
    assert rc == 0 and b"Hello Bob" in out, err
    assert "warning: weak encryption (tripledes_3key)" in err
    rc, out, err = run("read", "--json", *_keys(pki, "carol"), stdin=enc)
    assert json.loads(out)["layers"][0]["warnings"] == ["weak encryption (tripledes_3key)"]


def test_verify_time_mismatch_exit_1_and_at_relaxes_it(pki, message):
    a = pki["alice"]
    signed = sign(_dated(message, dt.timedelta(minutes=61)), a.key, a.cert)
    rc, out, err = run("verify", "--trust", pki.ca_path, stdin=signed)
    assert rc == 1 and out == b"" and "minutes apart" in err and err.count("\n") == 1
    now = dt.datetime.now(dt.UTC).isoformat()
    rc, out, err = run("verify", "--trust", pki.ca_path, "--at", now, stdin=signed)
    assert rc == 0, err
    rc, out, err = run("read", *_keys(pki), stdin=signed)
    assert rc == 1 and "time-mismatch" in err
    rc, out, err = run("read", *_keys(pki), "--at", now, stdin=signed)
    assert rc == 0, err


def test_signer_cert_out_is_the_signer_from_names(pki, message, tmp_path):
    a, c = pki["alice"], pki["carol"]
    for first, second in ((c, a), (a, c)):
        rc, _, err = run("verify", "--trust", pki.ca_path, "--signer-cert-out", tmp_path / "s.pem",
                         stdin=two_signers(message, first, second))
        assert rc == 0, err
        assert (tmp_path / "s.pem").read_bytes() == a.cert_path.read_bytes()
        assert "good signature from alice@example.test" in err


def test_read_needs_no_key_for_signed_or_plain_mail(pki, message, tmp_path):
    # a device without a vault, and no --key: reading a signed message must not ask for a decryption key
    a = pki["alice"]
    home = tmp_path / "empty-home"
    rc, out, err = run("read", "--trust", pki.ca_path, stdin=sign(message, a.key, a.cert), home=home)
    assert rc == 0 and out == message and "signed by alice@example.test (good)" in err, err
    rc, out, err = run("read", "--trust", pki.ca_path, stdin=message, home=home)
    assert rc == 0 and out == message, err
    rc, out, err = run("read", "--json", "--trust", pki.ca_path, stdin=encrypt(message, [pki["bob"].cert]), home=home)
    assert rc == 1 and json.loads(out)["verdict"] == "not-for-me", err
    assert not home.exists()  # reading created nothing
    rc, out, err = run("read", "--key", a.key_path, stdin=message, home=home)  # half a key pair: still a usage error
    assert rc == 2, err
