"""The high-level engine: sign, verify, encrypt, decrypt, read — round trips, nesting and every typed failure."""

import datetime as dt

import pytest

from autosmime.errors import BadSignature, ExpiredSigner, MalformedMessage, NotForMe, SignerMismatch, UntrustedSigner
from autosmime.smime import decrypt, encrypt, mime, read, sign, verify


def _headers(raw: bytes) -> list[bytes]:
    return mime.Message.parse(raw).outer_headers()


@pytest.mark.parametrize("who", ["alice", "bob", "dave"])
@pytest.mark.parametrize("opaque", [False, True])
def test_sign_verify_round_trip_keeps_headers_and_content(pki, message, who, opaque):
    u = pki[who]
    msg = message.replace(b"alice@example.test>", f"{u.email}>".encode())
    signed = sign(msg, u.key, u.cert, opaque=opaque)
    assert _headers(signed) == _headers(msg)
    r = verify(signed, [pki.ca_cert])
    assert r.message == msg
    assert r.signer_address == u.email and r.from_matches is True
    assert r.signer_cert == u.cert and r.chain[-1] == pki.ca_cert
    assert r.signing_time is not None and abs(r.signing_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_detached_signature_is_multipart_signed_with_micalg(pki, message):
    signed = sign(message, pki["alice"].key, pki["alice"].cert)
    ct = mime.Message.parse(signed).content_type
    assert ct.value == "multipart/signed"
    assert ct.params["protocol"] == "application/pkcs7-signature" and ct.params["micalg"] == "sha-256"
    signed384 = sign(message, pki["dave"].key, pki["dave"].cert)
    assert mime.Message.parse(signed384).content_type.params["micalg"] == "sha-384"


def test_pss_signature_verifies(pki, message):
    assert verify(sign(message, pki["alice"].key, pki["alice"].cert, pss=True), [pki.ca_cert]).from_matches


def test_tampered_body_is_bad_signature(pki, message):
    signed = sign(message, pki["alice"].key, pki["alice"].cert)
    with pytest.raises(BadSignature):
        verify(signed.replace(b"numbers are attached", b"numbers are wrong!!!"), [pki.ca_cert])


def test_tampered_signature_is_bad_signature(pki, message):
    signed = sign(message, pki["alice"].key, pki["alice"].cert)
    parts = mime.split_signed(mime.Message.parse(signed))
    sig = bytearray(parts.signature)
    sig[-10] ^= 0x01  # inside the signature value, the last element
    forged = mime.multipart_signed(_headers(signed), parts.content, bytes(sig), "sha-256")
    with pytest.raises(BadSignature):
        verify(forged, [pki.ca_cert])


def test_untrusted_root(pki, message):
    signed = sign(message, pki["mallory"].key, pki["mallory"].cert)
    with pytest.raises(UntrustedSigner):
        verify(signed, [pki.ca_cert])


def test_expired_signer_now_but_valid_at_signing_era(pki, message):
    u = pki["expired"]
    msg = message.replace(b"alice@example.test>", b"expired@example.test>")
    signed = sign(msg, u.key, u.cert)
    with pytest.raises(ExpiredSigner):
        verify(signed, [pki.ca_cert])
    r = verify(signed, [pki.ca_cert], at=dt.datetime(2023, 1, 15, tzinfo=dt.UTC))
    assert r.signer_address == "expired@example.test"


def test_from_mismatch(pki, message):
    signed = sign(message, pki["bob"].key, pki["bob"].cert)  # From says alice
    with pytest.raises(SignerMismatch):
        verify(signed, [pki.ca_cert])
    r = verify(signed, [pki.ca_cert], require_from_match=False)
    assert r.from_matches is False and r.signer_address == "bob@example.test"


def test_encrypt_decrypt_round_trip_rsa_and_ec_and_self(pki, message):
    enc = encrypt(message, [pki["bob"].cert, pki["carol"].cert], sender_cert=pki["alice"].cert)
    assert _headers(enc) == _headers(message)
    assert mime.Message.parse(enc).content_type.params["smime-type"] == "enveloped-data"
    for who in ("alice", "bob", "carol"):  # the sender can read the Sent copy
        assert decrypt(enc, [pki[who].pair]).message == message


def test_modern_profile(pki, message):
    enc = encrypt(message, [pki["bob"].cert], sender_cert=pki["alice"].cert, profile="modern")
    assert mime.Message.parse(enc).content_type.params["smime-type"] == "authEnveloped-data"
    r = decrypt(enc, [pki["alice"].pair])
    assert r.message == message and r.report.authenticated


def test_decrypt_tries_every_key_old_and_new(pki, message):
    enc_old = encrypt(message, [pki["alice_old"].cert])
    enc_new = encrypt(message, [pki["alice"].cert])
    keys = [pki["alice"].pair, pki["alice_old"].pair]
    assert decrypt(enc_old, keys).message == message
    assert decrypt(enc_new, keys).message == message


def test_not_for_me(pki, message):
    enc = encrypt(message, [pki["bob"].cert])
    with pytest.raises(NotForMe):
        decrypt(enc, [pki["carol"].pair])


def test_sign_then_encrypt_then_read(pki, message):
    wrapped = encrypt(sign(message, pki["alice"].key, pki["alice"].cert), [pki["bob"].cert],
                      sender_cert=pki["alice"].cert)
    opened = read(wrapped, keys=[pki["bob"].pair], trust_roots=[pki.ca_cert])
    assert [layer.kind for layer in opened.layers] == ["enveloped", "clear-signed", "plain"]
    assert opened.message == message
    assert opened.signatures[0].signer_address == "alice@example.test"


def test_encrypted_inside_signed_and_triple_wrap(pki, message):
    a = pki["alice"]
    inner = encrypt(sign(message, a.key, a.cert, opaque=True), [pki["bob"].cert])
    triple = sign(inner, a.key, a.cert)
    opened = read(triple, keys=[pki["bob"].pair], trust_roots=[pki.ca_cert])
    assert [layer.kind for layer in opened.layers] == ["clear-signed", "enveloped", "opaque-signed", "plain"]
    assert opened.message == message


@pytest.mark.parametrize("garbage", [b"", b"\x00\x01garbage", b"From: x\r\n\r\nplain text only",
                                     b'Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n'
                                     b'Content-Transfer-Encoding: base64\r\n\r\nMIIBIjAN'])
def test_garbage_is_a_typed_error(pki, garbage):
    from autosmime.errors import AutosmimeError

    with pytest.raises(AutosmimeError):
        verify(garbage, [pki.ca_cert])
    with pytest.raises(AutosmimeError):
        decrypt(garbage, [pki["alice"].pair])


def test_truncated_encrypted_message_is_typed_error(pki, message):
    enc = encrypt(message, [pki["bob"].cert])
    with pytest.raises((MalformedMessage, NotForMe)):
        decrypt(enc[: len(enc) // 2], [pki["bob"].pair])
