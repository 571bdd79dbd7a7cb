"""CMS SignedData (RFC 5652 §5): sign exact bytes, and verify the signatures of others.

    >>> from autosmime.pki.profiles import new_key, make_ca, make_mailbox_cert
    >>> from autosmime.smime._cms.signed import sign, verify
    >>> ca_key, ca_cert = make_ca("Doc CA", new_key("ec"))
    >>> key = new_key("ec")
    >>> cert = make_mailbox_cert("alice@example.test", key.public_key(), ca_key, ca_cert)
    >>> der = sign(b"hello\\r\\n", key, cert, [ca_cert])
    >>> result = verify(der, b"hello\\r\\n")
    >>> result.signers[0].signature_algorithm, result.signers[0].capabilities[0]
    ('ecdsa', 'aes256_gcm')

:func:`verify` is the mathematics only: each SignerInfo must match the content
and its certificate's key. Whether that certificate is trusted is
:func:`autosmime.pki.validate.validate_signer`'s question.
"""

from __future__ import annotations

import datetime as _dt
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import exceptions as _cryptography_exceptions
from cryptography import x509

from autosmime.errors import AutosmimeError, BadDigest, BadSignature, MalformedMessage, NoKey, UnsupportedAlgorithm
from autosmime.pki.certcache import cert_der, per_certificate
from autosmime.pki.certs import spki
from autosmime.smime._cms import der as _der
from autosmime.smime._cms import signed_algs as _algs
from autosmime.smime._cms.certinfo import issuer_and_serial, spki_der
from autosmime.smime._cms.signed_attrs import (
    OID_CMS_ALGORITHM_PROTECTION,
    OID_CONTENT_TYPE,
    OID_MESSAGE_DIGEST,
    OID_SECURE_HEADERS,
    OID_SIGNING_TIME,
    OID_SMIME_CAPABILITIES,
    READ_ATTRIBUTES,
    capability_names_der,
    index_attribute_values,
    octet_string,
    secure_header_fields,
    signed_attrs_der,
    signing_time_value,
    single,
)
from autosmime.smime._cms.signed_walk import Walked, WalkedSigner, walk_signed

__all__ = ["SignedResult", "SignerFailure", "SignerResult", "sign", "verify", "verify_each"]


@dataclass(slots=True)  # built per message: frozen construction costs 4x
class SignerResult:
    cert: x509.Certificate
    signing_time: _dt.datetime | None
    digest_algorithm: str
    signature_algorithm: str
    capabilities: tuple[str, ...]
    # RFC 7508: (name, value, status) of the header fields signed as an attribute, if any.
    secure_headers: tuple[tuple[str, str, str], ...] = ()


@dataclass(slots=True)
class SignerFailure:
    """A SignerInfo whose signature did not verify; ``cert`` when it could be found."""

    cert: x509.Certificate | None
    error: AutosmimeError
    digest_algorithm: str = ""  # as the SignerInfo names it, when readable


@dataclass(slots=True)  # built per message: frozen construction costs 4x
class SignedResult:
    content: bytes | memoryview  # a view of the caller's message for detached signatures: no copy
    content_type: str
    signers: tuple[SignerResult, ...]
    certificates: tuple[x509.Certificate, ...]
    # From verify_each only: the SignerInfos that failed, each at its index among all of them.
    failures: tuple[tuple[int, SignerFailure], ...] = ()


# What a hostile or broken DER can make asn1crypto and cryptography raise.
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
                 UnicodeError, RecursionError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType,
                 x509.InvalidVersion)


def sign(content, key, cert: x509.Certificate, chain: Sequence[x509.Certificate] = (), *,
         detached: bool = True, pss: bool = False) -> bytes:
    """DER ContentInfo(SignedData) over exactly `content` (bytes, or a list of bytes-like chunks)."""
    return _sign_at(content, key, cert, chain, detached=detached, pss=pss,
                    now=_dt.datetime.now(_dt.UTC))


def _sign_at(content, key, cert: x509.Certificate, chain: Sequence[x509.Certificate], *,
             detached: bool, pss: bool, now: _dt.datetime) -> bytes:
    digest_alg = _algs.digest_for_key(key)
    t = _template(cert_der(cert), tuple(map(cert_der, chain)), _algs.key_kind(key), digest_alg, pss)
    # Not cached per key: a cache would keep private keys alive after their owner dropped them.
    if spki(key) != t.spki:
        raise NoKey("the private key does not belong to the signing certificate")
    chunks = [content] if isinstance(content, (bytes, bytearray, memoryview)) else list(content)
    attrs = signed_attrs_der(_algs.digest_chunks(digest_alg, chunks), now.replace(microsecond=0))
    # The signature covers the DER SET OF exactly as emitted; the [0] IMPLICIT field below
    # is the same bytes with only the tag octet changed (RFC 5652 5.4).
    signature = _algs.sign_bytes(key, digest_alg, attrs, pss=pss)
    signer = _der.tlv(_der.SEQUENCE, t.signer_head, b"\xa0" + attrs[1:], t.signature_alg,
                      _der.tlv(_der.OCTET_STRING, signature))
    encap_body = _DATA_OID
    content_len = sum(len(c) for c in chunks)
    if not detached:
        octets = _der.header(_der.OCTET_STRING, content_len)
        encap_body += _der.header(0xA0, len(octets) + content_len) + octets
    encap_len = len(encap_body) + (0 if detached else content_len)
    head = t.version_and_digests + _der.header(_der.SEQUENCE, encap_len) + encap_body
    tail = t.certificates + _der.tlv(_der.SET, signer)
    signed_len = len(head) + len(tail) + (0 if detached else content_len)
    outer = _der.header(_der.SEQUENCE, signed_len)
    explicit = _der.header(0xA0, len(outer) + signed_len)
    info_len = len(_SIGNED_DATA_OID) + len(explicit) + len(outer) + signed_len
    parts = [_der.header(_der.SEQUENCE, info_len), _SIGNED_DATA_OID, explicit, outer, head]
    if not detached:
        parts.extend(chunks)
    parts.append(tail)
    return b"".join(parts)


@dataclass(frozen=True)
class _Template:
    """The parts of a SignedData that depend only on the signer's certificates and algorithms."""

    spki: bytes  # the certificate's public key, to check the private key against
    version_and_digests: bytes  # SignedData version and its digestAlgorithms SET
    signer_head: bytes  # SignerInfo version, sid and digestAlgorithm
    signature_alg: bytes
    certificates: bytes  # the [0] IMPLICIT CertificateSet


# One entry per identity in use: a user signs with one or two. Keyed by the certificates' DER
# (cert_der hands out the same bytes object each time, whose hash is computed once): hashing a
# Certificate hashes its whole DER on every call.
@lru_cache(maxsize=32)
def _template(cert_der_: bytes, chain: tuple[bytes, ...], kind: str, digest_alg: str, pss: bool) -> _Template:
    cert = x509.load_der_x509_certificate(cert_der_)
    digest_id = _digest_algorithm_der(digest_alg)
    # SET OF (and the [0] IMPLICIT CertificateSet): each certificate once, ordered by encoding (DER).
    certs = sorted({cert_der_, *chain})
    return _Template(spki=spki_der(cert),
                     version_and_digests=b"\x02\x01\x01" + _der.tlv(_der.SET, digest_id),
                     signer_head=b"\x02\x01\x01" + issuer_and_serial(cert) + digest_id,
                     signature_alg=_signature_algorithm_der(kind, digest_alg, pss),
                     certificates=_der.tlv(0xA0, *certs))


_DATA_OID = _der.oid("1.2.840.113549.1.7.1")
_SIGNED_DATA_OID = _der.oid("1.2.840.113549.1.7.2")


@lru_cache(maxsize=32)
def _signature_algorithm_der(kind: str, digest_alg: str, pss: bool) -> bytes:
    return _algs.signature_algorithm_for_kind(kind, digest_alg, pss=pss).dump()


@lru_cache(maxsize=32)
def _digest_algorithm_der(name: str) -> bytes:
    return _digest_algorithm_id(name).dump()


