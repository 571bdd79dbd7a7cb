"""A strict hand walk of DER SignedData: the fields verification needs, as raw TLVs.

    >>> from autosmime.pki.profiles import make_ca
    >>> from autosmime.smime._cms.signed import sign
    >>> from autosmime.smime._cms.signed_walk import walk_signed
    >>> ca_key, ca = make_ca("Doc CA")
    >>> walked = walk_signed(sign(b"hi\\r\\n", ca_key, ca))
    >>> walked.content is None, len(walked.certificates), len(walked.signers[0].attributes)
    (True, 1, 4)

asn1crypto builds a Python object per TLV and decodes every OID it is asked
about; verifying one signature that way cost ~1 ms. Verification only needs a
dozen values, and SignedData as written by autosmime, OpenSSL, NSS, Outlook
and gpgsm in DER is one fixed shape, so this module reads exactly those
values with :func:`autosmime.smime._cms.der.read_tlv`: definite lengths that
fit their container, exact ends, the expected tags. Anything else (BER
indefinite lengths, chunked strings, unexpected tags) gives None, and
:mod:`autosmime.smime._cms.signed` takes its general asn1crypto parse, which
produces the same :class:`Walked` shape: every check is then made once, on
the same values, whichever way they were read.

The walk itself is compiled when the C extension built (``walk_signed`` in
``autosmime/smime/_speedups.c``): about 7 us of a 10 KB decrypt+verify in
Python, one call in C. :func:`py_walk_signed` is its twin, and
tests/smime/test_perf2_walks.py holds the two to the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from autosmime.smime._cms import der as _der
from autosmime.smime._cms.signed_attrs import READ_ATTRIBUTE_TLVS

try:
    from autosmime.smime._speedups import walk_signed as _c_walk_signed
except ImportError:  # the C extension did not build: the same walk in Python
    _c_walk_signed = None

__all__ = ["Walked", "WalkedSigner", "py_walk_signed", "walk_signed"]

_SIGNED_DATA = _der.oid("1.2.840.113549.1.7.2")
# CertificateChoices besides a certificate: [0] extended, [1]/[2] attribute, [3] other.
# They never identify a signer, so they are skipped; any other tag is malformed.
_OTHER_CERTIFICATE_CHOICES = {0xA0, 0xA1, 0xA2, 0xA3}


@dataclass(slots=True)  # built per message: frozen construction costs 4x
class WalkedSigner:
    """One SignerInfo; every field a raw TLV (or its contents) as received."""

    sid_issuer: bytes | None  # issuerAndSerialNumber: the issuer Name TLV ...
    sid_serial: int | None  # ... and the serial
    sid_ski: bytes | None  # subjectKeyIdentifier
    digest_algorithm: bytes  # AlgorithmIdentifier TLV
    signed_attrs: bytes | None  # the DER SET OF the signature covers (tag already 0x31), or None
    attributes: tuple[tuple[bytes, tuple[bytes, ...]], ...]  # (type OID TLV, value TLVs) in order
    signature_algorithm: bytes  # AlgorithmIdentifier TLV
    signature: bytes


@dataclass(slots=True)  # built per message: frozen construction costs 4x
class Walked:
    content_type: bytes  # eContentType OID TLV
    content: bytes | None  # None when detached
    certificates: tuple[bytes, ...]  # the DER of each X.509 certificate carried (other choices skipped)
    signers: tuple[WalkedSigner, ...]


def walk_signed(der) -> Walked | None:
    """The SignedData in ``der`` read by hand, or None when it is not of the fixed DER shape."""
    if _c_walk_signed is None:
        return py_walk_signed(der)
    raw = _c_walk_signed(der, READ_ATTRIBUTE_TLVS)
    if raw is None:
        return None
    content_type, content, certificates, signers = raw
    return Walked(content_type, content, certificates, tuple(
        WalkedSigner(issuer, None if serial is None else int.from_bytes(serial, "big", signed=True), *rest)
        for issuer, serial, *rest in signers))


def py_walk_signed(der) -> Walked | None:
    """:func:`walk_signed` in Python: the twin of the compiled walk."""
    try:
        return _walk(der)
    except ValueError:  # read_tlv: not strict definite-length DER
        return None


def _walk(der) -> Walked | None:
    end = len(der)
    start, info_end = _der.expect(der, 0, end, _der.SEQUENCE)
    if info_end != end or der[start:start + len(_SIGNED_DATA)] != _SIGNED_DATA:
        return None
    start, explicit_end = _der.expect(der, start + len(_SIGNED_DATA), end, 0xA0)
    pos, sd_end = _der.expect(der, start, end, _der.SEQUENCE)
    if explicit_end != end or sd_end != end:
        return None
    _, pos = _der.expect(der, pos, end, _der.INTEGER)  # version: informational only
    _, pos = _der.expect(der, pos, end, _der.SET)  # digestAlgorithms: each SignerInfo names its own
    encap, encap_end = _der.expect(der, pos, end, _der.SEQUENCE)
    type_start, type_end = _der.expect(der, encap, encap_end, _der.OID)
    content_type = bytes(der[encap:type_end])
    content = None
    if type_end != encap_end:
        explicit, explicit_end = _der.expect(der, type_end, encap_end, 0xA0)
        octets, octets_end = _der.expect(der, explicit, explicit_end, _der.OCTET_STRING)
        if explicit_end != encap_end or octets_end != explicit_end:
            return None
        content = bytes(der[octets:octets_end])
    pos = encap_end
    tag, certs_start, certs_end = _der.read_tlv(der, pos, end)
    certificates: list[bytes] = []
    if tag == 0xA0:  # [0] IMPLICIT CertificateSet
        at = certs_start
        while at < certs_end:
            ctag, _, cend = _der.read_tlv(der, at, certs_end)
            if ctag == _der.SEQUENCE:
                certificates.append(bytes(der[at:cend]))
            elif ctag not in _OTHER_CERTIFICATE_CHOICES:
                return None
            at = cend
        pos = certs_end
        tag, _, crls_end = _der.read_tlv(der, pos, end)
    if tag == 0xA1:  # [1] IMPLICIT RevocationInfoChoices: not used (no revocation checking)
        pos = _der.read_tlv(der, pos, end)[2]
    set_start, set_end = _der.expect(der, pos, end, _der.SET)
    if set_end != end:
        return None
    signers: list[WalkedSigner] = []
    pos = set_start
    while pos < set_end:
        si, si_end = _der.expect(der, pos, set_end, _der.SEQUENCE)
        signer = _signer(der, si, si_end)
        if signer is None:
            return None
        signers.append(signer)
        pos = si_end
    return Walked(content_type, content, tuple(certificates), tuple(signers))


def _signer(der, pos: int, end: int) -> WalkedSigner | None:
    _, pos = _der.expect(der, pos, end, _der.INTEGER)
    tag, sid_start, sid_end = _der.read_tlv(der, pos, end)
    issuer = serial = ski = None
    if tag == _der.SEQUENCE:  # issuerAndSerialNumber
        _, name_end = _der.expect(der, sid_start, sid_end, _der.SEQUENCE)
        serial_start, serial_end = _der.expect(der, name_end, sid_end, _der.INTEGER)
        if serial_end != sid_end or serial_start == serial_end:
            return None
        issuer = bytes(der[sid_start:name_end])
        serial = int.from_bytes(der[serial_start:serial_end], "big", signed=True)
    elif tag == 0x80:  # [0] IMPLICIT SubjectKeyIdentifier
        ski = bytes(der[sid_start:sid_end])
    else:
        return None
    _, alg_end = _der.expect(der, sid_end, end, _der.SEQUENCE)
    digest_algorithm = bytes(der[sid_end:alg_end])
    pos = alg_end
    tag, attrs_start, attrs_end = _der.read_tlv(der, pos, end)
    signed_attrs = None
    attributes: list[tuple[bytes, tuple[bytes, ...]]] = []
    if tag == 0xA0:
        # RFC 5652 5.4: the signature is over the attributes as received, retagged SET OF.
        signed_attrs = b"\x31" + bytes(der[pos + 1:attrs_end])
        at = attrs_start
        while at < attrs_end:
            a_start, a_end = _der.expect(der, at, attrs_end, _der.SEQUENCE)
            _, oid_end = _der.expect(der, a_start, a_end, _der.OID)
            values_start, values_end = _der.expect(der, oid_end, a_end, _der.SET)
            if values_end != a_end:
                return None
            oid = bytes(der[a_start:oid_end])
            values: list[bytes] = []
            v = values_start
            while v < values_end:
                v_end = _der.read_tlv(der, v, values_end)[2]
                values.append(bytes(der[v:v_end]))
                v = v_end
            attributes.append((oid, tuple(values) if oid in READ_ATTRIBUTE_TLVS else ()))
            at = a_end
        pos = attrs_end
    _, sig_alg_end = _der.expect(der, pos, end, _der.SEQUENCE)
    signature_algorithm = bytes(der[pos:sig_alg_end])
    sig_start, pos = _der.expect(der, sig_alg_end, end, _der.OCTET_STRING)
    signature = bytes(der[sig_start:pos])
    if pos != end:
        tag, _, unsigned_end = _der.read_tlv(der, pos, end)
        if tag != 0xA1 or unsigned_end != end:  # only unsignedAttrs may follow; never looked at
            return None
    return WalkedSigner(issuer, serial, ski, digest_algorithm, signed_attrs, tuple(attributes),
                        signature_algorithm, signature)
