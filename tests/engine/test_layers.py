"""read's per-layer records (issue 9 §3): content never hidden by an outer layer, the verdict of the
signature nearest the content, foreign layers unwrapped, hidden parts never decrypted."""

from __future__ import annotations

import base64

import pytest

from autosmime.smime import encrypt, mime, read, sign, sign_and_encrypt
from autosmime.smime.models import KINDS, VERDICTS


def _kinds(opened) -> list[tuple[str, str | None, str]]:
    return [(layer.kind, layer.verdict, layer.covers) for layer in opened.layers]


def _entity(raw: bytes) -> bytes:
    return mime.Message.parse(raw).entity()


def _outer(raw: bytes) -> list[bytes]:
    return mime.Message.parse(raw).outer_headers()


def _read(pki, raw, reader="bob", **kw):
    return read(raw, keys=[pki[reader].pair], trust_roots=[pki.ca_cert], **kw)


def test_outer_clear_signature_altered_around_encrypted_and_signed_content(pki, message):
    a = pki["alice"]
    inner = sign_and_encrypt(message, a.key, a.cert, [pki["bob"].cert])
    outer = sign(inner, a.key, a.cert)
    # A gateway adds a header inside the signed part: the outer signature breaks, the ciphertext does not.
    altered = outer.replace(b'Content-Disposition: attachment; filename="smime.p7m"\r\n',
                            b'Content-Disposition: attachment; filename="smime.p7m"; size=1\r\n', 1)
    assert altered != outer
    opened = _read(pki, altered)
    assert _kinds(opened) == [("clear-signed", "bad-digest", "message"), ("enveloped", "good", "message"),
                              ("clear-signed", "good", "message"), ("plain", None, "message")]
    assert opened.message == message
    assert opened.verdict == "good" and opened.exit_code == 0 and opened.decided_by == 2
    assert "outer signature broken" in opened.summary and "ignored" in opened.summary
    assert "inner signature by alice@example.test (good)" in opened.summary


def test_failed_outer_signature_around_encrypted_only_content_does_not_decide(pki, message):
    a = pki["alice"]
    outer = sign(encrypt(message, [pki["bob"].cert]), a.key, a.cert)
    altered = outer.replace(b'Content-Disposition: attachment; filename="smime.p7m"\r\n',
                            b'Content-Disposition: attachment; filename="smime.p7m"; size=1\r\n', 1)
    assert altered != outer
    opened = _read(pki, altered)
    assert _kinds(opened) == [("clear-signed", "bad-digest", "message"), ("enveloped", "good", "message"),
                              ("plain", None, "message")]
    assert opened.message == message and opened.verdict is None and opened.exit_code == 0


def _pgp_signed(outer: list[bytes], entity: bytes) -> bytes:
    boundary = b"pgp-boundary-1"
    sig = b"-----BEGIN PGP SIGNATURE-----\r\n\r\niQEzBAEBCAAdFiEE\r\n=abcd\r\n-----END PGP SIGNATURE-----\r\n"
    return b"".join([
        *outer, b"MIME-Version: 1.0\r\n",
        b'Content-Type: multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature";\r\n'
        b' boundary="' + boundary + b'"\r\n\r\n',
        b"--" + boundary + b"\r\n", entity, b"\r\n--" + boundary + b"\r\n",
        b"Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n\r\n", sig,
        b"--" + boundary + b"--\r\n"])


def test_outer_openpgp_signature_around_smime_encrypted_content(pki, message):
    a = pki["alice"]
    enc = sign_and_encrypt(message, a.key, a.cert, [pki["bob"].cert])
    wrapped = _pgp_signed(_outer(enc), _entity(enc))
    opened = _read(pki, wrapped)
    assert _kinds(opened) == [("foreign", "unsupported", "message"), ("enveloped", "good", "message"),
                              ("clear-signed", "good", "message"), ("plain", None, "message")]
    assert opened.message == message and opened.verdict == "good" and opened.exit_code == 0


@pytest.mark.parametrize("opaque", [False, True])
def test_encrypt_then_sign(pki, message, opaque):
    a = pki["alice"]
    signed = sign(encrypt(message, [pki["bob"].cert]), a.key, a.cert, opaque=opaque)
    opened = _read(pki, signed)
    kind = "opaque-signed" if opaque else "clear-signed"
    assert _kinds(opened) == [(kind, "good", "message"), ("enveloped", "good", "message"), ("plain", None, "message")]
    assert opened.message == message and opened.verdict == "good" and opened.exit_code == 0
    assert opened.decided_by == 0


