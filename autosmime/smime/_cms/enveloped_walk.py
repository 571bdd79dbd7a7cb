"""A strict hand walk of the EnvelopedData layout nearly every S/MIME client writes.

    >>> from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
    >>> from autosmime.smime._cms.enveloped import encrypt
    >>> from autosmime.smime._cms.enveloped_walk import walk_enveloped
    >>> ca_key, ca = make_ca("Test CA")
    >>> bob = make_mailbox_cert("bob@example.test", new_key("rsa").public_key(), ca_key, ca)
    >>> slots, cipher, ciphertext = walk_enveloped(encrypt(b"hi", [bob]))
    >>> [s.algorithm for s in slots], cipher.name, len(ciphertext)
    (['rsaes_pkcs1v15'], 'aes256_cbc', 16)

DER ContentInfo(EnvelopedData) without originatorInfo or unprotectedAttrs,
whose RecipientInfos are all RSA PKCS#1 v1.5 key transport (named by
issuerAndSerialNumber or subjectKeyIdentifier) and whose content is AES-CBC
data in one primitive [0] string: autosmime's "interop" profile, OpenSSL,
Thunderbird and Outlook. Parsing that with asn1crypto costs ~0.5 ms of
object building for what are a dozen TLVs.

Every TLV is read strictly (definite lengths that fit their container,
exact ends, the expected tags and algorithm encodings byte for byte). Any
other layout, however valid, gives None and the caller takes the general
asn1crypto parse, which reads everything the module docstring of
:mod:`autosmime.smime._cms.enveloped` lists.
"""

from __future__ import annotations

from functools import lru_cache

from autosmime.smime._cms import der as _der
from autosmime.smime._cms.enveloped_ber import definite_lengths
from autosmime.smime._cms.enveloped_ciphers import ContentCipher
from autosmime.smime._cms.enveloped_recipients import Rid, Slot

__all__ = ["py_walk_enveloped_raw", "walk_enveloped"]

try:
    from autosmime.smime._speedups import walk_enveloped as _c_walk_enveloped
except ImportError:  # the C extension did not build: the same walk in Python
    _c_walk_enveloped = None

_ENVELOPED_DATA = _der.oid("1.2.840.113549.1.7.3")
_DATA = _der.oid("1.2.840.113549.1.7.1")
# rsaEncryption with NULL parameters (RFC 3370 4.2.1) and with them absent, as some write it.
_RSA_V15 = {_der.tlv(_der.SEQUENCE, _der.oid("1.2.840.113549.1.1.1"), b"\x05\x00"),
            _der.tlv(_der.SEQUENCE, _der.oid("1.2.840.113549.1.1.1"))}
_AES_CBC = {_der.oid("2.16.840.1.101.3.4.1.2"): ("aes128_cbc", 16),
            _der.oid("2.16.840.1.101.3.4.1.22"): ("aes192_cbc", 24),
            _der.oid("2.16.840.1.101.3.4.1.42"): ("aes256_cbc", 32)}
_SKI_TAG = 0x80  # [0] IMPLICIT SubjectKeyIdentifier in a ktri rid


def walk_enveloped(der) -> tuple[list[Slot], ContentCipher, memoryview] | None:
    """(one slot per RecipientInfo, the content cipher, the ciphertext as a view of ``der``), or None."""
    raw = _c_walk_enveloped(der) if _c_walk_enveloped is not None else py_walk_enveloped_raw(der)
    opened = _open_raw(raw)
    if opened is None:
        return None
    assert raw is not None
    return opened[0], opened[1], memoryview(der)[raw[4]:raw[5]]


def walk_enveloped_head(head, total: int) -> tuple[list[Slot], ContentCipher, int] | None:
    """:func:`walk_enveloped` of a DER ContentInfo of ``total`` octets of which only the first
    ones, ``head``, have arrived: (slots, cipher, where the ciphertext starts), or None when
    the layout is another one or ``head`` does not yet reach the ciphertext.
    """
    try:
        raw = _walk(head, total)
    except ValueError:
        return None
    if raw is None or raw[4] > len(head):  # every field before the ciphertext must be complete
        return None
    opened = _open_raw(raw)
    return None if opened is None else (opened[0], opened[1], raw[4])


def _open_raw(raw: RawEnvelope | None) -> tuple[list[Slot], ContentCipher] | None:
    if raw is None:
        return None
    recipients, content_type, cipher_oid, iv, _, _ = raw
    known = _AES_CBC.get(cipher_oid)
    if content_type != _DATA or known is None:
        return None
    slots: list[Slot] = []
    for issuer, serial, ski, algorithm, encrypted_key in recipients:
        if algorithm not in _RSA_V15:
            return None
        if issuer is None:
            rid = Rid(ski=ski)
        elif _nested_definite(issuer) and serial is not None:
            rid = Rid(issuer_der=issuer, serial=int.from_bytes(serial, "big", signed=True))
        else:
            return None
        slots.append(Slot(rid, "rsa", "rsaes_pkcs1v15", False, encrypted_key))
    name, key_size = known
    return slots, ContentCipher(name, key_size, iv, 0, False)


