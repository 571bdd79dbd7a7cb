"""The hand-written DER of the fast paths equals what asn1crypto writes for the same values."""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.smime._cms import der, signed, signed_attrs
from autosmime.smime._cms.certinfo import issuer_and_serial, issuer_and_serial_raw

UTC = dt.UTC


@given(st.integers(min_value=-(2**200), max_value=2**200))
def test_integer_matches_asn1crypto(n):
    assert der.integer(n) == core.Integer(n).dump()


@given(st.integers(min_value=0, max_value=2**40), st.sampled_from([0x04, 0x30, 0x31, 0xA0, 0x80]))
@settings(max_examples=200)
def test_tlv_header_reads_back(n, tag):
    encoded = der.header(tag, n)
    assert der.read_tlv(encoded, 0, len(encoded) + n) == (tag, len(encoded), len(encoded) + n)
    with pytest.raises(ValueError):
        der.read_tlv(encoded, 0, len(encoded) + n - 1)


@given(st.binary(max_size=600))
def test_octet_string_tlv_matches_asn1crypto(data):
    assert der.tlv(der.OCTET_STRING, data) == core.OctetString(data).dump()


@pytest.mark.parametrize("bad", ["3080020105 0000", "30 05 0201", "1f 01 00", "30 89 000000000000000001 00", "30"])
def test_read_tlv_refuses_what_the_general_parser_must_handle(bad):
    data = bytes.fromhex(bad.replace(" ", ""))
    with pytest.raises(ValueError):
        der.read_tlv(data, 0, len(data))


@given(st.datetimes(min_value=dt.datetime(1950, 1, 1), max_value=dt.datetime(2200, 1, 1),
                    timezones=st.just(UTC)), st.binary(min_size=32, max_size=64))
@settings(max_examples=150)
def test_signed_attrs_match_the_asn1crypto_construction(when, digest):
    assert signed_attrs.signed_attrs_der(digest, when.replace(microsecond=0)) == _reference_attrs(digest, when)


def _reference_attrs(digest: bytes, when: dt.datetime) -> bytes:
    """The pre-optimisation encoding: asn1crypto objects for every attribute."""
    when = when.astimezone(UTC).replace(microsecond=0)
    time_value = core.UTCTime(when) if when.year < 2050 else core.GeneralizedTime(when)

    def attribute(oid, value):
        class _Attr(core.Sequence):
            _fields = [("type", core.ObjectIdentifier), ("values", core.SetOf, {"spec": core.Any})]
        return _Attr({"type": oid, "values": [core.Any.load(value.dump())]}).dump()

    attrs = [
        attribute(signed_attrs.OID_CONTENT_TYPE, cms.ContentType("data")),
        attribute(signed_attrs.OID_SIGNING_TIME, time_value),
        attribute(signed_attrs.OID_MESSAGE_DIGEST, core.OctetString(digest)),
        attribute(signed_attrs.OID_SMIME_CAPABILITIES, signed_attrs._our_capabilities()),
    ]
    body = b"".join(sorted(attrs))
    return b"\x31" + der.length(len(body)) + body


@pytest.fixture(scope="module")
def pki():
    ca_key, ca = make_ca("Perf CA", new_key("rsa"))
    inter_key, inter = make_ca("Perf Inter", new_key("ec"), issuer_key=ca_key, issuer_cert=ca)
    key = new_key("rsa")
    leaf = make_mailbox_cert("alice@example.test", key.public_key(), inter_key, inter)
    return {"ca": ca, "inter": inter, "key": key, "leaf": leaf}


@pytest.mark.parametrize("detached", [True, False])
@pytest.mark.parametrize("chain", ["none", "inter", "inter+ca", "ca+inter+leaf"])
@pytest.mark.parametrize("size", [0, 1, 127, 128, 255, 256, 65535, 65536, 70000])
def test_signed_data_matches_asn1crypto_byte_for_byte(pki, detached, chain, size):
    # RSA PKCS#1 v1.5 signatures are deterministic, so the whole output must be equal.
    certs = {"none": [], "inter": [pki["inter"]], "inter+ca": [pki["inter"], pki["ca"]],
             "ca+inter+leaf": [pki["ca"], pki["inter"], pki["leaf"]]}[chain]
    content = bytes(range(256)) * (size // 256) + bytes(size % 256)
    now = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    ours = signed._sign_at(content, pki["key"], pki["leaf"], certs, detached=detached, pss=False, now=now)
    assert ours == _reference_sign(content, pki["key"], pki["leaf"], certs, detached, now)
    # and chunked content signs the same bytes
    chunks = [content[:size // 3], memoryview(content)[size // 3:]]
    assert signed._sign_at(chunks, pki["key"], pki["leaf"], certs, detached=detached, pss=False,
                           now=now) == ours


def test_issuer_and_serial_encodings_match_asn1crypto(pki):
    for cert in (pki["ca"], pki["inter"], pki["leaf"]):
        expected = cms.IssuerAndSerialNumber({
            "issuer": asn1_x509.Name.load(cert.issuer.public_bytes()), "serial_number": cert.serial_number,
        }).dump()
        assert issuer_and_serial(cert) == expected
        parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))["tbs_certificate"]
        assert issuer_and_serial_raw(cert) == cms.IssuerAndSerialNumber({
            "issuer": parsed["issuer"], "serial_number": parsed["serial_number"].native}).dump()


def _reference_sign(content, key, cert, chain, detached, now):
    """The pre-optimisation SignedData writer, built from asn1crypto objects."""
    from autosmime.smime._cms import signed_algs as _algs

    digest_alg = _algs.digest_for_key(key)
    signature_alg = _algs.signature_algorithm_for_key(key, digest_alg, pss=False)
    attrs = cms.CMSAttributes.load(_reference_attrs(_algs.digest(digest_alg, content), now))
    signature = _algs.sign_bytes(key, digest_alg, attrs.dump(), pss=False)

    def digest_id(name):
        oid = algos.DigestAlgorithmId(name).dump()
        return cms.DigestAlgorithm.load(b"\x30" + bytes([len(oid)]) + oid)

    signer = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": asn1_x509.Name.load(cert.issuer.public_bytes()),
            "serial_number": cert.serial_number,
        })}),
        "digest_algorithm": digest_id(digest_alg),
        "signed_attrs": cms.CMSAttributes.load(attrs.dump()),
        "signature_algorithm": signature_alg,
        "signature": signature,
    })
    certs: list[bytes] = []
    for c in (cert, *chain):
        d = c.public_bytes(serialization.Encoding.DER)
        if d not in certs:
            certs.append(d)
    encap = {"content_type": "data"}
    if not detached:
        encap["content"] = content
    signed_data = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [digest_id(digest_alg)],
        "encap_content_info": encap,
        "certificates": [cms.CertificateChoices(name="certificate", value=asn1_x509.Certificate.load(d))
                         for d in certs],
        "signer_infos": [signer],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
