"""Digest and signature algorithms of CMS SignerInfos: naming, choosing, checking.

    >>> from cryptography.hazmat.primitives.asymmetric import ec
    >>> from autosmime.smime._cms.signed_algs import digest_for_key, signature_algorithm_for_key
    >>> key = ec.generate_private_key(ec.SECP384R1())
    >>> digest_for_key(key)
    'sha384'
    >>> signature_algorithm_for_key(key, "sha384", pss=False)["algorithm"].native
    'sha384_ecdsa'

Private to :mod:`autosmime.smime._cms.signed`. Every failure is an
:mod:`autosmime.errors` type; the caller never sees cryptography's exceptions.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from asn1crypto import algos, core
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from autosmime.errors import BadSignature, UnsupportedAlgorithm, WeakAlgorithm
from autosmime.smime._cms.keytypes import is_a

# Names are asn1crypto's DigestAlgorithmId names, so the two never disagree.
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha3_256": hashes.SHA3_256,
    "sha3_384": hashes.SHA3_384,
    "sha3_512": hashes.SHA3_512,
    "sha1": hashes.SHA1,
}
_WEAK = {"sha1", "md5", "md2"}

# The hash a signature algorithm OID names, when it names one; it must equal the
# SignerInfo's digestAlgorithm, or an attacker could pick the weaker of the two.
_RSA_WITH = {"sha1_rsa": "sha1", "sha224_rsa": "sha224", "sha256_rsa": "sha256",
             "sha384_rsa": "sha384", "sha512_rsa": "sha512", "md5_rsa": "md5", "md2_rsa": "md2"}
_ECDSA_WITH = {"sha1_ecdsa": "sha1", "sha224_ecdsa": "sha224", "sha256_ecdsa": "sha256",
               "sha384_ecdsa": "sha384", "sha512_ecdsa": "sha512", "sha3_256_ecdsa": "sha3_256",
               "sha3_384_ecdsa": "sha3_384", "sha3_512_ecdsa": "sha3_512"}
_ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"  # bare key OID, written by some signers instead of ecdsa-with-*


def digest_name(algorithm: algos.DigestAlgorithm, *, allow_sha1: bool) -> str:
    """The digest's name, if autosmime computes it and policy allows it."""
    name = _oid_name(algorithm["algorithm"])
    if name in _WEAK and not (name == "sha1" and allow_sha1):
        raise WeakAlgorithm(name, "weak digest")
    if name not in _HASHES and name != "shake256":
        raise UnsupportedAlgorithm(name, "digest algorithm")
    return name


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    if name == "shake256":  # Ed448 in CMS (RFC 8419): SHAKE256 with 512 bits out
        return hashes.SHAKE256(64)
    return _HASHES[name]()


# hashlib for the common digests: the same OpenSSL code, a microsecond less per message in objects.
_HASHLIB = {"sha1": hashlib.sha1, "sha224": hashlib.sha224, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
            "sha512": hashlib.sha512, "sha3_256": hashlib.sha3_256, "sha3_384": hashlib.sha3_384,
            "sha3_512": hashlib.sha3_512}


def digest(name: str, data) -> bytes:
    return digest_chunks(name, (data,))


def digest_chunks(name: str, chunks) -> bytes:
    """The ``name`` digest of the concatenated bytes-like ``chunks``."""
    new = _HASHLIB.get(name)
    if new is not None:
        h = new()
        for chunk in chunks:
            h.update(chunk)
        return h.digest()
    ch = hashes.Hash(hash_algorithm(name))
    for chunk in chunks:
        ch.update(chunk)
    return ch.finalize()


def digest_for_key(key: object) -> str:
    """The digest autosmime signs with: SHA-256, or the hash matching a larger EC curve."""
    if is_a(key, ec.EllipticCurvePrivateKey):
        size = key.curve.key_size
        return "sha512" if size > 384 else "sha384" if size > 256 else "sha256"
    return "sha256"


def key_kind(key: object) -> str:
    """"rsa" or "ec": the signing key families autosmime writes signatures with."""
    if is_a(key, rsa.RSAPrivateKey):
        return "rsa"
    if is_a(key, ec.EllipticCurvePrivateKey):
        return "ec"
    raise UnsupportedAlgorithm(type(key).__name__, "signing key type")


def signature_algorithm_for_key(key: object, digest_alg: str, *, pss: bool) -> algos.SignedDigestAlgorithm:
    """The signatureAlgorithm field for ``key``; rsaEncryption for v1.5, as OpenSSL writes it."""
    return signature_algorithm_for_kind(key_kind(key), digest_alg, pss=pss)


def signature_algorithm_for_kind(kind: str, digest_alg: str, *, pss: bool) -> algos.SignedDigestAlgorithm:
    if kind == "rsa":
        if pss:
            return algos.SignedDigestAlgorithm({
                "algorithm": "rsassa_pss",
                "parameters": algos.RSASSAPSSParams({
                    "hash_algorithm": {"algorithm": digest_alg},
                    "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": digest_alg}},
                    "salt_length": hashes_digest_size(digest_alg),  # gpgsm rejects OpenSSL's max salt
                }),
            })
        return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})
    if pss:
        raise UnsupportedAlgorithm("rsassa_pss with an EC key", "signature algorithm")
    return algos.SignedDigestAlgorithm({"algorithm": f"{digest_alg}_ecdsa"})


