"""autosmime.smime._cms.enveloped: round trips, recipient matching, typed failures."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass

import pytest
from asn1crypto import algos, cms, core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from autosmime.errors import (
    DecryptionError,
    MalformedMessage,
    NoKey,
    NotForMe,
    UnsupportedAlgorithm,
    UsageError,
)
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.smime._cms.enveloped import DecryptResult, decrypt, encrypt
from autosmime.smime._cms.enveloped_asn1 import GcmParameters
from autosmime.smime._cms.enveloped_recipients import Slot, read_recipient_infos, recipient_info

MESSAGE = b"Content-Type: text/plain; charset=utf-8\r\n\r\nMeet at noon.\r\n"
GENERIC = "the message could not be decrypted"
NOT_OPENED = "the message names your certificate, but none of your keys opens its copy of the key"


@dataclass(frozen=True)
class Person:
    key: object
    cert: x509.Certificate


@pytest.fixture(scope="module")
def pki() -> dict[str, Person]:
    ca_key, ca = make_ca("Enveloped Test CA")
    people = {}
    for name, kind in [("rsa", "rsa"), ("ec", "ec"), ("ec384", "ec384"), ("old", "rsa"),
                       ("stranger_rsa", "rsa"), ("stranger_ec", "ec")]:
        key = new_key(kind)
        people[name] = Person(key, make_mailbox_cert(f"{name}@example.test", key.public_key(), ca_key, ca))
    key = ec.generate_private_key(ec.SECP521R1())
    people["ec521"] = Person(key, make_mailbox_cert("p521@example.test", key.public_key(), ca_key, ca))
    return people


def _keys(*people: Person) -> list[tuple[object, x509.Certificate]]:
    return [(p.key, p.cert) for p in people]


def _rebuild(der: bytes, change) -> bytes:
    """Re-encode a ContentInfo after ``change(envelope)`` edited it in place."""
    info = cms.ContentInfo.load(der)
    change(info["content"])
    return info.dump(force=True)


# --- round trips ----------------------------------------------------------------

EXPECTED_KEY_ALGORITHM = {
    ("interop", "rsa"): "rsaes_pkcs1v15",
    ("modern", "rsa"): "rsaes_oaep",
    ("interop", "ec"): "ecdh-sha256kdf-aes256_wrap",
    ("modern", "ec"): "ecdh-sha256kdf-aes256_wrap",
    ("interop", "ec384"): "ecdh-sha384kdf-aes256_wrap",
    ("modern", "ec384"): "ecdh-sha384kdf-aes256_wrap",
    ("interop", "ec521"): "ecdh-sha384kdf-aes256_wrap",
    ("modern", "ec521"): "ecdh-sha384kdf-aes256_wrap",
}


@pytest.mark.parametrize("profile", ["interop", "modern"])
@pytest.mark.parametrize("who", ["rsa", "ec", "ec384", "ec521"])
def test_round_trip_single_recipient(pki, profile, who):
    person = pki[who]
    result = decrypt(encrypt(MESSAGE, [person.cert], profile), _keys(person))
    assert result == DecryptResult(
        content=MESSAGE,
        content_algorithm="aes256_cbc" if profile == "interop" else "aes256_gcm",
        key_algorithm=EXPECTED_KEY_ALGORITHM[profile, who],
        weak=False,
        authenticated=profile == "modern",
        recipient_cert=person.cert,
    )


@pytest.mark.parametrize("profile", ["interop", "modern"])
def test_round_trip_mixed_recipients(pki, profile):
    people = [pki["rsa"], pki["ec"], pki["ec384"]]
    der = encrypt(MESSAGE, [p.cert for p in people], profile)
    for person in people:
        result = decrypt(der, _keys(person))
        assert result.content == MESSAGE
        assert result.recipient_cert == person.cert
    with pytest.raises(NotForMe, match="3 recipients"):
        decrypt(der, _keys(pki["stranger_rsa"], pki["stranger_ec"]))


@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 3, os.urandom(100_003)])
def test_any_bytes_survive(pki, content):
    for profile in ("interop", "modern"):
        der = encrypt(content, [pki["rsa"].cert, pki["ec"].cert], profile)
        assert decrypt(der, _keys(pki["ec"])).content == content


def test_each_encryption_is_fresh(pki):
    assert encrypt(MESSAGE, [pki["rsa"].cert]) != encrypt(MESSAGE, [pki["rsa"].cert])


# --- recipient matching -----------------------------------------------------------


def test_not_for_me_counts_recipients(pki):
    der = encrypt(MESSAGE, [pki["rsa"].cert])
    with pytest.raises(NotForMe, match="1 recipient,"):
        decrypt(der, _keys(pki["stranger_rsa"], pki["stranger_ec"]))
    with pytest.raises(NotForMe):
        decrypt(der, [])


def test_old_key_still_decrypts(pki):
    der = encrypt(MESSAGE, [pki["old"].cert])
    result = decrypt(der, _keys(pki["stranger_ec"], pki["rsa"], pki["old"]))
    assert result.content == MESSAGE
    assert result.recipient_cert == pki["old"].cert


@pytest.mark.parametrize("profile", ["interop", "modern"])
@pytest.mark.parametrize("who", ["rsa", "ec"])
def test_key_without_certificate_is_tried_by_type(pki, profile, who):
    stranger = pki["stranger_ec" if who == "rsa" or profile == "modern" else "stranger_rsa"]
    der = encrypt(MESSAGE, [stranger.cert, pki[who].cert, pki["ec384"].cert], profile)
    result = decrypt(der, [(pki["ec521"].key, None), (pki[who].key, None)])
    assert result.content == MESSAGE
    assert result.recipient_cert is None


def test_key_without_certificate_does_not_guess_among_rsa_v15_slots(pki):
    # A wrong PKCS#1 v1.5 slot cannot be told from the right one (see test_only_one_slot_per_certificate).
    der = encrypt(MESSAGE, [pki["stranger_rsa"].cert, pki["rsa"].cert])
    with pytest.raises(NotForMe, match="2 recipients"):
        decrypt(der, [(pki["rsa"].key, None)])
    assert decrypt(der, [(pki["rsa"].key, pki["rsa"].cert)]).content == MESSAGE


def test_key_without_certificate_that_fails_is_not_for_me(pki):
    der = encrypt(MESSAGE, [pki["ec"].cert], "modern")
    with pytest.raises(NotForMe):
        decrypt(der, [(pki["stranger_ec"].key, None), (pki["stranger_rsa"].key, None)])


def _cert_without_ski(key) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no ski")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def _ski_rid(ski: bytes):
    def change(envelope):
        for info in envelope["recipient_infos"]:
            if info.name == "ktri":
                info.chosen["version"] = "v2"
                info.chosen["rid"] = cms.RecipientIdentifier({"subject_key_identifier": ski})
            else:
                rek = info.chosen["recipient_encrypted_keys"][0]
                rek["rid"] = cms.KeyAgreementRecipientIdentifier(
                    {"r_key_id": {"subject_key_identifier": ski}})
    return change


@pytest.mark.parametrize("who", ["rsa", "ec"])
def test_subject_key_identifier_from_extension(pki, who):
    person = pki[who]
    ski = person.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    der = _rebuild(encrypt(MESSAGE, [person.cert]), _ski_rid(ski))
    assert decrypt(der, _keys(person)).content == MESSAGE
    wrong = _rebuild(encrypt(MESSAGE, [person.cert]), _ski_rid(b"\x01" * 20))
    with pytest.raises(NotForMe):
        decrypt(wrong, _keys(person))


def test_subject_key_identifier_method_one_without_extension():
    key = rsa.generate_private_key(65537, 2048)
    cert = _cert_without_ski(key)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest  # RFC 5280 method 1
    der = _rebuild(encrypt(MESSAGE, [cert]), _ski_rid(ski))
    assert decrypt(der, [(key, cert)]).recipient_cert == cert


# --- failures that must stay generic --------------------------------------------------


def test_wrong_rsa_v15_key_under_right_certificate_is_generic(pki):
    # The RecipientInfo names the certificate, but the key cannot open it: the
    # answer must not say whether the PKCS#1 padding was good (Bleichenbacher).
    der = encrypt(MESSAGE, [pki["rsa"].cert])
    try:
        result = decrypt(der, [(pki["stranger_rsa"].key, pki["rsa"].cert)])
    except DecryptionError as e:
        assert type(e) is NotForMe and str(e) == NOT_OPENED
    else:  # a random CEK passes the CBC padding check about once in 256 runs
        assert result.content != MESSAGE


def _bogus_slots_first(count: int, keep_real: bool):
    """``count`` RSA PKCS#1 v1.5 slots naming the real recipient, holding random bytes, before its real slot."""
    def change(envelope):
        real = envelope["recipient_infos"][0]
        bogus = []
        for _ in range(count):
            slot = cms.RecipientInfo.load(real.dump())
            # Two zero octets first: DER sorts the SET OF by encoding, so these come before the real slot.
            slot.chosen["encrypted_key"] = b"\0\0" + os.urandom(254)
            bogus.append(slot)
        envelope["recipient_infos"] = [*bogus, real] if keep_real else bogus
    return change


