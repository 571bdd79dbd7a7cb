"""The hand walks of SignedData and EnvelopedData read exactly what the asn1crypto parse reads.

Every input the walk accepts must give the same values as the general parse;
everything else must give None (never an exception), so the general parse decides.
"""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autosmime.errors import BadSignature, MalformedMessage
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.smime._cms import enveloped, signed
from autosmime.smime._cms.enveloped_walk import walk_enveloped
from autosmime.smime._cms.signed_attrs import signing_time_value
from autosmime.smime._cms.signed_walk import walk_signed

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
