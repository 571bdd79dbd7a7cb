"""ASN.1 pieces of CMS encryption that asn1crypto lacks, and the OIDs we dispatch on.

    >>> from autosmime.smime._cms.enveloped_asn1 import GcmParameters
    >>> GcmParameters({"aes_nonce": b"\\0" * 12, "aes_icvlen": 16}).dump().hex()
    '3011040c000000000000000000000000020110'
"""

from __future__ import annotations

from asn1crypto import core

# RFC 5753 / SEC 1 key agreement schemes: OID -> (KDF hash, KDF kind).
# The cofactor variants compute the same secret on the prime curves we accept
# (cofactor 1), so they are read too.
X963_SCHEMES: dict[str, str] = {
    "1.3.133.16.840.63.0.2": "sha1",  # dhSinglePass-stdDH-sha1kdf-scheme
    "1.3.132.1.11.0": "sha224",
    "1.3.132.1.11.1": "sha256",
    "1.3.132.1.11.2": "sha384",
    "1.3.132.1.11.3": "sha512",
    "1.3.133.16.840.63.0.3": "sha1",  # dhSinglePass-cofactorDH-sha1kdf-scheme
    "1.3.132.1.14.0": "sha224",
    "1.3.132.1.14.1": "sha256",
    "1.3.132.1.14.2": "sha384",
    "1.3.132.1.14.3": "sha512",
}
# RFC 8418 dhSinglePass-stdDH-hkdf-*-scheme.
HKDF_SCHEMES: dict[str, str] = {
    "1.2.840.113549.1.9.16.3.19": "sha256",
    "1.2.840.113549.1.9.16.3.20": "sha384",
    "1.2.840.113549.1.9.16.3.21": "sha512",
}
STD_DH_SHA256KDF = "1.3.132.1.11.1"
STD_DH_SHA384KDF = "1.3.132.1.11.2"

CHACHA20_POLY1305 = "1.2.840.113549.1.9.16.3.18"  # id-alg-AEADChaCha20Poly1305, RFC 8103
ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
ID_X25519 = "1.3.101.110"


class GcmParameters(core.Sequence):
    """RFC 5084 GCMParameters; aes-ICVlen DEFAULT 12, but OpenSSL insists on seeing it."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"optional": True}),
    ]


class EccCmsSharedInfo(core.Sequence):
    """RFC 5753 ECC-CMS-SharedInfo: the KDF's SharedInfo / HKDF's info."""

    _fields = [
        ("key_info", core.Any),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


class OriginatorPublicKey(core.Sequence):
    """RFC 5652 OriginatorPublicKey, read without asn1crypto's per-algorithm key parsing."""

    _fields = [
        ("algorithm", core.Any),
        ("public_key", core.BitString),
    ]


class AlgorithmIdentifier(core.Sequence):
    """An AlgorithmIdentifier whose parameters we look at ourselves."""

    _fields = [
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]
