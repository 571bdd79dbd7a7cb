"""A tiny DER writer and a strict definite-length TLV reader, for the fixed layouts we emit.

    >>> from autosmime.smime._cms.der import tlv, integer, oid, read_tlv
    >>> tlv(0x30, integer(1) + oid("1.2.840.113549.1.7.1")).hex()
    '300e02010106092a864886f70d010701'
    >>> read_tlv(bytes.fromhex("3003020105"), 0, 5)
    (48, 2, 5)

asn1crypto builds, re-validates and re-copies a whole object tree to dump a
CMS structure; for SignedData and EnvelopedData we know the exact layout, so
writing the TLVs directly costs a few microseconds instead of milliseconds.
tests/smime/test_perf_der.py checks every writer against asn1crypto's encoding.

The reader accepts only definite lengths (BER indefinite lengths are left to
the slow, general path) and refuses anything that overruns its container.
"""

from __future__ import annotations

from functools import lru_cache

SEQUENCE = 0x30
SET = 0x31
OCTET_STRING = 0x04
INTEGER = 0x02
OID = 0x06


def py_length(n: int) -> bytes:
    """DER length octets (minimal form)."""
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def py_header(tag: int, n: int) -> bytes:
    """Tag and length octets of a value with ``n`` content octets (low tag numbers only)."""
    return bytes((tag,)) + py_length(n)


def py_tlv(tag: int, *parts: bytes) -> bytes:
    """A TLV whose value is ``parts`` (bytes-like) joined."""
    body = b"".join(parts)
    return bytes((tag,)) + py_length(len(body)) + body


def integer(n: int) -> bytes:
    """A DER INTEGER, two's complement, minimal."""
    raw = n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True)
    # to_bytes with bit_length//8+1 octets may leave one redundant leading octet.
    if len(raw) > 1 and ((raw[0] == 0 and raw[1] < 0x80) or (raw[0] == 0xFF and raw[1] >= 0x80)):
        raw = raw[1:]
    return tlv(INTEGER, raw)


@lru_cache(maxsize=128)
def oid(dotted: str) -> bytes:
    """A DER OBJECT IDENTIFIER: the first two arcs in one octet, each arc in base 128.

    Written out rather than asked of asn1crypto: the decryption of a message in
    the common layout then does not import it at all (a fifth of a command's start).
    """
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39) or min(arcs) < 0:
        raise ValueError(f"not an object identifier: {dotted!r}")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return bytes((OID,)) + py_length(len(body)) + bytes(body)


def long_form_length(data, pos: int, first: int, limit: int) -> tuple[int, int]:
    """(length, position after it) of a long-form length whose first octet ``first`` was just read."""
    count = first & 0x7F
    if count > 8 or pos + count > limit:
        raise ValueError("bad length")
    return int.from_bytes(data[pos:pos + count], "big"), pos + count


def py_read_tlv(data, pos: int, limit: int) -> tuple[int, int, int]:
    """(tag octet, content start, content end) of the TLV at ``pos`` in a container ending at ``limit``;
    ValueError if malformed.

    Low tag numbers and definite lengths only: anything else is for the general parser.
    The header must lie inside ``data``; the value only inside ``limit``, so a header can
    be read from a prefix. The compiled twin (``autosmime/smime/_speedups.c``) gives the
    same answers.
    """
    if pos < 0:
        raise ValueError("negative TLV position")
    available = min(limit, len(data))
    if pos + 2 > available:
        raise ValueError("truncated TLV")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag number")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        n = first
    elif first == 0x80:
        raise ValueError("indefinite length")
    else:
        n, pos = long_form_length(data, pos, first, available)
    if pos + n > limit:
        raise ValueError("value overruns its container")
    return tag, pos, pos + n


def py_expect(der, pos: int, limit: int, tag: int) -> tuple[int, int]:
    """(content start, end) of the TLV at ``pos``, which must have ``tag``; ValueError otherwise."""
    found, start, end = py_read_tlv(der, pos, limit)
    if found != tag:
        raise ValueError("unexpected tag")
    return start, end


try:
    from autosmime.smime._speedups import expect, header, length, read_tlv, tlv
except ImportError:  # the C extension did not build: same answers, slower
    read_tlv, expect, length, header, tlv = py_read_tlv, py_expect, py_length, py_header, py_tlv
