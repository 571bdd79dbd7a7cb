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
from functools import lru_cache

from asn1crypto import algos, cms, core
from asn1crypto import x509 as _asn1_x509

from autosmime.errors import BadSignature
from autosmime.smime._cms import der as _der

OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
OID_SMIME_CAPABILITIES = "1.2.840.113549.1.9.15"
OID_CMS_ALGORITHM_PROTECTION = "1.2.840.113549.1.9.52"
OID_SECURE_HEADERS = "1.2.840.113549.1.9.16.2.55"  # RFC 7508 SecureHeaderFields
# The attributes whose values verification reads; others (Microsoft's 1.3.6.1.4.1.311.16.4 from
# every NSS signer) are kept by type only, so their values need not parse.
READ_ATTRIBUTES = frozenset({OID_CONTENT_TYPE, OID_MESSAGE_DIGEST, OID_SIGNING_TIME, OID_SMIME_CAPABILITIES,
                             OID_CMS_ALGORITHM_PROTECTION, OID_SECURE_HEADERS})
READ_ATTRIBUTE_TLVS = frozenset(_der.oid(dotted) for dotted in READ_ATTRIBUTES)

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
_x509_time = _asn1_x509.Time


class _Capability(core.Sequence):
    _fields = [("capability_id", core.ObjectIdentifier), ("parameters", core.Any, {"optional": True})]


class _Capabilities(core.SequenceOf):
    _child_spec = _Capability


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
    return cms.CMSAttributes.load(signed_attrs_der(message_digest, signing_time))


def signed_attrs_der(message_digest: bytes, signing_time: _dt.datetime) -> bytes:
    """The DER SET OF that :func:`build_signed_attrs` parses: the bytes that get signed."""
    content_type, capabilities = _fixed_attributes()
    digest = _OID_MESSAGE_DIGEST_DER + _der.tlv(_der.SET, _der.tlv(_der.OCTET_STRING, message_digest))
    attrs = [content_type, capabilities, _der.tlv(_der.SEQUENCE, _time_attribute(signing_time)),
             _der.tlv(_der.SEQUENCE, digest)]
    # DER SET OF: elements sorted by their encodings (X.690 §11.6).
    body = b"".join(sorted(attrs))
    return _der.tlv(_der.SET, body)


@lru_cache(maxsize=1)
def _fixed_attributes() -> tuple[bytes, bytes]:
    """The content-type and capabilities attributes, the same in every signature: encoded once."""
    return _der.tlv(_der.SEQUENCE, _CONTENT_TYPE_DATA), _der.tlv(_der.SEQUENCE, _capabilities_attribute())


@lru_cache(maxsize=4)  # whole seconds: every message signed within the same second shares it
def _time_attribute(signing_time: _dt.datetime) -> bytes:
    """The signingTime attribute's contents (OID and value set), hand-encoded."""
    when = signing_time.astimezone(_dt.UTC)
    # RFC 5652 §11.3: UTCTime through 2049, GeneralizedTime from 2050 on; whole seconds, "Z".
    if when.year < 2050:
        value = _der.tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    else:
        value = _der.tlv(0x18, f"{when.year:04d}{when.strftime('%m%d%H%M%S')}Z".encode("ascii"))
    return _OID_SIGNING_TIME_DER + _der.tlv(_der.SET, value)


@lru_cache(maxsize=1)
def _capabilities_attribute() -> bytes:
    # The same for every signature: built once per process, with asn1crypto.
    return _der.oid(OID_SMIME_CAPABILITIES) + _der.tlv(_der.SET, _our_capabilities().dump())


_OID_MESSAGE_DIGEST_DER = _der.oid(OID_MESSAGE_DIGEST)
_OID_SIGNING_TIME_DER = _der.oid(OID_SIGNING_TIME)
_CONTENT_TYPE_DATA = _der.oid(OID_CONTENT_TYPE) + _der.tlv(_der.SET, _der.oid("1.2.840.113549.1.7.1"))


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
        values = tuple(value.dump() for value in attr["values"])
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
        return ()
    return capability_names_der(values)


