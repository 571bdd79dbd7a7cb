"""CMS SignedData: round trips, tampering, forged attributes, RFC 9216 known answers, fuzzing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autosmime.errors import AutosmimeError, BadSignature, MalformedMessage, NoKey, UnsupportedAlgorithm
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.smime._cms import signed_algs
from autosmime.smime._cms.signed import SignedResult, sign, verify
from autosmime.smime._cms.signed_attrs import build_signed_attrs


class _Attribute(core.Sequence):
    """An attribute with raw DER values, for crafting the odd ones real clients send."""

    _fields = [("type", core.ObjectIdentifier), ("values", core.SetOf, {"spec": core.Any})]

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "rfc9216"  # shared/ lies beside the checkout
SAMPLE = b"This is some sample content."
CONTENT = b"Content-Type: text/plain\r\n\r\nHello Bob,\r\nsigned bytes, exactly.\r\n"
OUR_CAPABILITIES = ("aes256_gcm", "aes128_gcm", "aes256_cbc", "aes192_cbc", "aes128_cbc", "rsaes_oaep",
                    "dh_single_pass_std_dh_sha256kdf")


@pytest.fixture(scope="module")
def pki():
    root_key, root = make_ca("Signed Test Root", new_key("ec384"))
    inter_key, inter = make_ca("Signed Test Intermediate", new_key("ec"), issuer_key=root_key, issuer_cert=root)
    keys = {"rsa": new_key("rsa"), "p256": new_key("ec"), "p384": new_key("ec384"),
            "p521": ec.generate_private_key(ec.SECP521R1())}
    leaves = {k: make_mailbox_cert(f"{k}@example.test", key.public_key(), root_key, root) for k, key in keys.items()}
    via_inter = {k: make_mailbox_cert(f"{k}.i@example.test", key.public_key(), inter_key, inter)
                 for k, key in keys.items()}
    return {"root": root, "inter": inter, "keys": keys, "leaves": leaves, "via_inter": via_inter}


def _load(name: str) -> bytes:
    return (VECTORS / "examples-cms" / "binary-files" / f"{name}.p7m").read_bytes()


def _cert(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((VECTORS / "keys" / name).read_bytes())


def _edit_signer(der: bytes, edit) -> bytes:
    """Re-encode ``der`` after ``edit(signer_info)``; the signed attributes keep their received bytes."""
    info = cms.ContentInfo.load(der)
    signer = info["content"]["signer_infos"][0]
    edit(signer)
    return info.dump(force=False)


def _resign(der: bytes, key, attr_ders: list[bytes], digest_alg: str = "sha256") -> bytes:
    """Replace the signed attributes by ``attr_ders`` and sign them properly with ``key``.

    The signature then is mathematically valid, so only the attribute checks can reject it.
    """
    body = b"".join(sorted(attr_ders))
    attrs = cms.CMSAttributes.load(b"\x31" + _len(len(body)) + body)
    signature = signed_algs.sign_bytes(key, digest_alg, attrs.dump(), pss=False)

    def edit(si):
        si["signed_attrs"] = cms.CMSAttributes.load(attrs.dump())
        si["signature"] = signature

    return _edit_signer(der, edit)


def _len(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else bytes([0x82]) + n.to_bytes(2, "big")


def _attrs_of(der: bytes) -> dict[str, bytes]:
    si = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    return {a["type"].dotted: a.dump() for a in si["signed_attrs"]}


def _attr(oid: str, *values: core.Asn1Value) -> bytes:
    return cms.CMSAttribute({"type": oid, "values": [v for v in values]}).dump()


# --- round trips -------------------------------------------------------------------

CASES = [("rsa", False, "sha256", "rsassa_pkcs1v15"), ("rsa", True, "sha256", "rsassa_pss"),
         ("p256", False, "sha256", "ecdsa"), ("p384", False, "sha384", "ecdsa"), ("p521", False, "sha512", "ecdsa")]


@pytest.mark.parametrize("kind,pss,digest,scheme", CASES)
@pytest.mark.parametrize("detached", [True, False])
@pytest.mark.parametrize("with_chain", [False, True])
def test_round_trip(pki, kind, pss, digest, scheme, detached, with_chain):
    key = pki["keys"][kind]
    cert = pki["via_inter"][kind] if with_chain else pki["leaves"][kind]
    chain = [pki["inter"]] if with_chain else []
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    der = sign(CONTENT, key, cert, chain, detached=detached, pss=pss)
    result = verify(der, CONTENT if detached else None)
    assert isinstance(result, SignedResult)
    assert result.content == CONTENT and result.content_type == "data"
    (signer,) = result.signers
    assert signer.cert == cert
    assert (signer.digest_algorithm, signer.signature_algorithm) == (digest, scheme)
    assert before <= signer.signing_time <= dt.datetime.now(dt.UTC)
    assert signer.signing_time.tzinfo is not None
    assert signer.capabilities == OUR_CAPABILITIES
    # CertificateSet is a DER SET OF, so the order is the encoding's, not ours.
    assert set(result.certificates) == {cert, *chain}
    assert len(result.certificates) == 1 + len(chain)
    # Detached means no content inside; opaque means it is there.
    econtent = cms.ContentInfo.load(der)["content"]["encap_content_info"]["content"]
    assert isinstance(econtent, core.Void) == detached


def test_output_is_der_with_sorted_signed_attributes(pki):
    der = sign(CONTENT, pki["keys"]["rsa"], pki["leaves"]["rsa"])
    info = cms.ContentInfo.load(der)
    assert info.dump(force=True) == der  # re-encoding as DER changes nothing
    si = info["content"]["signer_infos"][0]
    attrs = [a.dump() for a in si["signed_attrs"]]
    assert attrs == sorted(attrs)
    assert si["sid"].name == "issuer_and_serial_number" and si["version"].native == "v1"
    assert si["signature_algorithm"]["algorithm"].native == "rsassa_pkcs1v15"


def test_pss_parameters_use_digest_length_salt(pki):
    der = sign(CONTENT, pki["keys"]["rsa"], pki["leaves"]["rsa"], pss=True)
    params = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signature_algorithm"]["parameters"]
    assert params["hash_algorithm"]["algorithm"].native == "sha256"
    assert params["mask_gen_algorithm"]["parameters"]["algorithm"].native == "sha256"
    assert params["salt_length"].native == 32


def test_signing_time_after_2049_is_generalized_time():
    attrs = build_signed_attrs(b"\x00" * 32, dt.datetime(2051, 3, 4, 5, 6, 7, tzinfo=dt.UTC))
    times = [a["values"][0] for a in attrs if a["type"].native == "signing_time"]
    assert times[0].name == "generalized_time"
    attrs = build_signed_attrs(b"\x00" * 32, dt.datetime(2049, 12, 31, tzinfo=dt.UTC))
    assert [a["values"][0].name for a in attrs if a["type"].native == "signing_time"] == ["utc_time"]


def test_sign_refuses_key_of_another_certificate(pki):
    with pytest.raises(NoKey):
        sign(CONTENT, pki["keys"]["rsa"], pki["leaves"]["p256"])


def test_the_key_check_holds_after_the_key_and_certificate_were_used(pki):
    """The certificate's template is cached: it must not vouch for another key."""
    key, cert = pki["keys"]["rsa"], pki["leaves"]["rsa"]
    verify(sign(CONTENT, key, cert), CONTENT)
    other_key = new_key("rsa")
    with pytest.raises(NoKey):
        sign(CONTENT, other_key, cert)
    with pytest.raises(NoKey):
        sign(CONTENT, key, make_mailbox_cert("other@example.test", other_key.public_key(), other_key,
                                             pki["leaves"]["rsa"]))
    verify(sign(CONTENT, key, cert), CONTENT)