@pytest.mark.parametrize("keep_real", [True, False])
def test_only_one_slot_per_certificate(pki, monkeypatch, keep_real):
    # A forged slot that names our certificate unwraps to a random stand-in CEK, which passes
    # the CBC padding check once in 256: trying every such slot made garbage look like success.
    calls = []
    unwrap = Slot.unwrap
    monkeypatch.setattr(Slot, "unwrap", lambda self, *a: calls.append(self) or unwrap(self, *a))
    outcomes = []
    for _ in range(8):
        calls.clear()
        der = _rebuild(encrypt(MESSAGE, [pki["rsa"].cert]), _bogus_slots_first(40, keep_real))
        try:
            result = decrypt(der, _keys(pki["stranger_rsa"], pki["rsa"]))
        except DecryptionError as e:  # a message made only of bogus slots is not for us
            assert type(e) is NotForMe and str(e) == NOT_OPENED
            outcomes.append("not for me")
        else:  # the one tried slot's stand-in key passed the padding check (1 in 256)
            assert result.content != MESSAGE
            outcomes.append("garbage")
        assert len(calls) == 1
    assert "not for me" in outcomes


def test_rsa_v15_padding_failure_yields_random_cek(pki):
    cek = os.urandom(32)
    (slot,), _, _ = read_recipient_infos([recipient_info(pki["rsa"].cert, cek, oaep=False)])
    assert slot.unwrap(pki["rsa"].key, 32) == cek
    stand_in = slot.unwrap(pki["stranger_rsa"].key, 32)
    assert len(stand_in) == 32 and stand_in != cek
    garbage = dataclasses.replace(slot, encrypted_key=b"\x00" * 256)
    assert len(garbage.unwrap(pki["rsa"].key, 24)) == 24


