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
from autosmime.smime._cms import enveloped, signed, signed_walk
from autosmime.smime._cms.enveloped_walk import walk_enveloped
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


def _with_every_optional_field(der: bytes) -> bytes:
    """``der`` rebuilt with what the samples lack: an SKI signer beside the first, other
    CertificateChoices, revocation info and unsigned attributes, so every branch of both walks runs."""
    walked = py_walk_signed(der)
    tlv, integer = _der.tlv, _der.integer
    si = walked.signers[0]
    sid = tlv(0x30, si.sid_issuer, integer(si.sid_serial))
    attrs = b"\xa0" + si.signed_attrs[1:]
    first = tlv(0x30, integer(1), sid, si.digest_algorithm, attrs, si.signature_algorithm,
                tlv(0x04, si.signature), tlv(0xA1, tlv(0x30, _der.oid("1.2.3"), tlv(0x31, tlv(0x05)))))
    by_ski = tlv(0x30, integer(3), tlv(0x80, b"\x01" * 20), si.digest_algorithm, si.signature_algorithm,
                 tlv(0x04, si.signature))
    certs = tlv(0xA0, *walked.certificates, tlv(0xA1, tlv(0x30)), tlv(0xA3, tlv(0x06, b"\x2a")))
    crls = tlv(0xA1, tlv(0x30, tlv(0x30)))
    body = tlv(0x30, integer(1), tlv(0x31, si.digest_algorithm), tlv(0x30, walked.content_type),
               certs, crls, tlv(0x31, first, by_ski))
    return tlv(0x30, _der.oid("1.2.840.113549.1.7.2"), tlv(0xA0, body))


def _walk_samples(pki) -> list[bytes]:
    return [*pki["signed"], _with_every_optional_field(pki["signed"][0])]


@compiled
def test_every_optional_field_is_read(pki):
    walked = walk_signed(_with_every_optional_field(pki["signed"][0]))
    assert walked is not None and len(walked.signers) == 2 and walked.signers[1].sid_ski == b"\x01" * 20
    assert walked == py_walk_signed(_with_every_optional_field(pki["signed"][0]))


@compiled
def test_compiled_walk_agrees_after_every_single_octet_change_and_cut(pki):
    for der in _walk_samples(pki):
        assert walk_signed(der) == py_walk_signed(der) is not None
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
    value = asn1_x509.Time({"utc_time": when.replace(microsecond=0, tzinfo=dt.timezone.utc)}).dump()
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
