"""RecipientInfos: wrapping the content-encryption key for each recipient, and unwrapping it.

    >>> import os
    >>> from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
    >>> from autosmime.smime._cms.enveloped_recipients import recipient_info, read_recipient_infos
    >>> ca_key, ca = make_ca("Test CA")
    >>> key = new_key("ec")
    >>> cert = make_mailbox_cert("bob@example.test", key.public_key(), ca_key, ca)
    >>> cek = os.urandom(32)
    >>> slots, _, _ = read_recipient_infos([recipient_info(cert, cek, oaep=False)])
    >>> slots[0].unwrap(key, 32) == cek
    True

Key transport (ktri: RSA PKCS#1 v1.5 and RSAES-OAEP) and ephemeral-static
key agreement (kari: ECDH on P-256/384/521 and X25519, X9.63 or HKDF KDF,
AES key wrap). Each encrypted copy of the CEK becomes one :class:`Slot`,
which knows which certificate it names and how to open itself.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from autosmime.errors import MalformedMessage, UnsupportedAlgorithm
from autosmime.pki.certcache import cert_der, per_certificate
from autosmime.smime._cms import der as _der
from autosmime.smime._cms.keytypes import is_a

if TYPE_CHECKING:
    from asn1crypto import cms, core

# asn1crypto is imported by the functions that need it (the general parse of RecipientInfos,
# key agreement, the writers): the common case, RSA slots walked by hand from the DER and
# matched against certificates read the same way, does without it (a fifth of a command's start).

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_WRAP_SIZES = {"aes128_wrap": 16, "aes192_wrap": 24, "aes256_wrap": 32}
_ENCRYPT_CURVES = {"secp256r1": "1.3.132.1.11.1", "secp384r1": "1.3.132.1.11.2",  # enveloped_asn1.STD_DH_*
                   "secp521r1": "1.3.132.1.11.2"}


# --- who a slot is for --------------------------------------------------------


@dataclass(slots=True)  # built per message: frozen construction costs 4x
class Rid:
    """A recipient identifier: issuerAndSerialNumber or subjectKeyIdentifier."""

    issuer_der: bytes | None = None  # the issuer Name's TLV exactly as received
    serial: int | None = None
    ski: bytes | None = None

    def names(self, ident: CertIdentity) -> bool:
        if self.ski is not None:
            return self.ski in ident.skis
        if self.serial != ident.serial or self.issuer_der is None:
            return False
        if self.issuer_der == ident.issuer_der:
            return True
        from asn1crypto import x509 as asn1_x509

        try:  # same name, other string types or case (RFC 5280 7.1 comparison)
            return asn1_x509.Name.load(self.issuer_der, strict=True) == asn1_x509.Name.load(ident.issuer_der)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, UnicodeError, OverflowError,
                RecursionError):
            return False


@dataclass(frozen=True)
class CertIdentity:
    """What a RecipientIdentifier can name of one certificate."""

    issuer_der: bytes
    serial: int
    skis: frozenset[bytes]

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertIdentity:
        return _cert_identity(cert)


@per_certificate()
def _cert_identity(cert: x509.Certificate) -> CertIdentity:
    issuer, serial, key_bits = _tbs_fields(cert_der(cert))
    # RFC 5280 4.2.1.2 method 1, which some senders use even when the
    # certificate carries another SKI.
    skis = {hashlib.sha1(key_bits).digest()}
    try:
        skis.add(cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
    except x509.ExtensionNotFound:
        pass
    return CertIdentity(issuer, serial, frozenset(skis))


def _tbs_fields(der: bytes) -> tuple[bytes, int, bytes]:
    """(issuer Name TLV as in the certificate, serial number, subjectPublicKey bits) of DER
    that cryptography has already parsed; ValueError if its layout is not a certificate's."""
    start, end = _der.expect(der, 0, len(der), _der.SEQUENCE)
    pos, tbs_end = _der.expect(der, start, end, _der.SEQUENCE)
    tag, value, after = _der.read_tlv(der, pos, tbs_end)
    if tag == 0xA0:  # [0] version
        tag, value, after = _der.read_tlv(der, after, tbs_end)
    if tag != _der.INTEGER:
        raise ValueError("no serial number")
    serial = int.from_bytes(der[value:after], "big", signed=True)
    _, issuer_start = _der.expect(der, after, tbs_end, _der.SEQUENCE)  # signature algorithm
    _, issuer_end = _der.expect(der, issuer_start, tbs_end, _der.SEQUENCE)
    _, pos = _der.expect(der, issuer_end, tbs_end, _der.SEQUENCE)  # validity
    _, pos = _der.expect(der, pos, tbs_end, _der.SEQUENCE)  # subject
    spki, spki_end = _der.expect(der, pos, tbs_end, _der.SEQUENCE)
    _, pos = _der.expect(der, spki, spki_end, _der.SEQUENCE)  # algorithm
    bits, bits_end = _der.expect(der, pos, spki_end, 0x03)
    if bits == bits_end:
        raise ValueError("empty public key")
    return der[issuer_start:issuer_end], serial, der[bits + 1:bits_end]  # after the unused-bits octet