def verify(der: bytes, detached_content: bytes | memoryview | None = None,
           extra_certs: Sequence[x509.Certificate] = (), *, allow_sha1: bool = False) -> SignedResult:
    """Math only: every SignerInfo must verify. No path validation here."""
    result = verify_each(der, detached_content, extra_certs, allow_sha1=allow_sha1)
    if result.failures:
        raise result.failures[0][1].error
    return result


def verify_each(der: bytes, detached_content: bytes | memoryview | None = None,
                extra_certs: Sequence[x509.Certificate] = (), *, allow_sha1: bool = False) -> SignedResult:
    """:func:`verify`, except that a SignerInfo that fails is listed in ``failures`` instead of
    failing the whole: which signer matters is decided by the caller (the one From names).

    Failures of the whole structure (unparsable, detached without content) still raise.
    """
    try:
        return _verify(bytes(der), detached_content, extra_certs, allow_sha1)
    except AutosmimeError:
        raise
    except _cryptography_exceptions.UnsupportedAlgorithm as e:
        raise UnsupportedAlgorithm(str(e) or "unknown", "key or algorithm") from None
    except _PARSE_ERRORS as e:
        raise MalformedMessage(f"the CMS signature cannot be parsed ({type(e).__name__})") from None


def _verify(der: bytes, detached_content: bytes | memoryview | None, extra_certs: Sequence[x509.Certificate],
            allow_sha1: bool) -> SignedResult:
    walked = walk_signed(der)
    if walked is None:  # BER, chunked strings, or another valid shape: the general parse
        walked = _walk_asn1(der)
    content_type = _oid_dotted(walked.content_type)
    if walked.content is None:
        if detached_content is None:
            raise MalformedMessage("detached signature but no signed content was supplied")
        # A memoryview (of the received message) is kept as it is: hashing needs no copy.
        content = detached_content if isinstance(detached_content, memoryview) else bytes(detached_content)
    else:
        content = walked.content
        if detached_content is not None and not hmac.compare_digest(content, bytes(detached_content)):
            raise BadDigest("the supplied content differs from the content inside the signature")

    carried = [c for c in map(_load_certificate, walked.certificates) if c is not None]
    pool = [*carried, *extra_certs]
    if not walked.signers:
        raise MalformedMessage("the signature has no signers")
    signers: list[SignerResult] = []
    failures: list[tuple[int, SignerFailure]] = []
    for i, si in enumerate(walked.signers):
        try:
            signers.append(_verify_signer(si, content_type, content, pool, allow_sha1))
        except (AutosmimeError, *_SIGNER_ERRORS) as e:
            failures.append((i, SignerFailure(_signer_cert_or_none(si, pool), _as_autosmime(e), _digest_claim(si))))
    return SignedResult(content=content, content_type=_content_type_name(walked.content_type),
                        signers=tuple(signers), certificates=tuple(carried), failures=tuple(failures))


# What one SignerInfo's own fields can make the libraries raise; the whole structure parsed already.
_SIGNER_ERRORS = (_cryptography_exceptions.UnsupportedAlgorithm, *_PARSE_ERRORS)


def _as_autosmime(e: Exception) -> AutosmimeError:
    if isinstance(e, AutosmimeError):
        return e
    if isinstance(e, _cryptography_exceptions.UnsupportedAlgorithm):
        return UnsupportedAlgorithm(str(e) or "unknown", "key or algorithm")
    return MalformedMessage(f"a SignerInfo cannot be parsed ({type(e).__name__})")


def _digest_claim(si: WalkedSigner) -> str:
    """The digest algorithm a failed SignerInfo names, for the report only ("" when unreadable)."""
    try:
        return _digest_name(si.digest_algorithm, True)
    except (AutosmimeError, *_PARSE_ERRORS):
        return ""


def _signer_cert_or_none(si: WalkedSigner, pool: Sequence[x509.Certificate]) -> x509.Certificate | None:
    try:
        return _find_signer(si, pool)
    except (AutosmimeError, *_PARSE_ERRORS):
        return None