def test_sign_then_encrypt_then_sign(pki, message):
    a = pki["alice"]
    triple = sign(sign_and_encrypt(message, a.key, a.cert, [pki["bob"].cert]), a.key, a.cert)
    opened = _read(pki, triple)
    assert _kinds(opened) == [("clear-signed", "good", "message"), ("enveloped", "good", "message"),
                              ("clear-signed", "good", "message"), ("plain", None, "message")]
    assert opened.message == message and opened.decided_by == 2 and opened.exit_code == 0


def test_two_nested_signers_the_inner_decides(pki, message):
    a, c = pki["alice"], pki["carol"]
    nested = sign(sign(message, a.key, a.cert), c.key, c.cert)  # a gateway's signature outside Alice's
    opened = _read(pki, nested)
    assert _kinds(opened) == [("clear-signed", "from-mismatch", "message"), ("clear-signed", "good", "message"),
                              ("plain", None, "message")]
    assert opened.message == message and opened.verdict == "good" and opened.exit_code == 0
    assert opened.layers[0].signature.signer_address == "carol@example.test"
    # The inner one broken: that is the verdict, even under a good outer signature.
    inner = sign(message, a.key, a.cert).replace(b"numbers are attached", b"numbers are changed!")
    opened = _read(pki, sign(inner, a.key, a.cert))
    assert _kinds(opened)[:2] == [("clear-signed", "good", "message"), ("clear-signed", "bad-digest", "message")]
    assert opened.verdict == "bad-digest" and opened.exit_code == 1 and opened.message is not None


def _multipart(outer: list[bytes], subtype: bytes, parts: list[bytes]) -> bytes:
    boundary = b"wrap-boundary-7"
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts) + b"--" + boundary + b"--\r\n"
    return b"".join([*outer, b"MIME-Version: 1.0\r\n",
                     b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"\r\n\r\n', body])


def test_multipart_alternative_with_two_encrypted_parts_is_never_decrypted(pki, message):
    one = encrypt(message, [pki["bob"].cert])
    two = encrypt(message.replace(b"Hello Bob", b"Hello Eve"), [pki["bob"].cert], profile="modern")
    efail = _multipart(_outer(message), b"alternative", [_entity(one), _entity(two)])
    opened = _read(pki, efail)
    assert _kinds(opened) == [("plain", None, "message"), ("enveloped", "unsupported", "1"),
                              ("auth-enveloped", "unsupported", "2")]
    assert opened.message == efail  # as received: no plaintext put into it
    assert b"Hello Bob" not in opened.message and b"Hello Eve" not in opened.message
    assert opened.verdict is None and opened.exit_code == 0
    assert "not decrypted" in opened.layers[1].detail


def test_signed_part_inside_a_mailing_list_wrapper_covers_that_part_only(pki, message):
    a = pki["alice"]
    signed = sign(message, a.key, a.cert)
    footer = b"Content-Type: text/plain\r\n\r\n-- \r\nlist@example.test, unsubscribe: ...\r\n"
    wrapped = _multipart(_outer(signed), b"mixed", [_entity(signed), footer])
    opened = _read(pki, wrapped)
    assert _kinds(opened) == [("plain", None, "message"), ("clear-signed", "good", "1")]
    assert opened.message == wrapped and opened.verdict == "good" and opened.exit_code == 0
    assert "part 1 signed by alice@example.test (good); the rest is not signed" in opened.summary
    # An attacker's part around a replayed signed part: Date binds the part to its time.
    assert opened.layers[1].signature.from_address == "alice@example.test"


def test_not_for_me_reports_the_layer_and_no_content(pki, message):
    opened = _read(pki, encrypt(message, [pki["carol"].cert]))
    assert _kinds(opened) == [("enveloped", "not-for-me", "message")]
    assert opened.message is None and opened.verdict == "not-for-me" and opened.exit_code == 1


def test_plain_message(pki, message):
    opened = _read(pki, message)
    assert _kinds(opened) == [("plain", None, "message")]
    assert opened.message == message and opened.verdict is None and opened.exit_code == 0


def test_json_form_is_stable(pki, message):
    a = pki["alice"]
    opened = _read(pki, sign_and_encrypt(message, a.key, a.cert, [pki["bob"].cert]))
    doc = opened.to_json()
    assert set(doc) == {"verdict", "exit", "summary", "decided_by", "layers", "content", "content_encoding"}
    assert doc["verdict"] == "good" and doc["exit"] == 0 and doc["decided_by"] == 1
    assert doc["content"].encode() == message and doc["content_encoding"] == "utf-8"
    keys = {"kind", "verdict", "detail", "covers", "decides", "signer", "signers", "from", "signing_time",
            "algorithms", "warnings"}
    for layer in doc["layers"]:
        assert set(layer) == keys
        assert layer["kind"] in KINDS and (layer["verdict"] is None or layer["verdict"] in VERDICTS)
    env, sig = doc["layers"][0], doc["layers"][1]
    assert env["algorithms"] == {"content": "aes256_cbc", "key": "ecdh-sha256kdf-aes256_wrap"}  # Bob's key is EC
    assert sig["signer"]["address"] == "alice@example.test"
    from cryptography.hazmat.primitives import hashes

    assert sig["signer"]["sha256"] == a.cert.fingerprint(hashes.SHA256()).hex()
    assert sig["algorithms"] == {"digest": "sha256", "signature": "rsassa_pkcs1v15"}
    assert base64


def test_json_carries_binary_content_as_base64(pki, message):
    raw = message.replace(b"Hello Bob", b"Hello \xff Bob")
    doc = _read(pki, raw).to_json()
    assert doc["content_encoding"] == "base64" and base64.b64decode(doc["content"]) == raw


def test_header_protection_inner_fields_replace_the_outer_copies(pki, message):
    from autosmime.smime._cms import enveloped

    inner = (b'Content-Type: text/plain; charset=us-ascii; hp="cipher"\r\n'
             b"From: Alice <alice@example.test>\r\nSubject: the real subject\r\n\r\nsecret body\r\n")
    der = enveloped.encrypt(inner, [pki["bob"].cert])
    outer = [b"From: Alice <alice@example.test>\r\n", b"Subject: ...\r\n", b"To: bob@example.test\r\n"]
    raw = mime.pkcs7_mime(outer, der, "enveloped-data")
    opened = _read(pki, raw)
    assert [(x.kind, x.verdict) for x in opened.layers] == [("enveloped", "good"), ("plain", None)]
    head = mime.Message.parse(opened.message)
    assert [f for f in head.fields if f.lower().startswith((b"from", b"subject"))] == [
        b"From: Alice <alice@example.test>\r\n", b"Subject: the real subject\r\n"]
    assert b"To: bob@example.test\r\n" in head.fields and opened.message.endswith(b"secret body\r\n")


def test_a_crafted_multipart_costs_bounded_work(pki, message):
    a = pki["alice"]
    part = _entity(sign(message, a.key, a.cert))
    many = _multipart(_outer(message), b"mixed", [part] * 12)
    opened = _read(pki, many)
    checked = [x.verdict for x in opened.layers if x.kind == "clear-signed"]
    assert checked == ["good"] * 8 + ["unsupported"] * 4
    assert opened.verdict is None and opened.message == many  # several signed parts: none decides
    # Deep and wide: at most MAX_PARTS parts are looked at, however they nest.
    bomb = b"Content-Type: text/plain\r\n\r\nx\r\n"
    for depth in range(4):
        b = b"level-%d" % depth
        bomb = (b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n'
                + b"".join(b"--" + b + b"\r\n" + bomb + b"\r\n" for _ in range(40)) + b"--" + b + b"--\r\n")
    opts_seen = []
    import importlib

    read_module = importlib.import_module("autosmime.smime.read")

    real = read_module.mime.body_parts
    read_module.mime.body_parts = lambda msg, limit=64: opts_seen.append(limit) or real(msg, limit)
    try:
        opened = _read(pki, b"From: a@example.test\r\nMIME-Version: 1.0\r\n" + bomb)
    finally:
        read_module.mime.body_parts = real
    assert [x.kind for x in opened.layers] == ["plain"]
    assert len(opts_seen) <= read_module.MAX_PARTS and opts_seen[0] == read_module.MAX_PARTS


def test_multipart_signed_without_protocol_parameter_is_judged_by_its_signature_part(pki, message):
    a = pki["alice"]
    signed = sign(message, a.key, a.cert)
    bare = signed.replace(b'protocol="application/pkcs7-signature"; ', b"", 1)
    assert bare != signed
    assert _kinds(_read(pki, bare))[0] == ("clear-signed", "good", "message")
    pgp = _pgp_signed(_outer(message), _entity(message)).replace(b'protocol="application/pgp-signature";', b"", 1)
    opened = _read(pki, pgp)
    assert _kinds(opened)[0] == ("foreign", "unsupported", "message") and opened.message == message