def test_sign_refuses_pss_with_ec_key(pki):
    with pytest.raises(UnsupportedAlgorithm):
        sign(CONTENT, pki["keys"]["p256"], pki["leaves"]["p256"], pss=True)


# --- tampering ------------------------------------------------------------------------


def test_wrong_detached_content(pki):
    der = sign(CONTENT, pki["keys"]["p256"], pki["leaves"]["p256"])
    with pytest.raises(BadSignature, match="message-digest"):
        verify(der, CONTENT + b" ")


def test_tampered_opaque_content(pki):
    der = sign(CONTENT, pki["keys"]["rsa"], pki["leaves"]["rsa"], detached=False)
    assert der.count(b"Hello Bob") == 1
    with pytest.raises(BadSignature, match="message-digest"):
        verify(der.replace(b"Hello Bob", b"Hello Eve"))


@pytest.mark.parametrize("kind,pss", [("rsa", False), ("rsa", True), ("p256", False)])
def test_tampered_signature_bytes(pki, kind, pss):
    der = sign(CONTENT, pki["keys"][kind], pki["leaves"][kind], pss=pss)

    def flip(si):
        sig = bytearray(si["signature"].native)
        sig[len(sig) // 2] ^= 0x01
        si["signature"] = bytes(sig)

    with pytest.raises(BadSignature):
        verify(_edit_signer(der, flip), CONTENT)


def test_tampered_signed_attribute_bytes(pki):
    der = sign(CONTENT, pki["keys"]["rsa"], pki["leaves"]["rsa"])
    # Advertise aes256-GCM as ...47: the digest still matches, the signature no longer does.
    raw = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signed_attrs"].dump()
    gcm = bytes.fromhex("060960864801650304012e")
    assert raw.count(gcm) == 1
    bad = raw.replace(gcm, gcm[:-1] + b"\x2f")
    with pytest.raises(BadSignature, match="does not match"):
        verify(der.replace(raw, bad), CONTENT)


def test_signature_by_other_key_with_same_certificate(pki):
    der = sign(CONTENT, pki["keys"]["rsa"], pki["leaves"]["rsa"])
    forged = _resign(der, new_key("rsa"), list(_attrs_of(der).values()))
    with pytest.raises(BadSignature):
        verify(forged, CONTENT)


def test_resign_helper_really_produces_valid_signatures(pki):
    # Guards the forged-attribute tests below: with unchanged attributes they must verify.
    der = sign(CONTENT, pki["keys"]["rsa"], pki["leaves"]["rsa"])
    assert verify(_resign(der, pki["keys"]["rsa"], list(_attrs_of(der).values())), CONTENT).signers


def test_wrong_message_digest_attribute_properly_signed(pki):
    key, cert = pki["keys"]["rsa"], pki["leaves"]["rsa"]
    der = sign(CONTENT, key, cert)
    attrs = _attrs_of(der)
    attrs["1.2.840.113549.1.9.4"] = _attr("message_digest", core.OctetString(b"\x11" * 32))
    with pytest.raises(BadSignature, match="message-digest mismatch"):
        verify(_resign(der, key, list(attrs.values())), CONTENT)


@pytest.mark.parametrize("missing,text", [("1.2.840.113549.1.9.3", "content-type"),
                                          ("1.2.840.113549.1.9.4", "message-digest")])
def test_missing_required_attribute(pki, missing, text):
    key, cert = pki["keys"]["rsa"], pki["leaves"]["rsa"]
    der = sign(CONTENT, key, cert)
    attrs = _attrs_of(der)
    del attrs[missing]
    with pytest.raises(BadSignature, match=f"{text} attribute is missing"):
        verify(_resign(der, key, list(attrs.values())), CONTENT)


def test_duplicate_message_digest_attribute(pki):
    key, cert = pki["keys"]["rsa"], pki["leaves"]["rsa"]
    der = sign(CONTENT, key, cert)
    attrs = list(_attrs_of(der).values())
    attrs.append(_attr("message_digest", core.OctetString(signed_algs.digest("sha256", b"other"))))
    with pytest.raises(BadSignature, match="twice"):
        verify(_resign(der, key, attrs), CONTENT)


def test_message_digest_with_two_values(pki):
    key, cert = pki["keys"]["rsa"], pki["leaves"]["rsa"]
    der = sign(CONTENT, key, cert)
    attrs = _attrs_of(der)
    good = core.OctetString(signed_algs.digest("sha256", CONTENT))
    attrs["1.2.840.113549.1.9.4"] = _attr("message_digest", good, core.OctetString(b"\x22" * 32))
    with pytest.raises(BadSignature, match="exactly one value"):
        verify(_resign(der, key, list(attrs.values())), CONTENT)


def test_content_type_attribute_differs_from_econtent_type(pki):
    key, cert = pki["keys"]["rsa"], pki["leaves"]["rsa"]
    der = sign(CONTENT, key, cert)
    attrs = _attrs_of(der)
    attrs["1.2.840.113549.1.9.3"] = _attr("content_type", cms.ContentType("signed_data"))
    with pytest.raises(BadSignature, match="content-type attribute differs"):
        verify(_resign(der, key, list(attrs.values())), CONTENT)


def test_microsoft_attribute_as_nss_sends_it(pki):
    # NSS (Thunderbird) adds 1.3.6.1.4.1.311.16.4 = IssuerAndSerialNumber; asn1crypto's
    # .native on the whole attribute set chokes on it, so the verifier must read lazily.
    key, cert = pki["keys"]["rsa"], pki["leaves"]["rsa"]
    der = sign(CONTENT, key, cert)
    ias = cms.IssuerAndSerialNumber({"issuer": asn1_x509.Name.load(cert.issuer.public_bytes()),
                                     "serial_number": cert.serial_number})
    ms = _Attribute({"type": "1.3.6.1.4.1.311.16.4", "values": [core.Any.load(ias.dump())]}).dump()
    forged = _resign(der, key, [*_attrs_of(der).values(), ms])
    with pytest.raises(ValueError):
        cms.ContentInfo.load(forged)["content"]["signer_infos"][0]["signed_attrs"].native
    result = verify(forged, CONTENT)
    assert result.signers[0].cert == cert and result.signers[0].capabilities == OUR_CAPABILITIES


def test_unknown_signer_then_supplied_as_extra_cert(pki):
    cert = pki["leaves"]["p256"]
    der = sign(CONTENT, pki["keys"]["p256"], cert)
    info = cms.ContentInfo.load(der)
    del info["content"]["certificates"]
    bare = info.dump(force=True)
    with pytest.raises(BadSignature, match="signer certificate not found"):
        verify(bare, CONTENT)
    with pytest.raises(BadSignature, match="signer certificate not found"):
        verify(bare, CONTENT, [pki["leaves"]["rsa"]])
    assert verify(bare, CONTENT, [pki["leaves"]["rsa"], cert]).signers[0].cert == cert


def test_both_embedded_and_supplied_content_must_agree(pki):
    der = sign(CONTENT, pki["keys"]["p256"], pki["leaves"]["p256"], detached=False)
    assert verify(der, CONTENT).content == CONTENT
    with pytest.raises(BadSignature):
        verify(der, b"something else")


# --- malformed input ------------------------------------------------------------------


def test_detached_without_content_is_malformed(pki):
    der = sign(CONTENT, pki["keys"]["p256"], pki["leaves"]["p256"])
    with pytest.raises(MalformedMessage, match="no signed content"):
        verify(der)


def test_trailing_garbage_is_malformed(pki):
    der = sign(CONTENT, pki["keys"]["p256"], pki["leaves"]["p256"])
    with pytest.raises(MalformedMessage):
        verify(der + b"\x00", CONTENT)


def test_enveloped_data_is_not_signed_data():
    with pytest.raises(MalformedMessage, match="not a CMS SignedData"):
        verify(_load("encryptedForBobRSAOaep"))


@pytest.mark.parametrize("junk", [b"", b"\x30", b"\x30\x00", b"hello world", b"\x30\x80\x00\x00"])
def test_junk_is_malformed(junk):
    with pytest.raises(MalformedMessage):
        verify(junk, b"")


# --- RFC 9216 / draft-ireland-examples-cms known answers ------------------------------------


def test_rfc9216_alice_rsa_without_signed_attributes():
    result = verify(_load("signedByAliceRSA"))
    (signer,) = result.signers
    assert result.content == SAMPLE
    assert signer.cert == _cert("alice.sign.crt")
    assert (signer.digest_algorithm, signer.signature_algorithm, signer.signing_time) == (
        "sha256", "rsassa_pkcs1v15", None)


def test_rfc9216_alice_rsa_pss_with_algorithm_protection():
    result = verify(_load("signedByAliceRSAPSS"))
    assert result.content == SAMPLE
    assert [(s.cert, s.signature_algorithm) for s in result.signers] == [(_cert("alice.sign.crt"), "rsassa_pss")]


def test_rfc9216_carlos_ed25519():
    result = verify(_load("signedByCarlosEd25519"))
    assert result.content == SAMPLE
    (signer,) = result.signers
    assert (signer.cert, signer.digest_algorithm, signer.signature_algorithm) == (
        _cert("carlos.sign.crt"), "sha512", "ed25519")


def test_rfc9216_carlos_detached_by_subject_key_identifier():
    der = _load("signedByCarlosDetached")
    result = verify(der, SAMPLE, [_cert("carlos.sign.crt")])
    assert result.content == SAMPLE and result.signers[0].cert == _cert("carlos.sign.crt")
    with pytest.raises(BadSignature):
        verify(der, SAMPLE[:-1] + b"!", [_cert("carlos.sign.crt")])
    info = cms.ContentInfo.load(der)
    del info["content"]["certificates"]
    bare = info.dump(force=True)
    with pytest.raises(BadSignature, match="signer certificate not found"):
        verify(bare, SAMPLE, [_cert("alice.sign.crt")])
    assert verify(bare, SAMPLE, [_cert("carlos.sign.crt")]).signers[0].cert == _cert("carlos.sign.crt")


def test_rfc9216_two_signers_certs_supplied():
    der = _load("signedByAliceAndCarlosNoCerts")
    result = verify(der, extra_certs=[_cert("alice.sign.crt"), _cert("carlos.sign.crt")])
    assert result.certificates == ()
    assert [(s.cert, s.signature_algorithm) for s in result.signers] == [
        (_cert("carlos.sign.crt"), "ed25519"), (_cert("alice.sign.crt"), "rsassa_pkcs1v15")]
    # Every signer must verify: with one certificate missing the whole message fails.
    with pytest.raises(BadSignature, match="signer certificate not found"):
        verify(der, extra_certs=[_cert("alice.sign.crt")])


@pytest.mark.parametrize("name", ["signedByAliceRSA", "signedByAliceRSAPSS", "signedByCarlosEd25519"])
def test_rfc9216_tampered_content(name):
    der = _load(name)
    assert der.count(SAMPLE) == 1
    with pytest.raises(BadSignature):
        verify(der.replace(SAMPLE, SAMPLE.replace(b"sample", b"simple")))


def test_rfc9216_two_signers_one_tampered():
    der = _load("signedByAliceAndCarlosNoCerts")
    info = cms.ContentInfo.load(der)
    alice_sig = bytearray(info["content"]["signer_infos"][1]["signature"].native)
    alice_sig[-1] ^= 1
    info["content"]["signer_infos"][1]["signature"] = bytes(alice_sig)
    with pytest.raises(BadSignature):
        verify(info.dump(force=True), extra_certs=[_cert("alice.sign.crt"), _cert("carlos.sign.crt")])


# --- algorithm policy ------------------------------------------------------------------


def test_sha1_digest_rejected_unless_allowed(pki):
    key, cert = pki["keys"]["rsa"], pki["leaves"]["rsa"]
    der = sign(CONTENT, key, cert)
    attrs = _attrs_of(der)
    attrs["1.2.840.113549.1.9.4"] = _attr("message_digest", core.OctetString(signed_algs.digest("sha1", CONTENT)))

    def to_sha1(si):
        si["digest_algorithm"] = {"algorithm": "sha1"}

    sha1 = _resign(_edit_signer(der, to_sha1), key, list(attrs.values()), digest_alg="sha1")
    with pytest.raises(UnsupportedAlgorithm, match="weak digest: sha1") as e:
        verify(sha1, CONTENT)
    assert e.value.algorithm == "sha1"
    assert verify(sha1, CONTENT, allow_sha1=True).signers[0].digest_algorithm == "sha1"


def test_unknown_digest_algorithm_is_named(pki):
    der = sign(CONTENT, pki["keys"]["rsa"], pki["leaves"]["rsa"])

    def to_md5(si):
        si["digest_algorithm"] = {"algorithm": "md5"}

    with pytest.raises(UnsupportedAlgorithm, match="md5"):
        verify(_edit_signer(der, to_md5), CONTENT, allow_sha1=True)


def test_signature_hash_must_match_digest_algorithm(pki):
    der = sign(CONTENT, pki["keys"]["rsa"], pki["leaves"]["rsa"])

    def to_sha512_rsa(si):
        si["signature_algorithm"] = {"algorithm": "sha512_rsa"}

    with pytest.raises(BadSignature, match="differs from digest algorithm"):
        verify(_edit_signer(der, to_sha512_rsa), CONTENT)


def test_signature_algorithm_must_fit_the_key(pki):
    der = sign(CONTENT, pki["keys"]["p256"], pki["leaves"]["p256"])

    def to_rsa(si):
        si["signature_algorithm"] = {"algorithm": "rsassa_pkcs1v15"}

    with pytest.raises(BadSignature, match="key type"):
        verify(_edit_signer(der, to_rsa), CONTENT)


# --- fuzzing: nothing but autosmime errors, whatever the bytes ------------------------------------


def _seeds() -> list[tuple[bytes, bytes | None]]:
    key = new_key("ec")
    ca_key, ca = make_ca("Fuzz CA", new_key("ec"))
    cert = make_mailbox_cert("fuzz@example.test", key.public_key(), ca_key, ca)
    return [
        (sign(b"fuzz", key, cert, [ca]), b"fuzz"),
        (sign(b"fuzz", key, cert, detached=False), None),
        (_load("signedByAliceRSAPSS"), None),
        (_load("signedByCarlosEd25519"), None),
        (_load("signedByCarlosDetached"), SAMPLE),
    ]


SEEDS = _seeds()


def _flip(case):
    (der, content), flips = case
    out = bytearray(der)
    for position, mask in flips:
        out[position % len(out)] ^= mask
    return bytes(out), content


def _mutations():
    seed = st.sampled_from(SEEDS)
    flips = st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4)
    flipped = st.tuples(seed, flips).map(_flip)
    truncated = st.tuples(seed, st.integers(0, 10_000)).map(lambda t: (t[0][0][: t[1] % len(t[0][0])], t[0][1]))
    spliced = st.tuples(seed, st.integers(0, 10_000), st.binary(max_size=8)).map(
        lambda t: (t[0][0][: t[1] % len(t[0][0])] + t[2] + t[0][0][t[1] % len(t[0][0]):], t[0][1]))
    random = st.tuples(st.binary(max_size=300), st.one_of(st.none(), st.binary(max_size=20)))
    return st.one_of(flipped, truncated, spliced, random)


def _only_autosmime_errors(der: bytes, content: bytes | None) -> None:
    try:
        verify(der, content, [_cert("carlos.sign.crt")])
    except AutosmimeError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_verify_raises_only_autosmime_errors(case):
    _only_autosmime_errors(*case)


@pytest.mark.slow
@settings(max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_verify_raises_only_autosmime_errors_long(case):
    _only_autosmime_errors(*case)
