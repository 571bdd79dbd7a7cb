"""Thunderbird's signature rules (issue 9 §2) and the From / several-signers holes (§4).

Each hole test failed before its fix: From checks used the first field whose name, blanks
stripped, was "from", and its first address; the reported signer was the first SignerInfo.
"""

from __future__ import annotations

import datetime as dt
import email.utils

import pytest
from asn1crypto import cms

from autosmime.errors import SignerMismatch, TimeMismatch
from autosmime.smime import mime, read, sign, verify
from autosmime.smime._cms import signed as _signed


def _dated(message: bytes, offset: dt.timedelta) -> bytes:
    when = email.utils.format_datetime((dt.datetime.now(dt.UTC) + offset).replace(microsecond=0))
    head, body = message.split(b"\r\n\r\n", 1)
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"Date:")]
    return b"\r\n".join([*lines, b"Date: " + when.encode()]) + b"\r\n\r\n" + body


# -- Date vs signingTime --------------------------------------------------------------------

@pytest.mark.parametrize("sign_minutes", [61, -61])
def test_date_61_minutes_from_signing_time_is_time_mismatch(pki, message, sign_minutes):
    a = pki["alice"]
    signed = sign(_dated(message, dt.timedelta(minutes=sign_minutes)), a.key, a.cert)
    with pytest.raises(TimeMismatch, match="minutes apart"):
        verify(signed, [pki.ca_cert])
    opened = read(signed, trust_roots=[pki.ca_cert])
    assert opened.verdict == "time-mismatch" and opened.exit_code == 1
    assert opened.message is not None  # content is never hidden
    # The library can relax it.
    assert verify(signed, [pki.ca_cert], check_date=False).verdict == "good"
    assert read(signed, trust_roots=[pki.ca_cert], check_date=False).verdict == "good"


@pytest.mark.parametrize("sign_minutes", [59, -59, 0])
def test_date_59_minutes_from_signing_time_is_good(pki, message, sign_minutes):
    a = pki["alice"]
    signed = sign(_dated(message, dt.timedelta(minutes=sign_minutes)), a.key, a.cert)
    assert verify(signed, [pki.ca_cert]).verdict == "good"
    assert read(signed, trust_roots=[pki.ca_cert]).verdict == "good"


def test_unreadable_date_is_time_mismatch_and_missing_date_is_not_checked(pki, message):
    a = pki["alice"]
    head, body = message.split(b"\r\n\r\n", 1)
    no_date = b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"Date:")) + b"\r\n\r\n" + body
    assert verify(sign(no_date, a.key, a.cert), [pki.ca_cert]).verdict == "good"
    bad_date = no_date.replace(b"Subject:", b"Date: the day after tomorrow\r\nSubject:")
    with pytest.raises(TimeMismatch, match="cannot be read"):
        verify(sign(bad_date, a.key, a.cert), [pki.ca_cert])


def test_time_mismatch_inside_encryption_uses_the_outer_date(pki, message):
    from autosmime.smime import sign_and_encrypt

    a = pki["alice"]
    out = sign_and_encrypt(_dated(message, dt.timedelta(hours=3)), a.key, a.cert, [pki["bob"].cert])
    opened = read(out, keys=[pki["bob"].pair], trust_roots=[pki.ca_cert])
    assert [(layer.kind, layer.verdict) for layer in opened.layers] == [
        ("enveloped", "good"), ("clear-signed", "time-mismatch"), ("plain", None)]
    assert opened.exit_code == 1


# -- From vs signer, against the headers of the layer they belong to ---------------------------

def _sign_entity(outer: list[bytes], entity: bytes, user) -> bytes:
    der = _signed.sign(entity, user.key, user.cert)
    return mime.multipart_signed(outer, entity, der, "sha-256")


def _now_date() -> bytes:
    return b"Date: " + email.utils.format_datetime(dt.datetime.now(dt.UTC).replace(microsecond=0)).encode() + b"\r\n"


def test_message_rfc822_signed_entity_is_checked_against_its_own_from(pki, message):
    a = pki["alice"]
    # A list rewrote the outer From (DMARC style); the signed message/rfc822 carries Alice's own.
    outer = b"From: The List <list@example.test>\r\nTo: list@example.test\r\n" + _now_date()
    wrapped = outer + b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" + message
    signed = sign(wrapped, a.key, a.cert)
    r = verify(signed, [pki.ca_cert])
    assert r.from_address == "alice@example.test" and r.verdict == "good"
    opened = read(signed, trust_roots=[pki.ca_cert])
    assert opened.verdict == "good" and opened.message == message  # the inner message is the content


