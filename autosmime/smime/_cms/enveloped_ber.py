"""Turn BER indefinite lengths into definite ones before asn1crypto sees the message.

    >>> from autosmime.smime._cms.enveloped_ber import definite_lengths
    >>> definite_lengths(bytes.fromhex("3080 0201 05 0000")).hex()
    '3003020105'

Streaming encoders (Thunderbird/NSS, gpgsm, ``openssl cms -stream``) write
indefinite lengths. asn1crypto parses them only up to 10 nested levels and
trips over an indefinite-length SEQUENCE inside a CHOICE (a ktri
RecipientInfo), so lengths are made definite first. Chunked strings are
the exception: a universal constructed OCTET STRING becomes one primitive
OCTET STRING, and an implicitly tagged one (encryptedContent [0]) keeps its
indefinite form, the only one in which asn1crypto joins chunks.
"""

from __future__ import annotations

from autosmime.smime._cms.der import long_form_length

_MAX_DEPTH = 64  # CMS needs ~12; the cap keeps hostile nesting from exhausting the stack
_OCTET_STRING = b"\x04"
_CHUNKED_OCTET_STRING = b"\x24"


def definite_lengths(data: bytes) -> bytes:
    """The same single TLV with every length definite; ValueError for anything malformed."""
    tag, body, indefinite, end = _element(data, 0, len(data), 0)
    if end != len(data):
        raise ValueError("trailing data after the CMS object")
    return _encode(tag, body, indefinite)


def _element(data: bytes, i: int, limit: int, depth: int) -> tuple[bytes, bytes, bool, int]:
    """(tag bytes, re-encoded contents, write as indefinite, end offset) of the TLV at i."""
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    start = i
    if i >= limit:
        raise ValueError("truncated tag")
    constructed = data[i] & 0x20
    if data[i] & 0x1F == 0x1F:  # high tag number: base-128 continuation bytes
        i += 1
        while i < limit and data[i] & 0x80:
            i += 1
    i += 1
    if i >= limit:
        raise ValueError("truncated length")
    tag = data[start:i]
    first = data[i]
    i += 1
    children = []
    indefinite = first == 0x80
    if indefinite:
        if not constructed:
            raise ValueError("indefinite length on a primitive value")
        while True:
            if i + 2 > limit:
                raise ValueError("missing end-of-contents")
            if data[i] == 0 and data[i + 1] == 0:
                i += 2
                break
            child = _element(data, i, limit, depth + 1)
            i = child[3]
            children.append(child)
    else:
        if first < 0x80:
            length = first
        else:
            length, i = long_form_length(data, i, first, limit)
        end = i + length
        if end > limit:
            raise ValueError("truncated value")
        if not constructed:
            return tag, data[i:end], False, end
        while i < end:
            child = _element(data, i, end, depth + 1)
            i = child[3]
            children.append(child)
    chunks = bool(children) and all(child[0] == _OCTET_STRING for child in children)
    if tag == _CHUNKED_OCTET_STRING:
        if children and not chunks:
            raise ValueError("constructed OCTET STRING with non-string chunks")
        return _OCTET_STRING, b"".join(child[1] for child in children), False, i
    body = b"".join(_encode(child[0], child[1], child[2]) for child in children)
    return tag, body, indefinite and chunks, i


def _encode(tag: bytes, body: bytes, indefinite: bool) -> bytes:
    if indefinite:
        return tag + b"\x80" + body + b"\0\0"
    return tag + _length(len(body)) + body


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw
