"""Signed attributes of a SignerInfo: the ones autosmime writes, and lazy reading of received ones.

    >>> import datetime
    >>> from autosmime.smime._cms.signed_attrs import build_signed_attrs, index_attributes, capability_names
    >>> attrs = build_signed_attrs(b"\\x00" * 32, datetime.datetime(2030, 1, 2, tzinfo=datetime.timezone.utc))
    >>> capability_names(index_attributes(attrs)["1.2.840.113549.1.9.15"])
    ('aes256_gcm', 'aes128_gcm', 'aes256_cbc', 'aes192_cbc', 'aes128_cbc', 'rsaes_oaep', 'dh_single_pass_std_dh_sha256kdf')

Received attributes are only ever looked at one by one, by OID: asn1crypto's
``.native`` on the whole set fails on the Microsoft attribute
1.3.6.1.4.1.311.16.4 that every NSS (Thunderbird) signature carries.

Capability names are asn1crypto's EncryptionAlgorithmId names ("aes256_cbc",
"rsaes_oaep", ...), the ECDH schemes below, or the dotted OID when unknown.
"""

from __future__ import annotations

import datetime as _dt

from asn1crypto import algos, cms, core

from autosmime.errors import BadSignature

OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
OID_SMIME_CAPABILITIES = "1.2.840.113549.1.9.15"
OID_CMS_ALGORITHM_PROTECTION = "1.2.840.113549.1.9.52"

_ECDH_SCHEMES = {
    "1.3.133.16.840.63.0.2": "dh_single_pass_std_dh_sha1kdf",
    "1.3.132.1.11.0": "dh_single_pass_std_dh_sha224kdf",
    "1.3.132.1.11.1": "dh_single_pass_std_dh_sha256kdf",
    "1.3.132.1.11.2": "dh_single_pass_std_dh_sha384kdf",
    "1.3.132.1.11.3": "dh_single_pass_std_dh_sha512kdf",
    "1.2.840.113549.1.9.16.3.19": "dh_single_pass_std_dh_hkdf_sha256",
    "1.2.840.113549.1.9.16.3.18": "chacha20_poly1305",
}
_NAME_TO_OID = {v: k for k, v in _ECDH_SCHEMES.items()}


class _Capability(core.Sequence):
    _fields = [("capability_id", core.ObjectIdentifier), ("parameters", core.Any, {"optional": True})]


class _Capabilities(core.SequenceOf):
    _child_spec = _Capability


class _Attribute(core.Sequence):
    """An attribute with values kept as raw DER, so nothing is re-interpreted on the way out."""

    _fields = [("type", core.ObjectIdentifier), ("values", core.SetOf, {"spec": core.Any})]


def _our_capabilities() -> _Capabilities:
    """What autosmime decrypts, best first (RFC 8551 §2.5.2 order of preference)."""
    oaep = algos.RSAESOAEPParams({
        "hash_algorithm": {"algorithm": "sha256"},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
    })
    entries: list[tuple[str, core.Asn1Value | None]] = [
        (algos.EncryptionAlgorithmId("aes256_gcm").dotted, None),
        (algos.EncryptionAlgorithmId("aes128_gcm").dotted, None),
        (algos.EncryptionAlgorithmId("aes256_cbc").dotted, None),
        (algos.EncryptionAlgorithmId("aes192_cbc").dotted, None),
        (algos.EncryptionAlgorithmId("aes128_cbc").dotted, None),
        (algos.EncryptionAlgorithmId("rsaes_oaep").dotted, oaep),
        # RFC 5753 §7.2: an ECDH capability carries its key-wrap algorithm as parameters.
        (_NAME_TO_OID["dh_single_pass_std_dh_sha256kdf"], _algorithm_id("aes256_wrap")),
    ]
    caps = []
    for oid, params in entries:
        cap = {"capability_id": oid}
        if params is not None:
            cap["parameters"] = core.Any.load(params.dump())
        caps.append(_Capability(cap))
    return _Capabilities(caps)


def _algorithm_id(name: str) -> core.Sequence:
    # The AES key-wrap identifiers take absent parameters (RFC 3565 §2.3.2).
    oid = algos.EncryptionAlgorithmId(name).dump()
    return core.Sequence.load(b"\x30" + bytes([len(oid)]) + oid)


def build_signed_attrs(message_digest: bytes, signing_time: _dt.datetime) -> cms.CMSAttributes:
    """contentType=data, signingTime, messageDigest, SMIMECapabilities as a DER SET OF."""
    when = signing_time.astimezone(_dt.timezone.utc).replace(microsecond=0)
    # RFC 5652 §11.3: UTCTime through 2049, GeneralizedTime from 2050 on.
    time_value = (core.UTCTime(when) if when.year < 2050 else core.GeneralizedTime(when))
    attrs = [
        _attribute(OID_CONTENT_TYPE, cms.ContentType("data")),
        _attribute(OID_SIGNING_TIME, time_value),
        _attribute(OID_MESSAGE_DIGEST, core.OctetString(message_digest)),
        _attribute(OID_SMIME_CAPABILITIES, _our_capabilities()),
    ]
    # DER SET OF: elements sorted by their encodings (X.690 §11.6).
    body = b"".join(sorted(attrs))
    return cms.CMSAttributes.load(b"\x31" + _der_length(len(body)) + body)


def _attribute(oid: str, value: core.Asn1Value) -> bytes:
    return _Attribute({"type": oid, "values": [core.Any.load(value.dump())]}).dump()


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def index_attributes(attrs: cms.CMSAttributes) -> dict[str, cms.CMSAttribute]:
    """Attributes by dotted OID; a repeated attribute type is a bad signature (RFC 5652 §5.3)."""
    found: dict[str, cms.CMSAttribute] = {}
    for attr in attrs:
        oid = attr["type"].dotted
        if oid in found:
            raise BadSignature(f"the signed attribute {oid} appears twice")
        found[oid] = attr
    return found


def single_value(attr: cms.CMSAttribute, label: str):
    values = attr["values"]
    if len(values) != 1:
        raise BadSignature(f"the {label} attribute must have exactly one value")
    return values[0]


def capability_names(attr: cms.CMSAttribute) -> tuple[str, ...]:
    """The advertised capabilities in the signer's order; advisory, so unreadable ones yield ()."""
    try:
        names: list[str] = []
        for value in attr["values"]:
            for cap in _Capabilities.load(value.dump()):
                names.append(_capability_name(cap["capability_id"].dotted))
        return tuple(names)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
        return ()


def _capability_name(oid: str) -> str:
    if oid in _ECDH_SCHEMES:
        return _ECDH_SCHEMES[oid]
    name = algos.EncryptionAlgorithmId.map(oid)
    return name if isinstance(name, str) and name != oid else oid