@lru_cache(maxsize=256)  # a pure function of the bytes, which repeat with every mail of a sender
def capability_names_der(values: tuple[bytes, ...]) -> tuple[str, ...]:
    """:func:`capability_names` of the attribute's value TLVs as received."""
    try:
        names: list[str] = []
        for value in values:
            for cap in _Capabilities.load(value):
                names.append(_capability_name(cap["capability_id"].dotted))
        return tuple(names)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
        return ()


# -- received attributes as raw TLVs (autosmime.smime._cms.signed_walk) ------------------


def index_attribute_values(attributes) -> dict[str, tuple[bytes, ...]]:
    """(type OID TLV, value TLVs) pairs by dotted OID; a repeated type is a bad signature (RFC 5652 5.3)."""
    found: dict[str, tuple[bytes, ...]] = {}
    for oid_tlv, values in attributes:
        oid = _dotted(oid_tlv)
        if oid in found:
            raise BadSignature(f"the signed attribute {oid} appears twice")
        found[oid] = values
    return found


@lru_cache(maxsize=256)
def _dotted(oid_tlv: bytes) -> str:
    return core.ObjectIdentifier.load(oid_tlv, strict=True).dotted


def single(values: tuple[bytes, ...], label: str) -> bytes:
    if len(values) != 1:
        raise BadSignature(f"the {label} attribute must have exactly one value")
    return values[0]


def octet_string(tlv: bytes) -> bytes:
    """An OCTET STRING value; ValueError when it is not one."""
    tag, start, end = _der.read_tlv(tlv, 0, len(tlv)) if tlv[:1] == b"\x04" else (None, 0, 0)
    if tag == _der.OCTET_STRING and end == len(tlv):
        return tlv[start:end]
    value = core.OctetString.load(tlv, strict=True).native  # BER chunked strings, or a ValueError
    if not isinstance(value, bytes):
        raise ValueError("not an OCTET STRING")
    return value


@lru_cache(maxsize=256)  # a pure function of a few bytes; the datetime it returns is immutable
def signing_time_value(tlv: bytes):
    """A Time value (UTCTime or GeneralizedTime) as asn1crypto reads it: an aware datetime."""
    # UTCTime YYMMDDHHMMSSZ, the only form RFC 5652 11.3 allows before 2050, read by hand.
    if len(tlv) == 15 and tlv[:2] == b"\x17\x0d" and tlv[14:] == b"Z" and tlv[2:14].isdigit():
        yy, mo, dd, hh, mi, ss = (int(tlv[i:i + 2]) for i in range(2, 14, 2))
        try:
            return _dt.datetime(2000 + yy if yy < 50 else 1900 + yy, mo, dd, hh, mi, ss, tzinfo=_dt.UTC)
        except ValueError:
            pass  # out-of-range fields: asn1crypto gives the verdict
    return _x509_time.load(tlv, strict=True).native


def _capability_name(oid: str) -> str:
    if oid in _ECDH_SCHEMES:
        return _ECDH_SCHEMES[oid]
    name = algos.EncryptionAlgorithmId.map(oid)
    return name if isinstance(name, str) and name != oid else oid


# -- RFC 7508: header fields signed as an attribute ------------------------------------------

class _HeaderField(core.Sequence):
    _fields = [("name", core.VisibleString), ("value", core.UTF8String),
               ("status", core.Integer, {"default": 0})]  # duplicated(0), deleted(1), modified(2)


class _HeaderFields(core.SequenceOf):
    _child_spec = _HeaderField


class _Canon(core.Enumerated):
    _map = {0: "simple", 1: "relaxed"}


class _SecureHeaderFields(core.Set):
    _fields = [("canon_algorithm", _Canon), ("fields", _HeaderFields)]

SECURE_HEADER_STATUS = {0: "duplicated", 1: "deleted", 2: "modified"}


@lru_cache(maxsize=64)
def secure_header_fields(value: bytes) -> tuple[tuple[str, str, str], ...]:
    """(name, value, status) of each header field an RFC 7508 SecureHeaderFields attribute signs.

    Raises BadSignature when the attribute cannot be read: it is signed, so it is not advisory.
    """
    try:
        parsed = _SecureHeaderFields.load(value, strict=True)
        return tuple((f["name"].native, f["value"].native, SECURE_HEADER_STATUS.get(f["status"].native, "unknown"))
                     for f in parsed["fields"])
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
        raise BadSignature("the secure header fields attribute (RFC 7508) cannot be read") from None