def _read_rid(rid: core.Choice) -> Rid:
    if rid.name == "issuer_and_serial_number":
        ias = rid.chosen
        return Rid(issuer_der=ias["issuer"].dump(), serial=ias["serial_number"].native)
    if rid.name == "subject_key_identifier":
        return Rid(ski=rid.chosen.native)
    if rid.name == "r_key_id":
        return Rid(ski=rid.chosen["subject_key_identifier"].native)
    raise MalformedMessage("unknown recipient identifier")


# --- slots: one encrypted CEK each --------------------------------------------


@dataclass(slots=True)  # built per message: frozen construction costs 4x
class Slot:
    """One copy of the content-encryption key, encrypted for one recipient key."""

    rid: Rid
    key_type: str  # "rsa", "ec" or "x25519": the private key type that can open it
    algorithm: str  # reported as DecryptResult.key_algorithm
    unsupported: bool
    encrypted_key: bytes
    # ktri
    oaep: tuple[str, str, bytes | None] | None = None  # (hash, MGF1 hash, label)
    # kari
    originator_key: bytes = b""
    kdf: tuple[str, str] | None = None  # ("x963" | "hkdf", hash)
    wrap_der: bytes = b""
    wrap_size: int = 0
    ukm: bytes | None = None

    def unwrap(self, key: PrivateKey, cek_size: int) -> bytes | None:
        """The CEK, a random stand-in (RSA v1.5), or None when this key cannot open it.

        For RSA PKCS#1 v1.5 a padding failure is answered with a random key of
        the right size (RFC 3218 2.3.2) so the content decryption that follows
        fails exactly as it would for a wrong key: no Bleichenbacher oracle.
        """
        if self.key_type == "rsa":
            return self._unwrap_rsa(key, cek_size) if is_a(key, rsa.RSAPrivateKey) else None
        if self.key_type == "ec" and isinstance(key, ec.EllipticCurvePrivateKey):
            peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, self.originator_key)
            return self._unwrap_kari(key.exchange(ec.ECDH(), peer), cek_size)
        if self.key_type == "x25519" and isinstance(key, x25519.X25519PrivateKey):
            peer_x = x25519.X25519PublicKey.from_public_bytes(self.originator_key)
            return self._unwrap_kari(key.exchange(peer_x), cek_size)
        return None

    def _unwrap_rsa(self, key: rsa.RSAPrivateKey, cek_size: int) -> bytes | None:
        if self.oaep is None:
            try:
                cek = key.decrypt(self.encrypted_key, padding.PKCS1v15())
            except ValueError:
                cek = b""
            if len(cek) != cek_size:
                cek = os.urandom(cek_size)
            return cek
        hash_name, mgf_name, label = self.oaep
        oaep = padding.OAEP(
            mgf=padding.MGF1(_HASHES[mgf_name]()), algorithm=_HASHES[hash_name](), label=label
        )
        try:
            cek = key.decrypt(self.encrypted_key, oaep)
        except ValueError:
            return None
        return cek if len(cek) == cek_size else None

    def _unwrap_kari(self, shared_secret: bytes, cek_size: int) -> bytes | None:
        assert self.kdf is not None
        kek = _derive_kek(shared_secret, self.kdf, self.wrap_der, self.wrap_size, self.ukm)
        try:
            cek = aes_key_unwrap(kek, self.encrypted_key)
        except InvalidUnwrap:
            return None
        return cek if len(cek) == cek_size else None


def _derive_kek(shared_secret: bytes, kdf: tuple[str, str], wrap_der: bytes, wrap_size: int,
                ukm: bytes | None) -> bytes:
    from asn1crypto import core

    from autosmime.smime._cms.enveloped_asn1 import EccCmsSharedInfo

    info = {
        "key_info": core.Any.load(wrap_der),
        "supp_pub_info": (wrap_size * 8).to_bytes(4, "big"),
    }
    if ukm is not None:
        info["entity_u_info"] = ukm
    shared_info = EccCmsSharedInfo(info).dump()
    kind, hash_name = kdf
    if kind == "hkdf":  # RFC 8418: no salt, SharedInfo as info
        return HKDF(_HASHES[hash_name](), wrap_size, None, shared_info).derive(shared_secret)
    return X963KDF(_HASHES[hash_name](), wrap_size, shared_info).derive(shared_secret)