# (recipients, content type OID TLV, cipher OID TLV, IV, ciphertext start, end), where each
# recipient is (issuer Name TLV, serial octets, None, keyEncryptionAlgorithm TLV, encrypted key)
# or (None, None, subject key identifier, algorithm TLV, encrypted key).
RawEnvelope = tuple[tuple[tuple[bytes | None, bytes | None, bytes | None, bytes, bytes], ...],
                    bytes, bytes, bytes, int, int]


def py_walk_enveloped_raw(der) -> RawEnvelope | None:
    """The fixed layout's raw fields, or None for any other layout: the twin of the compiled walk
    (``walk_enveloped`` in ``autosmime/smime/_speedups.c``). Which algorithms are accepted is
    decided by :func:`walk_enveloped`, after either walk."""
    try:
        return _walk(der)
    except ValueError:  # from read_tlv: not strict definite-length DER
        return None


def _walk(der, end: int | None = None) -> RawEnvelope | None:
    """The walk of ``der``, or of its first octets when ``end`` (the whole length) is given:
    read_tlv reads a TLV's header from them and lets its value run on to ``end``."""
    end = len(der) if end is None else end
    start, info_end = _der.expect(der, 0, end, _der.SEQUENCE)
    if info_end != end or der[start:start + len(_ENVELOPED_DATA)] != _ENVELOPED_DATA:
        return None
    start, explicit_end = _der.expect(der, start + len(_ENVELOPED_DATA), end, 0xA0)
    fields, fields_end = _der.expect(der, start, end, _der.SEQUENCE)
    if explicit_end != end or fields_end != end:
        return None
    v_start, pos = _der.expect(der, fields, end, _der.INTEGER)
    if der[v_start:pos] not in (b"\x00", b"\x02"):  # RFC 5652 6.1: 0, or 2 with SKI recipients
        return None
    set_start, set_end = _der.expect(der, pos, end, _der.SET)  # an originatorInfo [0] here: general path
    recipients = []
    pos = set_start
    while pos < set_end:
        ri_start, ri_end = _der.expect(der, pos, set_end, _der.SEQUENCE)  # ktri; kari & co are tagged
        recipient = _ktri(der, ri_start, ri_end)
        if recipient is None:
            return None
        recipients.append(recipient)
        pos = ri_end
    if not recipients:
        return None
    eci, eci_end = _der.expect(der, set_end, end, _der.SEQUENCE)
    if eci_end != end:  # unprotectedAttrs [1] after it: general path
        return None
    _, pos = _der.expect(der, eci, end, _der.OID)
    content_type = bytes(der[eci:pos])
    alg, alg_end = _der.expect(der, pos, end, _der.SEQUENCE)
    _, oid_end = _der.expect(der, alg, alg_end, _der.OID)
    iv_start, iv_end = _der.expect(der, oid_end, alg_end, _der.OCTET_STRING)
    if iv_end != alg_end or iv_end - iv_start != 16:
        return None
    ct_start, ct_end = _der.expect(der, alg_end, end, 0x80)  # primitive [0]: chunked strings take the general path
    if ct_end != end:
        return None
    return (tuple(recipients), content_type, bytes(der[alg:oid_end]), bytes(der[iv_start:iv_end]),
            ct_start, ct_end)


def _ktri(der, pos: int, end: int) -> tuple[bytes | None, bytes | None, bytes | None, bytes, bytes] | None:
    v_start, pos = _der.expect(der, pos, end, _der.INTEGER)
    version = bytes(der[v_start:pos])
    tag, rid_start, rid_end = _der.read_tlv(der, pos, end)
    issuer = serial = ski = None
    if tag == _der.SEQUENCE and version == b"\x00":  # issuerAndSerialNumber
        _, name_end = _der.expect(der, rid_start, rid_end, _der.SEQUENCE)
        serial_start, serial_end = _der.expect(der, name_end, rid_end, _der.INTEGER)
        if serial_end != rid_end or serial_start == serial_end:
            return None
        # The Name exactly as received (TLV included); compared by bytes, then by RFC 5280 rules.
        issuer = bytes(der[rid_start:name_end])  # the Name is the first element: its whole TLV
        serial = bytes(der[serial_start:serial_end])
    elif tag == _SKI_TAG and version == b"\x02":
        ski = bytes(der[rid_start:rid_end])
    else:
        return None
    _, alg_end = _der.expect(der, rid_end, end, _der.SEQUENCE)
    key_start, key_end = _der.expect(der, alg_end, end, _der.OCTET_STRING)
    if key_end != end:
        return None
    return issuer, serial, ski, bytes(der[rid_end:alg_end]), bytes(der[key_start:key_end])


@lru_cache(maxsize=256)  # issuer names repeat: a user's correspondents share a few CAs
def _nested_definite(tlv: bytes) -> bool:
    """Every TLV nested in ``tlv`` has a definite length that fits: the general path reads them all."""
    try:
        return definite_lengths(tlv) == tlv
    except ValueError:
        return False
