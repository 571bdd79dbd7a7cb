"""Signer certificate path validation and the addresses a certificate names."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autosmime.errors import AutosmimeError, ExpiredSigner, UntrustedSigner
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.pki.validate import cert_addresses, validate_signer

KEYS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "rfc9216" / "keys"  # shared/ lies beside the checkout
UTC = dt.UTC
NOW = dt.datetime.now(UTC).replace(microsecond=0)
# Fixtures are built when first used, possibly many minutes after import: start them well before NOW.
_START = NOW - dt.timedelta(days=1)
ANY_EKU = x509.ObjectIdentifier("2.5.29.37.0")


def _rfc(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((KEYS / name).read_bytes())


@pytest.fixture(scope="module")
def pki():
    root_key, root = make_ca("Validate Root", new_key("ec384"), not_before=_START)
    inter_key, inter = make_ca("Validate Intermediate", new_key("ec"), issuer_key=root_key, issuer_cert=root,
                               not_before=_START)
    leaf_key = new_key("ec")
    return {"root_key": root_key, "root": root, "inter_key": inter_key, "inter": inter, "leaf_key": leaf_key,
            "leaf": make_mailbox_cert("Alice@Example.TEST", leaf_key.public_key(), root_key, root, not_before=_START),
            "inter_leaf": make_mailbox_cert("bob@example.test", leaf_key.public_key(), inter_key, inter, not_before=_START)}


def _custom_leaf(pki, *, eku=None, key_usage=None, san=("carol@example.test",), subject_email=None,
                 start=None, days=30, issuer="root"):
    """A leaf with exactly the extensions asked for (make_mailbox_cert always adds the good ones)."""
    ca_key, ca = pki[f"{issuer}_key"], pki[issuer]
    names = [x509.NameAttribute(NameOID.COMMON_NAME, "Carol")]
    if subject_email:
        names.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, subject_email))
    start = start or NOW - dt.timedelta(days=1)
    b = (x509.CertificateBuilder().subject_name(x509.Name(names)).issuer_name(ca.subject)
         .public_key(pki["leaf_key"].public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if key_usage is not None:
        flags = dict.fromkeys(["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                               "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"],
                              False)
        flags.update({k: True for k in key_usage})
        b = b.add_extension(x509.KeyUsage(**flags), critical=True)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(a) for a in san]), critical=False)
    return b.sign(ca_key, hashes.SHA384())


# --- good paths ------------------------------------------------------------------------


def test_leaf_directly_under_root(pki):
    assert validate_signer(pki["leaf"], [], [pki["root"]]) == [pki["leaf"], pki["root"]]


def test_intermediate_chain(pki):
    chain = validate_signer(pki["inter_leaf"], [pki["leaf"], pki["inter"]], [pki["root"]])
    assert chain == [pki["inter_leaf"], pki["inter"], pki["root"]]


def test_rsa_ca_from_profiles(pki):
    root_key, root = make_ca("RSA Profile Root")  # the default RSA-3072 CA users get
    key = new_key("rsa")
    leaf = make_mailbox_cert("dave@example.test", key.public_key(), root_key, root)
    assert validate_signer(leaf, [], [root]) == [leaf, root]


def test_any_extended_key_usage_is_accepted(pki):
    leaf = _custom_leaf(pki, eku=[ANY_EKU], key_usage=["digital_signature"])
    assert validate_signer(leaf, [], [pki["root"]])[0] == leaf


def test_non_repudiation_alone_is_accepted(pki):
    leaf = _custom_leaf(pki, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], key_usage=["content_commitment"])
    assert validate_signer(leaf, [], [pki["root"]])[0] == leaf


def test_no_key_usage_is_accepted(pki):
    leaf = _custom_leaf(pki, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION])
    assert validate_signer(leaf, [], [pki["root"]])[0] == leaf


# --- refusals --------------------------------------------------------------------------


def test_untrusted_root(pki):
    _, other_root = make_ca("Someone Else's Root", new_key("ec"))
    with pytest.raises(UntrustedSigner) as e:
        validate_signer(pki["leaf"], [], [other_root])
    assert not isinstance(e.value, ExpiredSigner)


def test_no_roots_at_all(pki):
    with pytest.raises(UntrustedSigner):
        validate_signer(pki["leaf"], [pki["root"]], [])


def test_intermediate_missing(pki):
    with pytest.raises(UntrustedSigner) as e:
        validate_signer(pki["inter_leaf"], [], [pki["root"]])
    assert not isinstance(e.value, ExpiredSigner)


def test_missing_eku_is_any_use_with_a_note(pki):
    # RFC 5280 §4.2.1.12, RFC 8550 §4.4.4 and NSS: no EKU extension means no restriction.
    from autosmime.pki.validate import validate

    leaf = _custom_leaf(pki, key_usage=["digital_signature"])
    path = validate(leaf, [], [pki["root"]])
    assert path.chain == (leaf, pki["root"])
    assert [n.code for n in path.notes] == ["no-eku"] and "Carol" in str(path.notes[0])


def test_wrong_eku(pki):
    leaf = _custom_leaf(pki, eku=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(UntrustedSigner, match="emailProtection"):
        validate_signer(leaf, [], [pki["root"]])


def test_encryption_only_key_usage(pki):
    leaf = _custom_leaf(pki, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], key_usage=["key_agreement"])
    with pytest.raises(UntrustedSigner, match="digitalSignature"):
        validate_signer(leaf, [], [pki["root"]])


def test_leaf_cannot_act_as_ca(pki):
    # A mailbox certificate (CA=false) "issuing" another one must not be a path.
    fake_ca = {"leaf_key": pki["leaf_key"], "root_key": pki["leaf_key"], "root": pki["leaf"]}
    victim = _custom_leaf(fake_ca, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION])
    with pytest.raises(UntrustedSigner):
        validate_signer(victim, [pki["leaf"]], [pki["root"]])


def test_forged_issuer_signature(pki):
    # Same issuer name and key identifier, wrong signing key.
    impostor = {"leaf_key": pki["leaf_key"], "root_key": new_key("ec384"), "root": pki["root"]}
    leaf = _custom_leaf(impostor, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION])
    with pytest.raises(UntrustedSigner) as e:
        validate_signer(leaf, [], [pki["root"]])
    assert not isinstance(e.value, ExpiredSigner)


# --- time ---------------------------------------------------------------------------------


def test_expired_leaf_now_but_valid_in_the_past(pki):
    start = NOW - dt.timedelta(days=400)
    leaf = _custom_leaf(pki, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], start=start, days=30)
    with pytest.raises(ExpiredSigner) as e:
        validate_signer(leaf, [], [pki["root"]])
    text = str(e.value)
    assert "Carol" in text and start.strftime("%Y-%m-%d") in text
    # The root must also be valid then: make a root that was.
    root_key, old_root = make_ca("Old Root", new_key("ec"), not_before=start - dt.timedelta(days=1))
    old = {"leaf_key": pki["leaf_key"], "root_key": root_key, "root": old_root}
    old_leaf = _custom_leaf(old, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], start=start, days=30)
    with pytest.raises(ExpiredSigner):
        validate_signer(old_leaf, [], [old_root])
    assert validate_signer(old_leaf, [], [old_root], at=start + dt.timedelta(days=10)) == [old_leaf, old_root]


def test_not_yet_valid_leaf(pki):
    start = NOW + dt.timedelta(days=10)
    leaf = _custom_leaf(pki, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], start=start, days=30)
    with pytest.raises(ExpiredSigner, match="valid from"):
        validate_signer(leaf, [], [pki["root"]])
    assert validate_signer(leaf, [], [pki["root"]], at=start + dt.timedelta(days=1))[0] == leaf


def test_expired_intermediate_is_named(pki):
    start = NOW - dt.timedelta(days=100)
    inter_key, inter = make_ca("Short-Lived Intermediate", new_key("ec"), not_before=start, days=20,
                               issuer_key=pki["root_key"], issuer_cert=pki["root"])
    leaf = make_mailbox_cert("erin@example.test", pki["leaf_key"].public_key(), inter_key, inter,
                             not_before=start, days=365)
    with pytest.raises(ExpiredSigner, match="Short-Lived Intermediate"):
        validate_signer(leaf, [inter], [pki["root"]])


def test_expired_and_untrusted_is_untrusted(pki):
    start = NOW - dt.timedelta(days=400)
    _, stranger = make_ca("Stranger Root", new_key("ec"))
    leaf = _custom_leaf(pki, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], start=start, days=30)
    with pytest.raises(UntrustedSigner) as e:
        validate_signer(leaf, [], [stranger])
    assert not isinstance(e.value, ExpiredSigner)


def test_naive_at_is_utc(pki):
    assert validate_signer(pki["leaf"], [], [pki["root"]], at=dt.datetime.now(dt.UTC).replace(tzinfo=None))[0] == pki["leaf"]


# --- RFC 9216 sample PKI (RSA and Ed25519 roots, cross certificates) --------------------------


@pytest.mark.parametrize("leaf,root,via", [
    ("alice.sign.crt", "ca.rsa.crt", None),
    ("bob.sign.crt", "ca.rsa.crt", None),
    ("carlos.sign.crt", "ca.25519.crt", None),
    ("dana.sign.crt", "ca.25519.crt", None),
    ("alice.sign.crt", "ca.25519.crt", "ca.rsa.cross.crt"),
    ("carlos.sign.crt", "ca.rsa.crt", "ca.25519.cross.crt"),
])
def test_rfc9216_paths(leaf, root, via):
    chain = validate_signer(_rfc(leaf), [_rfc(via)] if via else [], [_rfc(root)])
    assert chain[0] == _rfc(leaf) and chain[-1] == _rfc(root)
    assert len(chain) == (3 if via else 2)


@pytest.mark.parametrize("leaf,root", [("alice.sign.crt", "ca.25519.crt"), ("carlos.sign.crt", "ca.rsa.crt")])
def test_rfc9216_other_root_without_cross_cert(leaf, root):
    with pytest.raises(UntrustedSigner):
        validate_signer(_rfc(leaf), [], [_rfc(root)])


def test_rfc9216_encryption_cert_is_not_a_signer():
    with pytest.raises(UntrustedSigner, match="digitalSignature"):
        validate_signer(_rfc("alice.encrypt.crt"), [], [_rfc("ca.rsa.crt")])


def test_rfc9216_ed25519_before_validity():
    with pytest.raises(ExpiredSigner, match="2020-12-15"):
        validate_signer(_rfc("carlos.sign.crt"), [], [_rfc("ca.25519.crt")],
                        at=dt.datetime(2020, 1, 1, tzinfo=UTC))


def test_ed25519_path_still_checks_signatures_and_ca_flag():
    ca_key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ed CA")])

    def cert(subject, key_pub, signer, *, ca, eku=True):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(name).public_key(key_pub)
             .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
             .not_valid_after(NOW + dt.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        return b.sign(signer, None)

    root = cert(name, ca_key.public_key(), ca_key, ca=True, eku=False)
    leaf_key = ed25519.Ed25519PrivateKey.generate()
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ed Leaf")])
    good = cert(leaf_name, leaf_key.public_key(), ca_key, ca=False)
    assert validate_signer(good, [], [root]) == [good, root]
    forged = cert(leaf_name, leaf_key.public_key(), ed25519.Ed25519PrivateKey.generate(), ca=False)
    with pytest.raises(UntrustedSigner):
        validate_signer(forged, [], [root])
    # A trust anchor is the user's choice: only its key and name count (RFC 5280 §6.1) ...
    not_a_ca = cert(name, ca_key.public_key(), ca_key, ca=False, eku=False)
    assert validate_signer(good, [], [not_a_ca]) == [good, not_a_ca]
    # ... but below the anchor, a certificate without cA may not issue.
    other_key = ed25519.Ed25519PrivateKey.generate()
    other_root = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Top")]))
                  .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Top")]))
                  .public_key(other_key.public_key()).serial_number(1).not_valid_before(NOW - dt.timedelta(days=1))
                  .not_valid_after(NOW + dt.timedelta(days=30))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(other_key, None))
    middle = (x509.CertificateBuilder().subject_name(name).issuer_name(other_root.subject)
              .public_key(ca_key.public_key()).serial_number(2).not_valid_before(NOW - dt.timedelta(days=1))
              .not_valid_after(NOW + dt.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True).sign(other_key, None))
    with pytest.raises(UntrustedSigner, match="not a CA"):
        validate_signer(good, [middle], [other_root])


# --- addresses ------------------------------------------------------------------------------


def test_cert_addresses_lower_cases_san(pki):
    assert cert_addresses(pki["leaf"]) == ["alice@example.test"]


def test_cert_addresses_all_san_entries(pki):
    leaf = _custom_leaf(pki, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], san=("A@X.test", "b@y.TEST"),
                        subject_email="ignored@example.test")
    assert cert_addresses(leaf) == ["a@x.test", "b@y.test"]


def test_cert_addresses_subject_email_without_san(pki):
    leaf = _custom_leaf(pki, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], san=(), subject_email="Old@Style.test")
    assert cert_addresses(leaf) == ["old@style.test"]


def test_cert_addresses_none(pki):
    leaf = _custom_leaf(pki, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], san=())
    assert cert_addresses(leaf) == []


def test_rfc9216_addresses():
    assert cert_addresses(_rfc("carlos.sign.crt")) == ["carlos@smime.example"]


# --- fuzzing: any certificate cryptography can load gives an answer or an autosmime error -------

_FUZZ_SEEDS = [_rfc(n).public_bytes(Encoding.DER) for n in ("alice.sign.crt", "carlos.sign.crt")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_FUZZ_SEEDS), st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 255)),
                                               min_size=1, max_size=3))
def test_mutated_certificates_raise_only_autosmime_errors(seed, flips):
    der = bytearray(seed)
    for position, mask in flips:
        der[position % len(der)] ^= mask
    try:
        cert = x509.load_der_x509_certificate(bytes(der))
    except Exception:  # cryptography refusing to load is not our code's business
        return
    try:
        validate_signer(cert, [_rfc("ca.rsa.cross.crt"), _rfc("ca.25519.cross.crt")],
                        [_rfc("ca.rsa.crt"), _rfc("ca.25519.crt")])
    except AutosmimeError:
        pass
    cert_addresses(cert)


# --- the typed entry point ----------------------------------------------------------------


def test_validate_returns_a_typed_path(pki):
    from autosmime.pki.validate import ValidatedPath, validate

    path = validate(pki["inter_leaf"], [pki["inter"]], [pki["root"]], at=NOW, purpose="encrypt")
    assert isinstance(path, ValidatedPath)
    assert path.chain == (pki["inter_leaf"], pki["inter"], pki["root"])
    assert path.leaf == pki["inter_leaf"] and path.anchor == pki["root"]
    assert path.notes == () and path.purpose == "encrypt" and path.at == NOW


def test_validate_purpose_checks_key_usage(pki):
    from autosmime.pki.validate import validate

    signing_only = _custom_leaf(pki, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], key_usage=["digital_signature"])
    assert validate(signing_only, [], [pki["root"]], purpose="sign").leaf == signing_only
    with pytest.raises(UntrustedSigner, match="keyAgreement"):  # an EC key
        validate(signing_only, [], [pki["root"]], purpose="encrypt")