def read_recipient_infos(infos: Iterable[cms.RecipientInfo]) -> tuple[list[Slot], int, list[str]]:
    """Every slot, how many recipients the message names in all, and the kinds no key can open.

    kekri, pwri and ori recipients count as recipients but give no slot: no
    user key can open them. Parse failures surface as asn1crypto exceptions;
    the caller turns them into MalformedMessage.
    """
    slots: list[Slot] = []
    others: list[str] = []
    total = 0
    for info in infos:
        if info.name == "ktri":
            total += 1
            slots.append(_read_ktri(info.chosen))
        elif info.name == "kari":
            kari_slots = _read_kari(info.chosen)
            total += len(kari_slots)
            slots.extend(kari_slots)
        else:
            total += 1
            others.append(str(info.name))
    return slots, total, others


def _read_ktri(ktri: cms.KeyTransRecipientInfo) -> Slot:
    from asn1crypto import core

    rid = _read_rid(ktri["rid"])
    kea = ktri["key_encryption_algorithm"]
    name = kea["algorithm"].native
    encrypted_key = ktri["encrypted_key"].native
    if name == "rsaes_pkcs1v15":
        return Slot(rid, "rsa", name, False, encrypted_key)
    if name == "rsaes_oaep":
        params = kea["parameters"]
        if isinstance(params, core.Void):  # absent: all defaults (SHA-1, MGF1-SHA-1, no label)
            return Slot(rid, "rsa", name, False, encrypted_key, oaep=("sha1", "sha1", None))
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf = params["mask_gen_algorithm"]
        mgf_hash = mgf["parameters"]["algorithm"].native if mgf["algorithm"].native == "mgf1" else None
        source = params["p_source_algorithm"]
        label = source["parameters"].native if source["algorithm"].native == "p_specified" else None
        if hash_name not in _HASHES or mgf_hash not in _HASHES or not isinstance(label, bytes):
            return Slot(rid, "rsa", f"rsaes_oaep-{hash_name}-{mgf_hash}", True, encrypted_key)
        return Slot(rid, "rsa", name, False, encrypted_key, oaep=(hash_name, mgf_hash, label or None))
    return Slot(rid, "rsa", str(name), True, encrypted_key)


def _read_kari(kari: cms.KeyAgreeRecipientInfo) -> list[Slot]:
    from asn1crypto import cms, core

    from autosmime.smime._cms.enveloped_asn1 import (
        HKDF_SCHEMES,
        ID_EC_PUBLIC_KEY,
        ID_X25519,
        X963_SCHEMES,
        AlgorithmIdentifier,
        OriginatorPublicKey,
    )

    originator = kari["originator"]
    scheme = AlgorithmIdentifier.load(kari["key_encryption_algorithm"].dump())
    scheme_oid = scheme["algorithm"].dotted
    ukm = None if isinstance(kari["ukm"], core.Void) else kari["ukm"].native
    key_type, point, curve_name = "ec", b"", "ecdh"
    unsupported = False
    if originator.name == "originator_key":
        spki = OriginatorPublicKey.load(originator.chosen.untag().dump())
        key_alg = AlgorithmIdentifier.load(spki["algorithm"].dump())["algorithm"].dotted
        point = spki["public_key"].contents[1:]  # uncompressed point / raw key; unused-bits byte first
        if key_alg == ID_X25519:
            key_type, curve_name = "x25519", "x25519"
        elif key_alg != ID_EC_PUBLIC_KEY:
            unsupported, curve_name = True, key_alg
    else:  # static-static (originator named by certificate) is not used by S/MIME mail
        unsupported, curve_name = True, f"ecdh-static-{originator.name}"

    kdf: tuple[str, str] | None = None
    if scheme_oid in X963_SCHEMES:
        kdf = ("x963", X963_SCHEMES[scheme_oid])
        kdf_name = f"{kdf[1]}kdf"
    elif scheme_oid in HKDF_SCHEMES:
        kdf = ("hkdf", HKDF_SCHEMES[scheme_oid])
        kdf_name = f"hkdf_{kdf[1]}"
    else:
        unsupported, kdf_name = True, scheme_oid
    wrap = cms.KeyEncryptionAlgorithm.load(scheme["parameters"].dump())
    wrap_name = wrap["algorithm"].native
    if wrap_name not in _WRAP_SIZES:
        unsupported = True
    algorithm = f"{curve_name}-{kdf_name}-{wrap_name}"
    return [
        Slot(
            _read_rid(rek["rid"]), key_type, algorithm, unsupported, rek["encrypted_key"].native,
            originator_key=point, kdf=kdf, wrap_der=wrap.dump(force=True),
            wrap_size=_WRAP_SIZES.get(wrap_name, 0), ukm=ukm,
        )
        for rek in kari["recipient_encrypted_keys"]
    ]