def test_headers_in_the_signed_part_are_checked_instead_of_the_outer_ones(pki):
    a = pki["alice"]
    outer = [b"From: The List <list@example.test>\r\n", b"Subject: [list] hi\r\n", _now_date()]
    entity = (b'Content-Type: text/plain; charset=us-ascii; protected-headers="v1"\r\n'
              b"From: Alice <alice@example.test>\r\nSubject: hi\r\n\r\nhello\r\n")
    assert verify(_sign_entity(outer, entity, a), [pki.ca_cert]).from_address == "alice@example.test"
    # The protected From names someone else: a mismatch, whatever the outer From says.
    outer_alice = [b"From: Alice <alice@example.test>\r\n", _now_date()]
    forged = entity.replace(b"From: Alice <alice@example.test>", b"From: Bob <bob@example.test>")
    with pytest.raises(SignerMismatch, match="bob@example.test"):
        verify(_sign_entity(outer_alice, forged, a), [pki.ca_cert])


# -- From binding holes ---------------------------------------------------------------------------

@pytest.mark.parametrize("edit, why", [
    (lambda m: m.replace(b"From: Alice", b"From : Alice"), "not exactly 'From'"),
    (lambda m: m.replace(b"To: Bob", b"From: Mallory <mallory@example.test>\r\nTo: Bob"), "more than one From"),
    (lambda m: m.replace(b"To: Bob", b"from: Mallory <mallory@example.test>\r\nTo: Bob"), "more than one From"),
    (lambda m: m.replace(b"From: Alice <alice@example.test>", b"From: Alice <alice@example.test>, eve@example.test"),
     "exactly one"),
    (lambda m: m.replace(b"From: Alice <alice@example.test>", b"From: undisclosed:;"), "exactly one"),
    (lambda m: m.replace(b"From: Alice <alice@example.test>\r\n", b""), "no From"),
])
def test_from_must_be_one_field_named_from_with_one_mailbox(pki, message, edit, why):
    a = pki["alice"]
    msg = edit(message)
    assert msg != message
    signed = sign(msg, a.key, a.cert)
    with pytest.raises(SignerMismatch, match=why):
        verify(signed, [pki.ca_cert])
    assert read(signed, trust_roots=[pki.ca_cert]).verdict == "from-mismatch"
    # Not asked to match: the signature itself is good.
    assert verify(signed, [pki.ca_cert], require_from_match=False).verdict == "good"


# -- several SignerInfos ----------------------------------------------------------------------------

def two_signers(message: bytes, first, second, *, break_second: bool = False) -> bytes:
    """A multipart/signed over ``message`` with two SignerInfos, ``first``'s before ``second``'s."""
    m = mime.Message.parse(message)
    entity = m.entity()
    one = cms.ContentInfo.load(_signed.sign(entity, first.key, first.cert))
    two = cms.ContentInfo.load(_signed.sign(entity, second.key, second.cert))
    si = two["content"]["signer_infos"][0]
    if break_second:
        sig = bytearray(si["signature"].native)
        sig[-1] ^= 1
        si["signature"] = bytes(sig)
    sd = one["content"]
    sd["signer_infos"] = [sd["signer_infos"][0], si]
    sd["certificates"] = [*sd["certificates"], *two["content"]["certificates"]]
    return mime.multipart_signed(m.outer_headers(), entity, one.dump(force=True), "sha-256")


def test_the_signer_reported_is_the_one_from_names(pki, message):
    a, c = pki["alice"], pki["carol"]
    # DER sorts the SET of SignerInfos: one of the two orders puts Carol's first. From is Alice.
    for first, second in ((c, a), (a, c)):
        r = verify(two_signers(message, first, second), [pki.ca_cert])
        assert r.signer_cert == a.cert and r.signer_address == "alice@example.test"
        assert [s.cert for s in r.signers] == [a.cert, c.cert]


def test_the_from_signer_failing_makes_the_message_bad_whatever_the_others_say(pki, message):
    a, c = pki["alice"], pki["carol"]
    from autosmime.errors import BadSignature

    with pytest.raises(BadSignature):
        verify(two_signers(message, c, a, break_second=True), [pki.ca_cert])
    opened = read(two_signers(message, c, a, break_second=True), trust_roots=[pki.ca_cert])
    assert opened.verdict == "bad-signature" and opened.exit_code == 1
    # Another signer's failure does not decide: Alice's signature is good.
    r = verify(two_signers(message, a, c, break_second=True), [pki.ca_cert])
    assert r.verdict == "good" and r.signer_cert == a.cert
    assert [s.verdict for s in r.signers] == ["good", "bad-signature"]


def test_untrusted_from_signer_beside_a_trusted_other_is_untrusted(pki, message):
    c, m = pki["carol"], pki["mallory"]  # Mallory's certificate names alice@ but chains to another root
    opened = read(two_signers(message, c, m), trust_roots=[pki.ca_cert])
    assert opened.verdict == "untrusted" and opened.layers[0].signature.signer_cert == m.cert