@pytest.mark.parametrize("who", ["rsa", "ec"])
def test_wrong_key_under_right_certificate_modern(pki, who):
    der = encrypt(MESSAGE, [pki[who].cert], "modern")
    stranger = pki["stranger_rsa" if who == "rsa" else "stranger_ec"]
    with pytest.raises(NotForMe) as info:
        decrypt(der, [(stranger.key, pki[who].cert)])
    assert str(info.value) == NOT_OPENED


@pytest.mark.parametrize("field", ["mac", "ciphertext"])
def test_tampered_gcm_is_rejected(pki, field):
    der = encrypt(MESSAGE, [pki["ec"].cert], "modern")

    def change(envelope):
        if field == "mac":
            envelope["mac"] = bytes(b ^ 1 for b in envelope["mac"].native)
        else:
            eci = envelope["auth_encrypted_content_info"]
            data = bytearray(eci["encrypted_content"].native)
            data[0] ^= 0x80
            eci["encrypted_content"] = bytes(data)

    with pytest.raises(DecryptionError, match=GENERIC):
        decrypt(_rebuild(der, change), _keys(pki["ec"]))


# --- AuthEnvelopedData variants we read but do not write ----------------------------------


def _auth_enveloped(cert, *, key_size=32, tag_size=16, write_icvlen=True, auth_attrs=None):
    cek = os.urandom(key_size)
    nonce = os.urandom(12)
    aad = b"" if auth_attrs is None else b"\x31" + auth_attrs.dump()[1:]
    sealed = AESGCM(cek).encrypt(nonce, MESSAGE, aad or None)
    params = {"aes_nonce": nonce}
    if write_icvlen:
        params["aes_icvlen"] = tag_size
    envelope = {
        "version": "v0",
        "recipient_infos": [recipient_info(cert, cek, oaep=True)],
        "auth_encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": algos.EncryptionAlgorithm({
                "algorithm": f"aes{key_size * 8}_gcm", "parameters": GcmParameters(params)}),
            "encrypted_content": sealed[:-16],
        },
        "mac": sealed[-16:][:tag_size],  # a GCM tag of n bytes is the full tag cut to n
    }
    if auth_attrs is not None:
        envelope["auth_attrs"] = auth_attrs
    return cms.ContentInfo({"content_type": "authenticated_enveloped_data",
                            "content": cms.AuthEnvelopedData(envelope)}).dump()