# --- writing ------------------------------------------------------------------


def _ias(cert: x509.Certificate) -> cms.IssuerAndSerialNumber:
    from asn1crypto import cms

    from autosmime.smime._cms.certinfo import issuer_and_serial_raw

    return cms.IssuerAndSerialNumber.load(issuer_and_serial_raw(cert))


def recipient_info(cert: x509.Certificate, cek: bytes, *, oaep: bool) -> cms.RecipientInfo:
    """The RecipientInfo that gives ``cert``'s key the CEK: ktri for RSA, kari for EC."""
    from asn1crypto import cms

    return cms.RecipientInfo.load(recipient_info_der(cert, cek, oaep=oaep)[0])


def recipient_info_der(cert: x509.Certificate, cek: bytes, *, oaep: bool) -> tuple[bytes, bool]:
    """(DER of the RecipientInfo for ``cert``, whether it is a ktri)."""
    public_key = cert.public_key()
    if is_a(public_key, rsa.RSAPublicKey):
        return _ktri(cert, public_key, cek, oaep), True
    if is_a(public_key, ec.EllipticCurvePublicKey):
        return _kari(cert, public_key, cek).dump(), False
    raise UnsupportedAlgorithm(type(public_key).__name__, "recipient key type")


_OAEP_SHA256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


@lru_cache(maxsize=2)
def _ktri_algorithm(oaep: bool) -> bytes:
    from asn1crypto import cms

    if oaep:
        return cms.KeyEncryptionAlgorithm({
            "algorithm": "rsaes_oaep",
            "parameters": {
                "hash_algorithm": {"algorithm": "sha256"},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
            },
        }).dump()
    return cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15"}).dump()


def _ktri(cert: x509.Certificate, public_key: rsa.RSAPublicKey, cek: bytes, oaep: bool) -> bytes:
    # KeyTransRecipientInfo v0 (issuerAndSerialNumber), hand-written: see _cms/der.py.
    from autosmime.smime._cms.certinfo import issuer_and_serial_raw

    encrypted = public_key.encrypt(cek, _OAEP_SHA256 if oaep else padding.PKCS1v15())
    return _der.tlv(_der.SEQUENCE, b"\x02\x01\x00", issuer_and_serial_raw(cert), _ktri_algorithm(oaep),
                    _der.tlv(_der.OCTET_STRING, encrypted))


def _kari(cert: x509.Certificate, public_key: ec.EllipticCurvePublicKey,
          cek: bytes) -> cms.RecipientInfo:
    from asn1crypto import cms
    from asn1crypto import keys as asn1_keys

    from autosmime.smime._cms.enveloped_asn1 import X963_SCHEMES

    scheme = _ENCRYPT_CURVES.get(public_key.curve.name)
    if scheme is None:
        raise UnsupportedAlgorithm(public_key.curve.name, "recipient curve")
    ephemeral = ec.generate_private_key(public_key.curve)
    point = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    wrap = cms.KeyEncryptionAlgorithm({"algorithm": "aes256_wrap"})
    kek = _derive_kek(ephemeral.exchange(ec.ECDH(), public_key), ("x963", X963_SCHEMES[scheme]),
                      wrap.dump(), 32, None)
    # Like OpenSSL: id-ecPublicKey without curve parameters (RFC 5753 3.1.1).
    originator = asn1_keys.PublicKeyInfo({
        "algorithm": {"algorithm": "ec"},
        "public_key": point,
    })
    return cms.RecipientInfo({"kari": {
        "version": "v3",
        "originator": {"originator_key": originator},
        "key_encryption_algorithm": {"algorithm": scheme, "parameters": wrap},
        "recipient_encrypted_keys": [
            {"rid": {"issuer_and_serial_number": _ias(cert)}, "encrypted_key": aes_key_wrap(kek, cek)}
        ],
    }})