# -- the chain is valid at the signing time ---------------------------------------------------

def test_chain_is_validated_at_the_signing_time(pki, message):
    u = pki["expired"]  # valid for 30 days from 2023-01-01
    when = dt.datetime(2023, 1, 15, 12, 0, tzinfo=dt.UTC)
    m = mime.Message.parse(_dated(message, when - dt.datetime.now(dt.UTC)).replace(
        b"alice@example.test>", b"expired@example.test>"))
    entity = m.entity()
    der = _signed._sign_at(entity, u.key, u.cert, (), detached=True, pss=False, now=when)
    signed = mime.multipart_signed(m.outer_headers(), entity, der, "sha-256")
    r = verify(signed, [pki.ca_cert])  # now, but the certificate was valid when it signed
    assert r.verdict == "good" and r.signing_time == when
    from autosmime.errors import ExpiredSigner

    with pytest.raises(ExpiredSigner):  # an explicit moment wins
        verify(signed, [pki.ca_cert], at=dt.datetime.now(dt.UTC))


# -- RFC 7508: header fields signed as an attribute -------------------------------------------

def _with_secure_headers(message: bytes, user, fields: list[tuple[str, str, int]]) -> bytes:
    from asn1crypto import core

    from autosmime.smime._cms import der as _der
    from autosmime.smime._cms.signed_attrs import OID_SECURE_HEADERS, _SecureHeaderFields
    from tests.smime.test_signed import _attrs_of, _resign

    m = mime.Message.parse(message)
    entity = m.entity()
    der = _signed.sign(entity, user.key, user.cert)
    value = _SecureHeaderFields({"canon_algorithm": "relaxed", "fields": [
        {"name": n, "value": v, "status": st} for n, v, st in fields]}).dump()
    attr = _der.tlv(_der.SEQUENCE, core.ObjectIdentifier(OID_SECURE_HEADERS).dump(), _der.tlv(_der.SET, value))
    der = _resign(der, user.key, [*_attrs_of(der).values(), attr])
    return mime.multipart_signed(m.outer_headers(), entity, der, "sha-256")


DUPLICATED, MODIFIED = 0, 2


def test_rfc7508_signed_from_is_the_one_checked(pki, message):
    a = pki["alice"]
    alice = "Alice <alice@example.test>"
    assert verify(_with_secure_headers(message, a, [("From", alice, DUPLICATED)]), [pki.ca_cert]).verdict == "good"
    # A list rewrote From, and the signer said so (modified): the signed copy is checked.
    listed = message.replace(b"From: Alice <alice@example.test>", b"From: The List <list@example.test>")
    r = verify(_with_secure_headers(listed, a, [("From", alice, MODIFIED)]), [pki.ca_cert])
    assert r.verdict == "good" and r.from_address == "alice@example.test"
    # The signed copy names someone else than the signer.
    with pytest.raises(SignerMismatch, match="bob@example.test"):
        verify(_with_secure_headers(message, a, [("From", "Bob <bob@example.test>", MODIFIED)]), [pki.ca_cert])


def test_rfc7508_duplicated_from_changed_in_transit_is_a_mismatch(pki, message):
    a = pki["alice"]
    signed = _with_secure_headers(message, a, [("From", "Alice <alice@example.test>", DUPLICATED)])
    forged = signed.replace(b"From: Alice <alice@example.test>", b"From: Mallory <mallory@example.test>", 1)
    with pytest.raises(SignerMismatch, match="differs from the signed copy"):
        verify(forged, [pki.ca_cert])


def test_sha1_signature_is_weak_algorithm(pki, message):
    from asn1crypto import core

    from autosmime.errors import WeakAlgorithm
    from autosmime.smime._cms import signed_algs
    from tests.smime.test_signed import _attr, _attrs_of, _edit_signer, _resign

    a = pki["alice"]
    m = mime.Message.parse(message)
    entity = m.entity()
    der = _signed.sign(entity, a.key, a.cert)
    attrs = _attrs_of(der)
    attrs["1.2.840.113549.1.9.4"] = _attr("message_digest", core.OctetString(signed_algs.digest("sha1", entity)))

    def to_sha1(si):
        si["digest_algorithm"] = {"algorithm": "sha1"}

    sha1 = _resign(_edit_signer(der, to_sha1), a.key, list(attrs.values()), digest_alg="sha1")
    signed = mime.multipart_signed(m.outer_headers(), entity, sha1, "sha1")
    with pytest.raises(WeakAlgorithm):
        verify(signed, [pki.ca_cert])
    opened = read(signed, trust_roots=[pki.ca_cert])
    assert opened.verdict == "weak-algorithm" and opened.exit_code == 1 and opened.message == message