@pytest.mark.parametrize("key_size", [16, 24, 32])
@pytest.mark.parametrize("tag_size,write_icvlen", [(12, False), (12, True), (13, True), (16, True)])
def test_gcm_tag_lengths_and_key_sizes(pki, key_size, tag_size, write_icvlen):
    der = _auth_enveloped(pki["rsa"].cert, key_size=key_size, tag_size=tag_size,
                          write_icvlen=write_icvlen)
    result = decrypt(der, _keys(pki["rsa"]))
    assert (result.content, result.content_algorithm, result.authenticated) == (
        MESSAGE, f"aes{key_size * 8}_gcm", True)


def test_gcm_tag_shorter_than_twelve_is_malformed(pki):
    with pytest.raises(MalformedMessage):
        decrypt(_auth_enveloped(pki["rsa"].cert, tag_size=8), _keys(pki["rsa"]))


def test_gcm_authenticated_attributes_are_authenticated(pki):
    attrs = cms.CMSAttributes([{"type": "content_type", "values": ["data"]}])
    der = _auth_enveloped(pki["rsa"].cert, auth_attrs=attrs)
    assert decrypt(der, _keys(pki["rsa"])).content == MESSAGE

    def change(envelope):
        envelope["auth_attrs"] = cms.CMSAttributes([{"type": "content_type", "values": ["signed_data"]}])

    with pytest.raises(DecryptionError):
        decrypt(_rebuild(der, change), _keys(pki["rsa"]))


# --- unsupported and malformed ----------------------------------------------------------


@pytest.mark.parametrize("algorithm,params,name", [
    ("rc2", algos.Rc2Params({"rc2_parameter_version": 58, "iv": b"\0" * 8}), "rc2"),
    ("des", core.OctetString(b"\0" * 8), "des"),
    ("aes256_ccm", algos.CcmParams({"aes_nonce": b"\0" * 12, "aes_icvlen": 16}), "aes256_ccm"),
])
def test_unsupported_content_encryption(pki, algorithm, params, name):
    def change(envelope):
        envelope["encrypted_content_info"]["content_encryption_algorithm"] = algos.EncryptionAlgorithm(
            {"algorithm": algorithm, "parameters": params})

    der = _rebuild(encrypt(MESSAGE, [pki["rsa"].cert]), change)
    with pytest.raises(UnsupportedAlgorithm) as info:
        decrypt(der, _keys(pki["rsa"]))
    assert str(info.value) == f"unsupported content encryption: {name}"
    with pytest.raises(NotForMe):  # what the message is for matters first
        decrypt(der, _keys(pki["stranger_rsa"]))


def test_unsupported_key_encryption(pki):
    def change(envelope):
        ktri = envelope["recipient_infos"][0].chosen
        ktri["key_encryption_algorithm"] = cms.KeyEncryptionAlgorithm({"algorithm": "1.2.3.4.5"})

    der = _rebuild(encrypt(MESSAGE, [pki["rsa"].cert]), change)
    with pytest.raises(UnsupportedAlgorithm, match="unsupported key encryption: 1.2.3.4.5"):
        decrypt(der, _keys(pki["rsa"]))


def test_unusable_recipients_are_skipped(pki):
    kekri = cms.RecipientInfo({"kekri": {
        "version": "v4", "kekid": {"key_identifier": b"keyid"},
        "key_encryption_algorithm": {"algorithm": "aes256_wrap"}, "encrypted_key": b"\0" * 40}})

    def change(envelope):
        envelope["version"] = "v2"
        envelope["recipient_infos"] = [kekri, *envelope["recipient_infos"]]

    der = _rebuild(encrypt(MESSAGE, [pki["ec"].cert]), change)
    assert decrypt(der, _keys(pki["ec"])).content == MESSAGE
    with pytest.raises(NotForMe, match=r"2 recipients \(1 by shared key or password: kekri\)"):
        decrypt(der, _keys(pki["stranger_ec"]))


