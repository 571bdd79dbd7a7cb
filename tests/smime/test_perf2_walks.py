"""The hand walks of SignedData and EnvelopedData read exactly what the asn1crypto parse reads.

Every input the walk accepts must give the same values as the general parse;
everything else must give None (never an exception), so the general parse decides.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autosmime.errors import BadSignature, MalformedMessage
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.smime._cms import der as _der
from autosmime.smime._cms import enveloped, enveloped_walk, signed, signed_walk
from autosmime.smime._cms.enveloped_walk import py_walk_enveloped_raw, walk_enveloped
from autosmime.smime._cms.signed_attrs import signing_time_value
from autosmime.smime._cms.signed_walk import py_walk_signed, walk_signed

CONTENT = b"Content-Type: text/plain\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def pki():
    ca_key, ca = make_ca("Walk CA")
    inter_key, inter = make_ca("Walk Intermediate", issuer=(ca_key, ca)) if _has_issuer_arg() else (ca_key, ca)
    out = {"ca": ca}
    for kind in ("rsa", "ec"):
        key = new_key(kind)
        out[kind] = (key, make_mailbox_cert(f"{kind}@example.test", key.public_key(), inter_key, inter))
    out["chain"] = [inter] if inter is not ca else []
    out["signed"] = _signed_samples(out)  # made once: hypothesis needs the same inputs on every run
    key, cert = out["rsa"]
    out["enveloped"] = enveloped.encrypt(CONTENT, [cert])
    return out


def _has_issuer_arg() -> bool:
    import inspect

    return "issuer" in inspect.signature(make_ca).parameters


def _signed_samples(pki) -> list[bytes]:
    out = []
    for kind in ("rsa", "ec"):
        key, cert = pki[kind]
        out.append(signed.sign(CONTENT, key, cert, pki["chain"]))
        out.append(signed.sign(CONTENT, key, cert, [pki["ca"]], detached=False))
    key, cert = pki["rsa"]
    out.append(signed.sign(CONTENT, key, cert, pss=True))
    return out


def _openssl(args: list[str], data: bytes, tmp_path, pki, kind: str = "rsa") -> bytes:
    key, cert = pki[kind]
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    args = [a.replace("@", str(tmp_path) + "/") for a in args]
    return subprocess.run(["openssl", *args], input=data, check=True, capture_output=True).stdout


def test_walk_signed_equals_the_general_parse_on_our_signatures(pki):
    for der in pki["signed"]:
        walked = walk_signed(der)
        assert walked is not None
        assert walked == signed._walk_asn1(der)


@pytest.mark.parametrize("extra", [[], ["-nodetach"], ["-keyid"], ["-nosmimecap"], ["-noattr"]])
def test_walk_signed_equals_the_general_parse_on_openssl_signatures(pki, tmp_path, extra):
    der = _openssl(["cms", "-sign", "-binary", "-md", "sha256", "-outform", "DER", "-signer", "@cert.pem",
                    "-inkey", "@key.pem", *extra], CONTENT, tmp_path, pki)
    walked = walk_signed(der)
    assert walked is not None and walked == signed._walk_asn1(der)
    result = signed.verify(der, None if "-nodetach" in extra else CONTENT)
    assert result.signers[0].cert == pki["rsa"][1]


def test_ber_signatures_take_the_general_path_and_verify(pki, tmp_path):
    der = _openssl(["cms", "-sign", "-binary", "-stream", "-nodetach", "-outform", "DER", "-signer", "@cert.pem",
                    "-inkey", "@key.pem"], CONTENT, tmp_path, pki)
    assert walk_signed(der) is None  # indefinite lengths
    assert signed.verify(der).content == CONTENT


@given(data=st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_mutated_signed_data_is_walked_as_the_general_parse_reads_it_or_refused(pki, data):
    der = bytearray(data.draw(st.sampled_from(pki["signed"])))
    for _ in range(data.draw(st.integers(1, 3))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(der)))
    der = bytes(der[:cut])
    walked = walk_signed(der)  # never raises
    if walked is not None:
        assert walked == signed._walk_asn1(der)
    try:  # and the verdict is always a typed error or a result
        signed.verify(der, CONTENT)
    except (MalformedMessage, BadSignature, signed.UnsupportedAlgorithm):
        pass


# -- the compiled SignedData walk and its Python twin ----------------------------------------

compiled = pytest.mark.skipif(signed_walk._c_walk_signed is None and not os.environ.get("CI"),
                              reason="the C extension did not build here (CI requires it)")


def _with_every_optional_field(der: bytes, *, serial: bytes | None = None, unsigned_tag: int = 0xA1,
                               attribute_tail: bytes = b"", certificate_tag: int = 0xA3) -> bytes:
    """``der`` rebuilt with what the samples lack: an SKI signer beside the first, other
    CertificateChoices, revocation info and unsigned attributes, so every branch of both walks runs.
    The keywords make one field wrong in a way no single-octet change reaches."""
    walked = py_walk_signed(der)
    tlv, integer = _der.tlv, _der.integer
    si = walked.signers[0]
    sid = tlv(0x30, si.sid_issuer, integer(si.sid_serial) if serial is None else tlv(0x02, serial))
    odd = tlv(0x30, _der.oid("1.2.3.4"), tlv(0x31, tlv(0x05)), attribute_tail)
    attrs = tlv(0xA0, *_attribute_tlvs(si.signed_attrs), odd)
    first = tlv(0x30, integer(1), sid, si.digest_algorithm, attrs, si.signature_algorithm,
                tlv(0x04, si.signature), tlv(unsigned_tag, tlv(0x30, _der.oid("1.2.3"), tlv(0x31, tlv(0x05)))))
    by_ski = tlv(0x30, integer(3), tlv(0x80, b"\x01" * 20), si.digest_algorithm, si.signature_algorithm,
                 tlv(0x04, si.signature))
    certs = tlv(0xA0, *walked.certificates, tlv(0xA1, tlv(0x30)), tlv(certificate_tag, tlv(0x06, b"\x2a")))
    crls = tlv(0xA1, tlv(0x30, tlv(0x30)))
    body = tlv(0x30, integer(1), tlv(0x31, si.digest_algorithm), tlv(0x30, walked.content_type),
               certs, crls, tlv(0x31, first, by_ski))
    return tlv(0x30, _der.oid("1.2.840.113549.1.7.2"), tlv(0xA0, body))


def _attribute_tlvs(signed_attrs: bytes) -> list[bytes]:
    """The attribute TLVs inside a DER SET OF."""
    out, pos = [], _der.read_tlv(signed_attrs, 0, len(signed_attrs))[1]
    while pos < len(signed_attrs):
        end = _der.read_tlv(signed_attrs, pos, len(signed_attrs))[2]
        out.append(signed_attrs[pos:end])
        pos = end
    return out


def _walk_samples(pki) -> list[bytes]:
    base = pki["signed"][0]
    return [*pki["signed"], _with_every_optional_field(base),
            # each refused by both walks:
            _with_every_optional_field(base, serial=b""), _with_every_optional_field(base, unsigned_tag=0xA2),
            _with_every_optional_field(base, attribute_tail=b"\x05\x00"),
            _with_every_optional_field(base, certificate_tag=0x04)]


@compiled
def test_every_optional_field_is_read(pki):
    walked = walk_signed(_with_every_optional_field(pki["signed"][0]))
    assert walked is not None and len(walked.signers) == 2 and walked.signers[1].sid_ski == b"\x01" * 20
    assert walked == py_walk_signed(_with_every_optional_field(pki["signed"][0]))
    assert [py_walk_signed(der) for der in _walk_samples(pki)[-4:]] == [None] * 4


@compiled
def test_compiled_walk_agrees_after_every_single_octet_change_and_cut(pki):
    for der in _walk_samples(pki):
        assert walk_signed(der) == py_walk_signed(der)
        for i, octet in enumerate(der):
            for value in {octet ^ 0x01, octet ^ 0x80, 0x00, 0xFF, 0xA1}:
                changed = der[:i] + bytes((value,)) + der[i + 1:]
                assert walk_signed(changed) == py_walk_signed(changed), (i, value)
            assert walk_signed(der[:i]) == py_walk_signed(der[:i]), i


@compiled
@given(data=st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_compiled_walk_agrees_on_mutated_signed_data(pki, data):
    der = bytearray(data.draw(st.sampled_from(_walk_samples(pki))))
    for _ in range(data.draw(st.integers(1, 6))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    der = bytes(der[:data.draw(st.integers(0, len(der)))])
    assert walk_signed(der) == py_walk_signed(der)
    assert walk_signed(memoryview(der)) == py_walk_signed(der)  # any buffer


@compiled
def test_compiled_walk_refuses_bad_arguments():
    with pytest.raises(TypeError):
        signed_walk._c_walk_signed(b"\x30\x00", ["not a set"])
    with pytest.raises(TypeError):
        signed_walk._c_walk_signed("text", frozenset())


@given(st.datetimes(min_value=dt.datetime(1950, 1, 1), max_value=dt.datetime(2049, 12, 31, 23, 59, 59)))
@settings(max_examples=200)
def test_hand_read_utctime_equals_asn1crypto(when):
    value = asn1_x509.Time({"utc_time": when.replace(microsecond=0, tzinfo=dt.UTC)}).dump()
    assert signing_time_value(value) == asn1_x509.Time.load(value).native


@pytest.mark.parametrize("value", ["170d3939313333313030303030305a", "170d3030303030303030303030305a",
                                   "180f32303530303130313030303030305a"])
def test_odd_times_get_asn1cryptos_verdict(value):
    raw = bytes.fromhex(value)
    try:
        expected = asn1_x509.Time.load(raw).native
    except ValueError:
        with pytest.raises(ValueError):
            signing_time_value(raw)
    else:
        assert signing_time_value(raw) == expected


# -- EnvelopedData ------------------------------------------------------------------


def _same_envelope(der: bytes) -> None:
    walked = walk_enveloped(der)
    assert walked is not None
    slots, cipher, ciphertext = walked
    full = enveloped._parse_full(der)
    assert slots == full.slots and cipher == full.cipher and bytes(ciphertext) == full.ciphertext
    assert len(slots) == full.recipient_count and not full.keyless_kinds and not full.authenticated


def test_walk_enveloped_equals_the_general_parse_on_ours(pki):
    ca_key, ca = make_ca("Walk CA 2")
    other_key = new_key("rsa")
    other = make_mailbox_cert("o@example.test", other_key.public_key(), ca_key, ca)
    der = enveloped.encrypt(CONTENT, [pki["rsa"][1], other])
    _same_envelope(der)
    assert enveloped.decrypt(der, [(other_key, other)]).content == CONTENT


@pytest.mark.parametrize("extra", [["-aes-256-cbc"], ["-keyid", "-aes-256-cbc"], ["-aes-128-cbc"], ["-aes-192-cbc"]])
def test_walk_enveloped_equals_the_general_parse_on_openssls(pki, tmp_path, extra):
    der = _openssl(["cms", "-encrypt", "-binary", "-outform", "DER", *extra, "@cert.pem"],
                   CONTENT, tmp_path, pki)
    _same_envelope(der)
    assert enveloped.decrypt(der, [pki["rsa"]]).content == CONTENT


@pytest.mark.parametrize("profile", ["modern"])
def test_other_layouts_take_the_general_path(pki, profile):
    assert walk_enveloped(enveloped.encrypt(CONTENT, [pki["rsa"][1]], profile)) is None  # AuthEnvelopedData
    assert walk_enveloped(enveloped.encrypt(CONTENT, [pki["ec"][1]])) is None  # kari
    assert walk_enveloped(enveloped.encrypt(CONTENT, [pki["rsa"][1], pki["ec"][1]])) is None  # mixed


def test_triple_des_takes_the_general_path(pki, tmp_path):
    der = _openssl(["cms", "-encrypt", "-binary", "-outform", "DER", "-des3", "@cert.pem"], CONTENT, tmp_path, pki)
    assert walk_enveloped(der) is None
    assert enveloped.decrypt(der, [pki["rsa"]]).content_algorithm == "tripledes_3key"


@given(data=st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_mutated_enveloped_data_is_walked_as_the_general_parse_reads_it_or_refused(pki, data):
    der = bytearray(pki["enveloped"])
    for _ in range(data.draw(st.integers(1, 3))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    der = bytes(der[:data.draw(st.integers(1, len(der)))])
    walked = walk_enveloped(der)  # never raises
    if walked is not None:
        _same_envelope(der)


# -- the compiled EnvelopedData walk and its Python twin -------------------------------------

@pytest.fixture(scope="module")
def enveloped_samples(pki) -> list[bytes]:
    """Ours for one and for two recipients, and a hand-made one with a subjectKeyIdentifier recipient."""
    ca_key, ca = make_ca("Walk CA 3")
    other = make_mailbox_cert("o3@example.test", new_key("rsa").public_key(), ca_key, ca)
    two = enveloped.encrypt(CONTENT, [pki["rsa"][1], other])
    recipients, content_type, cipher_oid, iv, start, end = py_walk_enveloped_raw(pki["enveloped"])
    tlv = _der.tlv
    issuer, serial, _, algorithm, key = recipients[0]
    ias_rid = tlv(0x30, issuer, tlv(0x02, serial))
    ski_rid = tlv(0x80, b"\x11" * 20)

    def envelope(version: int, rid: bytes, rid_version: int, iv_: bytes = iv, recipients_: int = 1,
                 after: bytes = b"") -> bytes:
        ktri = tlv(0x30, _der.integer(rid_version), rid, algorithm, tlv(0x04, key))
        eci = tlv(0x30, content_type, tlv(0x30, cipher_oid, tlv(0x04, iv_)), tlv(0x80, pki["enveloped"][start:end]))
        body = tlv(0x30, _der.integer(version), tlv(0x31, *[ktri] * recipients_), eci, after)
        return tlv(0x30, _der.oid("1.2.840.113549.1.7.3"), tlv(0xA0, body))

    return [pki["enveloped"], two,
            envelope(2, ski_rid, 2),  # walked: a subjectKeyIdentifier recipient
            envelope(0, ias_rid, 0),  # walked: the same as ours, rebuilt
            # each refused by both walks, though one consistent edit away from a walked one:
            envelope(2, ias_rid, 2), envelope(0, ski_rid, 0), envelope(1, ias_rid, 0),
            envelope(0, ias_rid, 0, iv_=iv[:8]), envelope(0, ias_rid, 0, recipients_=0),
            envelope(0, ias_rid, 0, after=tlv(0xA1, tlv(0x30)))]


compiled_enveloped = pytest.mark.skipif(enveloped_walk._c_walk_enveloped is None and not os.environ.get("CI"),
                                        reason="the C extension did not build here (CI requires it)")


@compiled_enveloped
def test_compiled_enveloped_walk_agrees_after_every_single_octet_change_and_cut(enveloped_samples):
    c_walk = enveloped_walk._c_walk_enveloped
    samples = enveloped_samples
    walked = walk_enveloped(samples[2])
    assert walked is not None and walked[0][0].rid.ski == b"\x11" * 20 and len(walk_enveloped(samples[1])[0]) == 2
    assert walk_enveloped(samples[3])[0] == walk_enveloped(samples[0])[0]
    assert [py_walk_enveloped_raw(der) for der in samples[4:]] == [None] * 6
    for der in samples:
        assert c_walk(der) == py_walk_enveloped_raw(der)
        for i, octet in enumerate(der):
            for value in {octet ^ 0x01, octet ^ 0x80, 0x00, 0xFF, 0x02}:
                changed = der[:i] + bytes((value,)) + der[i + 1:]
                assert c_walk(changed) == py_walk_enveloped_raw(changed), (i, value)
            assert c_walk(der[:i]) == py_walk_enveloped_raw(der[:i]), i


@compiled_enveloped
@given(data=st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_compiled_enveloped_walk_agrees_on_mutated_input(enveloped_samples, data):
    der = bytearray(data.draw(st.sampled_from(enveloped_samples)))
    for _ in range(data.draw(st.integers(1, 6))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    der = bytes(der[:data.draw(st.integers(0, len(der)))])
    assert enveloped_walk._c_walk_enveloped(der) == py_walk_enveloped_raw(der)
    assert enveloped_walk._c_walk_enveloped(memoryview(der)) == py_walk_enveloped_raw(der)