def _walk_asn1(der: bytes) -> Walked:
    """The general parse (BER included) into the same shape :func:`walk_signed` gives."""
    info = cms.ContentInfo.load(der, strict=True)
    if info["content_type"].dotted != "1.2.840.113549.1.7.2":
        raise MalformedMessage(f"not a CMS SignedData but {info['content_type'].native}")
    signed_data = info["content"]
    # eContent is an OCTET STRING whatever eContentType says (RFC 5652 5.2); asn1crypto's own
    # spec would parse it as the named type, or hand back an Any for an unknown one.
    encap = _EncapsulatedContentInfo.load(signed_data["encap_content_info"].dump(), strict=True)
    econtent = encap["content"]
    content = None if isinstance(econtent, core.Void) else econtent.native
    certificates: list[bytes] = []
    if not isinstance(signed_data["certificates"], core.Void):
        # Attribute and "other" certificates never identify a signer.
        certificates = [c.chosen.dump() for c in signed_data["certificates"] if c.name == "certificate"]
    signers = []
    for si in signed_data["signer_infos"]:
        sid = si["sid"]
        issuer = serial = ski = None
        if sid.name == "issuer_and_serial_number":
            issuer, serial = sid.chosen["issuer"].dump(), sid.chosen["serial_number"].native
        else:
            ski = sid.chosen.native
        raw_attrs = si["signed_attrs"]
        signed_attrs = None
        attributes: tuple[tuple[Any, tuple[Any, ...]], ...] = ()
        if not isinstance(raw_attrs, core.Void):
            signed_attrs = b"\x31" + raw_attrs.dump()[1:]
            attributes = tuple((a["type"].dump(), tuple(v.dump() for v in a["values"])
                                if a["type"].dotted in READ_ATTRIBUTES else ()) for a in raw_attrs)
        signers.append(WalkedSigner(issuer, serial, ski, si["digest_algorithm"].dump(), signed_attrs, attributes,
                                    si["signature_algorithm"].dump(), si["signature"].native))
    return Walked(encap["content_type"].dump(), content, tuple(certificates), tuple(signers))


class _EncapsulatedContentInfo(core.Sequence):
    _fields = [("content_type", cms.ContentType),
               ("content", core.OctetString, {"explicit": 0, "optional": True})]


def _verify_signer(si: WalkedSigner, content_type: str, content: bytes | memoryview,
                   pool: Sequence[x509.Certificate], allow_sha1: bool) -> SignerResult:
    digest_alg = _digest_name(si.digest_algorithm, allow_sha1)
    cert = _find_signer(si, pool)
    signing_time = None
    capabilities: tuple[str, ...] = ()
    secure_headers: tuple[tuple[str, str, str], ...] = ()
    if si.signed_attrs is None:
        if content_type != "1.2.840.113549.1.7.1":
            raise BadSignature("signed attributes are required for content other than data")
        signed_bytes = content
    else:
        signed_bytes = si.signed_attrs
        attrs = index_attribute_values(si.attributes)
        if OID_CONTENT_TYPE not in attrs:
            raise BadSignature("the content-type attribute is missing")
        if OID_MESSAGE_DIGEST not in attrs:
            raise BadSignature("the message-digest attribute is missing")
        if _oid_dotted(single(attrs[OID_CONTENT_TYPE], "content-type")) != content_type:
            raise BadSignature("the content-type attribute differs from the signed content's type")
        expected = octet_string(single(attrs[OID_MESSAGE_DIGEST], "message-digest"))
        if not hmac.compare_digest(expected, _algs.digest(digest_alg, content)):
            raise BadDigest("message-digest mismatch: the content was changed after signing")
        if OID_CMS_ALGORITHM_PROTECTION in attrs:
            _check_algorithm_protection(single(attrs[OID_CMS_ALGORITHM_PROTECTION], "CMSAlgorithmProtection"), si)
        if OID_SIGNING_TIME in attrs:
            signing_time = signing_time_value(single(attrs[OID_SIGNING_TIME], "signing-time"))
            if not isinstance(signing_time, _dt.datetime):
                raise MalformedMessage("the signing-time attribute is not a time")
            signing_time = signing_time.astimezone(_dt.UTC)
        if OID_SMIME_CAPABILITIES in attrs:
            capabilities = capability_names_der(attrs[OID_SMIME_CAPABILITIES])
        if OID_SECURE_HEADERS in attrs:
            secure_headers = secure_header_fields(single(attrs[OID_SECURE_HEADERS], "secure header fields"))
    scheme = _algs.verify_signature(cert.public_key(), si.signature_algorithm, digest_alg,
                                    si.signature, signed_bytes, allow_sha1=allow_sha1)
    return SignerResult(cert=cert, signing_time=signing_time, digest_algorithm=digest_alg,
                        signature_algorithm=scheme, capabilities=capabilities, secure_headers=secure_headers)