def test_malformed_inputs(pki):
    der = encrypt(MESSAGE, [pki["rsa"].cert])
    signed = cms.ContentInfo({"content_type": "data", "content": b"hello"}).dump()
    no_content = _rebuild(der, lambda e: e["encrypted_content_info"].__setitem__(
        "encrypted_content", None))
    for bad in [b"", b"\x30", der[:-1], der + b"\0", der[:40], signed, no_content, os.urandom(64)]:
        with pytest.raises(MalformedMessage):
            decrypt(bad, _keys(pki["rsa"]))


# --- encrypt refuses what it cannot do ---------------------------------------------------


def test_encrypt_argument_errors(pki):
    with pytest.raises(UsageError):
        encrypt(MESSAGE, [pki["rsa"].cert], "fast")  # type: ignore[arg-type]
    with pytest.raises(NoKey):
        encrypt(MESSAGE, [])


@pytest.mark.parametrize("key", [ed25519.Ed25519PrivateKey.generate(),
                                 ec.generate_private_key(ec.SECP256K1())])
def test_encrypt_refuses_unsupported_recipient_keys(key):
    ca_key, ca = make_ca("CA for odd keys")
    cert = make_mailbox_cert("odd@example.test", key.public_key(), ca_key, ca)
    with pytest.raises(UnsupportedAlgorithm):
        encrypt(MESSAGE, [cert])


# --- what goes on the wire ---------------------------------------------------------------


def test_interop_encoding(pki):
    der = encrypt(MESSAGE, [pki["rsa"].cert])
    info = cms.ContentInfo.load(der, strict=True)
    assert info.dump(force=True) == der  # DER, definite lengths
    envelope = info["content"]
    assert info["content_type"].native == "enveloped_data"
    assert envelope["version"].native == "v0"
    ktri = envelope["recipient_infos"][0].chosen
    assert ktri["rid"].name == "issuer_and_serial_number"
    assert ktri["rid"].chosen["serial_number"].native == pki["rsa"].cert.serial_number
    assert ktri["key_encryption_algorithm"]["algorithm"].native == "rsaes_pkcs1v15"
    eci = envelope["encrypted_content_info"]
    assert eci["content_encryption_algorithm"]["algorithm"].native == "aes256_cbc"
    assert len(eci["content_encryption_algorithm"]["parameters"].native) == 16

    mixed = cms.ContentInfo.load(encrypt(MESSAGE, [pki["rsa"].cert, pki["ec384"].cert]))
    assert mixed["content"]["version"].native == "v2"  # RFC 5652 6.1: kari is v3
    kari = [i for i in mixed["content"]["recipient_infos"] if i.name == "kari"][0].chosen
    assert kari["ukm"].native is None
    assert kari["originator"].name == "originator_key"
    assert kari["key_encryption_algorithm"]["algorithm"].dotted == "1.3.132.1.11.2"  # sha384kdf
    wrap = cms.KeyEncryptionAlgorithm.load(kari["key_encryption_algorithm"]["parameters"].dump())
    assert wrap["algorithm"].native == "aes256_wrap"


def test_modern_encoding(pki):
    der = encrypt(MESSAGE, [pki["rsa"].cert, pki["ec"].cert], "modern")
    info = cms.ContentInfo.load(der, strict=True)
    assert info.dump(force=True) == der
    assert info["content_type"].native == "authenticated_enveloped_data"
    envelope = info["content"]
    assert envelope["version"].native == "v0"
    assert len(envelope["mac"].native) == 16
    algorithm = envelope["auth_encrypted_content_info"]["content_encryption_algorithm"]
    assert algorithm["algorithm"].native == "aes256_gcm"
    params = GcmParameters.load(algorithm["parameters"].dump())
    assert len(params["aes_nonce"].native) == 12 and params["aes_icvlen"].native == 16
    ktri = [i for i in envelope["recipient_infos"] if i.name == "ktri"][0].chosen
    oaep = ktri["key_encryption_algorithm"]["parameters"]
    assert oaep["hash_algorithm"]["algorithm"].native == "sha256"
    assert oaep["mask_gen_algorithm"]["parameters"]["algorithm"].native == "sha256"
    assert b"\xa0\x0f\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01" in ktri.dump()  # explicit
    kari = [i for i in envelope["recipient_infos"] if i.name == "kari"][0].chosen
    assert kari["key_encryption_algorithm"]["algorithm"].dotted == "1.3.132.1.11.1"  # sha256kdf