def hashes_digest_size(name: str) -> int:
    return hash_algorithm(name).digest_size


def sign_bytes(key: object, digest_alg: str, data: bytes, *, pss: bool) -> bytes:
    h = hash_algorithm(digest_alg)
    if is_a(key, rsa.RSAPrivateKey):
        pad = (padding.PSS(padding.MGF1(h), padding.PSS.DIGEST_LENGTH) if pss else padding.PKCS1v15())
        return key.sign(data, pad, h)
    if is_a(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(h))
    raise UnsupportedAlgorithm(type(key).__name__, "signing key type")  # pragma: no cover


def verify_signature(public_key: Any, algorithm_der: bytes, digest_alg: str,
                     signature: bytes, data: bytes | memoryview, *, allow_sha1: bool) -> str:
    """Check ``signature`` over ``data``; return the scheme's name or raise BadSignature.

    ``algorithm_der`` is the SignerInfo's signatureAlgorithm TLV as received.
    """
    scheme, key_type, args = _signature_plan(algorithm_der, digest_alg, allow_sha1)
    _key_is(public_key, key_type)
    try:
        public_key.verify(signature, data, *args)
    except InvalidSignature:
        raise BadSignature("the signature does not match the signed data and the signer's key") from None
    return scheme


# The same few signatureAlgorithm encodings come in every message; the plan for one is a pure
# function of its bytes and the digest, so a bounded cache keyed by them is exact. Errors are not cached.
@lru_cache(maxsize=64)
def _signature_plan(algorithm_der: bytes, digest_alg: str, allow_sha1: bool) -> tuple[str, type, tuple]:
    """(scheme name, the public key type it needs, the arguments of ``public_key.verify`` after the data)."""
    algorithm = algos.SignedDigestAlgorithm.load(algorithm_der, strict=True)
    oid = algorithm["algorithm"].dotted
    name = _oid_name(algorithm["algorithm"])
    if name == "rsassa_pkcs1v15" or name in _RSA_WITH:
        _same_hash(_RSA_WITH.get(name, digest_alg), digest_alg)
        return "rsassa_pkcs1v15", rsa.RSAPublicKey, (padding.PKCS1v15(), hash_algorithm(digest_alg))
    if name == "rsassa_pss":
        return "rsassa_pss", rsa.RSAPublicKey, (_pss_padding(algorithm, digest_alg, allow_sha1),
                                                hash_algorithm(digest_alg))
    if name in _ECDSA_WITH or oid == _ID_EC_PUBLIC_KEY or name == "ecdsa":
        _same_hash(_ECDSA_WITH.get(name, digest_alg), digest_alg)
        return "ecdsa", ec.EllipticCurvePublicKey, (ec.ECDSA(hash_algorithm(digest_alg)),)
    if name == "ed25519":
        return "ed25519", ed25519.Ed25519PublicKey, ()
    if name == "ed448":
        return "ed448", ed448.Ed448PublicKey, ()
    raise UnsupportedAlgorithm(name, "signature algorithm")


def _pss_padding(algorithm: algos.SignedDigestAlgorithm, digest_alg: str, allow_sha1: bool) -> padding.PSS:
    params = algorithm["parameters"]
    if not isinstance(params, algos.RSASSAPSSParams):  # absent: RFC 4055 defaults, i.e. SHA-1
        params = algos.RSASSAPSSParams({})
    pss_hash = digest_name(params["hash_algorithm"], allow_sha1=allow_sha1)
    _same_hash(pss_hash, digest_alg)
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise UnsupportedAlgorithm(mgf["algorithm"].dotted, "PSS mask generation function")
    mgf_hash = digest_name(algos.DigestAlgorithm.load(mgf["parameters"].dump()), allow_sha1=allow_sha1)
    if params["trailer_field"].native not in ("trailer_field_bc", 1):
        raise UnsupportedAlgorithm(str(params["trailer_field"].native), "PSS trailer field")
    salt = params["salt_length"].native
    if not isinstance(salt, int) or salt < 0 or salt > 1024:
        raise BadSignature(f"RSA-PSS salt length {salt} is not acceptable")
    return padding.PSS(padding.MGF1(hash_algorithm(mgf_hash)), salt)


def _same_hash(from_signature: str, digest_alg: str) -> None:
    if from_signature != digest_alg:
        raise BadSignature(f"signature algorithm hash {from_signature} differs from digest algorithm {digest_alg}")


def _key_is(public_key: object, kind: type) -> None:
    if not is_a(public_key, kind):
        raise BadSignature("the signature algorithm does not match the signer's key type")


def _oid_name(oid: core.ObjectIdentifier) -> str:
    """asn1crypto's name for a known OID, otherwise the dotted form."""
    native = oid.native
    return native if isinstance(native, str) else oid.dotted