def _check_algorithm_protection(value: bytes, si: WalkedSigner) -> None:
    """RFC 6211: the signed copy of the algorithms must name the ones actually used."""
    protection = cms.CMSAlgorithmProtection.load(value, strict=True)
    if protection["digest_algorithm"]["algorithm"].dotted != _algorithm_oid(si.digest_algorithm):
        raise BadSignature("CMSAlgorithmProtection names a different digest algorithm")
    protected = protection["signature_algorithm"]
    if isinstance(protected, core.Void) or (
            protected["algorithm"].dotted != _algorithm_oid(si.signature_algorithm)):
        raise BadSignature("CMSAlgorithmProtection names a different signature algorithm")


# Decodings of small TLVs that repeat from message to message (algorithm identifiers, OIDs,
# certificates): each is a pure function of the bytes, so a bounded cache keyed by them is exact.
_CACHE = 256


@lru_cache(maxsize=_CACHE)
def _oid_dotted(tlv: bytes) -> str:
    return core.ObjectIdentifier.load(tlv, strict=True).dotted


@lru_cache(maxsize=_CACHE)
def _content_type_name(tlv: bytes) -> str:
    oid = cms.ContentType.load(tlv, strict=True)
    return oid.native if isinstance(oid.native, str) else oid.dotted


@lru_cache(maxsize=_CACHE)
def _digest_name(tlv: bytes, allow_sha1: bool) -> str:
    return _algs.digest_name(algos.DigestAlgorithm.load(tlv, strict=True), allow_sha1=allow_sha1)


@lru_cache(maxsize=_CACHE)
def _algorithm_oid(tlv: bytes) -> str:
    return algos.DigestAlgorithm.load(tlv, strict=True)["algorithm"].dotted


@lru_cache(maxsize=_CACHE)
def _load_certificate(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):
        return None  # an unreadable extra certificate is not the signature's problem


@per_certificate()
def _issuer_der(cert: x509.Certificate) -> bytes:
    return cert.issuer.public_bytes()


def _find_signer(si: WalkedSigner, pool: Sequence[x509.Certificate]) -> x509.Certificate:
    if si.sid_issuer is not None:
        for cert in pool:
            if cert.serial_number != si.sid_serial:
                continue
            # Equal encodings are equal names; only otherwise the RFC 5280 comparison (slow).
            ours = _issuer_der(cert)
            if ours == si.sid_issuer or asn1_x509.Name.load(ours) == asn1_x509.Name.load(si.sid_issuer, strict=True):
                return cert
    else:
        for cert in pool:
            if _key_identifier(cert) == si.sid_ski:
                return cert
    raise BadSignature("signer certificate not found")


@per_certificate()
def _key_identifier(cert: x509.Certificate) -> bytes:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound, x509.DuplicateExtension, x509.UnsupportedGeneralNameType, ValueError):
        try:
            return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
        except (ValueError, TypeError, _cryptography_exceptions.UnsupportedAlgorithm):
            return b""


def _digest_algorithm_id(name: str) -> cms.DigestAlgorithm:
    # RFC 5754 §2: SHA-2 parameters absent, as OpenSSL writes them (asn1crypto would add NULL).
    oid = algos.DigestAlgorithmId(name).dump()
    return cms.DigestAlgorithm.load(b"\x30" + bytes([len(oid)]) + oid)
