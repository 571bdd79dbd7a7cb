"""sign_and_encrypt is encrypt(sign(...)) in one pass: same envelope contents, readable by us and OpenSSL."""

from __future__ import annotations

import re
import subprocess

import pytest

from autosmime.errors import NoKey, NotForMe
from autosmime.smime import decrypt, encrypt, read, sign, sign_and_encrypt


def _boundary(signed: bytes) -> bytes:
    return re.search(rb'boundary="([^"]+)"', signed).group(1)


def _without_boundary_and_signature(signed: bytes) -> bytes:
    """The multipart/signed message with its boundary and its signature's base64 blanked out."""
    text = signed.replace(_boundary(signed), b"BOUNDARY")
    head, _, signature_and_close = text.rpartition(b"Content-Description: S/MIME Cryptographic Signature\r\n\r\n")
    return head + b"<signature>" + signature_and_close[signature_and_close.index(b"--BOUNDARY--"):]


@pytest.mark.parametrize("signer,recipient", [("alice", "bob"), ("bob", "carol"), ("dave", "alice")])
def test_the_envelope_holds_what_sign_then_encrypt_puts_in_it(pki, message, signer, recipient):
    s, r = pki[signer], pki[recipient]
    one_pass = decrypt(sign_and_encrypt(message, s.key, s.cert, [r.cert]), [r.pair]).message
    two_steps = decrypt(encrypt(sign(message, s.key, s.cert), [r.cert], sender_cert=s.cert), [r.pair]).message
    assert _without_boundary_and_signature(one_pass) == _without_boundary_and_signature(two_steps)
    opened = read(one_pass, trust_roots=[pki.ca_cert], require_from_match=False)  # the mail is From alice
    assert opened.message == message
    assert opened.signatures[0].signer_address == s.email


def test_the_sender_can_read_the_sent_copy(pki, message):
    alice = pki["alice"]
    out = sign_and_encrypt(message, alice.key, alice.cert, [pki["bob"].cert])
    for reader in ("alice", "bob"):
        opened = read(out, keys=[pki[reader].pair], trust_roots=[pki.ca_cert])
        assert [layer.kind for layer in opened.layers] == ["enveloped", "clear-signed", "plain"]
        assert opened.message == message
    with pytest.raises(NotForMe):
        decrypt(out, [pki["carol"].pair])


def test_modern_profile_and_a_wrong_key_fail_as_the_two_steps_do(pki, message):
    alice, carol = pki["alice"], pki["carol"]
    out = sign_and_encrypt(message, alice.key, alice.cert, [carol.cert], profile="modern")
    assert decrypt(out, [carol.pair]).report.authenticated
    with pytest.raises(NoKey):
        sign_and_encrypt(message, carol.key, alice.cert, [carol.cert])


def test_openssl_decrypts_and_verifies_it(pki, message, tmp_path):
    alice, carol = pki["alice"], pki["carol"]
    (tmp_path / "in.eml").write_bytes(sign_and_encrypt(message, alice.key, alice.cert, [carol.cert]))
    decrypted = subprocess.run(["openssl", "cms", "-decrypt", "-in", str(tmp_path / "in.eml"),
                                "-recip", str(carol.cert_path), "-inkey", str(carol.key_path)],
                               check=True, capture_output=True).stdout
    inner = subprocess.run(["openssl", "cms", "-verify", "-CAfile", str(pki.ca_path), "-purpose", "smimesign"],
                           input=decrypted, check=True, capture_output=True).stdout
    body = message.split(b"\r\n\r\n", 1)[1]
    assert inner.replace(b"\r\n", b"\n").endswith(body.replace(b"\r\n", b"\n"))
