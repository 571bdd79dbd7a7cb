"""RC2-CBC decryption (RFC 2268), only for reading old PKCS#12 files.

    >>> rc2_decrypt_block(bytes(8), 63, bytes.fromhex("ebb773f993278eff")).hex()
    '0000000000000000'

Thunderbird/NSS legacy exports encrypt their certificate bags with
pbeWithSHAAnd40BitRC2-CBC; cryptography only offers 128-bit RC2, and the
effective key length changes the key schedule, so the 40-bit form is done here.
Decryption only: autosmime never writes RC2.
"""

from __future__ import annotations

import struct

_PITABLE = bytes.fromhex(
    "d978f9c419ddb5ed28e9fd794aa0d89dc67e37832b76538e624c6488448bfba2"
    "179a59f587b34f1361456d8d09817d32bd8f40eb86b77b0bf09521225c6b4e82"
    "54d66593ce60b21c7356c014a78cf1dc1275ca1f3bbee4d1423dd430a33cb626"
    "6fbf0eda4669075727f21d9bbc944303f811c7f690ef3ee706c3d52fc8661ed7"
    "08e8eade8052eef784aa72ac354d6a2a961ad2715a1549744b9fd05e0418a4ec"
    "c2e0416e0f51cbcc2491af50a1f47039997c3a8523b8b47afc02365b25559731"
    "2d5dfa98e38a92ae05df2910676cbac9d300e6cfe19ea82c6316013f58e289a9"
    "0d38341bab33ffb0bb480c5fb9b1cd2ec5f3db47e5a59c770aa62068fe7fc1ad"
)


def _expand(key: bytes, bits: int) -> list[int]:
    t = len(key)
    l = bytearray(128)
    l[:t] = key
    for i in range(t, 128):
        l[i] = _PITABLE[(l[i - 1] + l[i - t]) & 0xFF]
    t8 = (bits + 7) // 8
    tm = 0xFF >> (8 * t8 - bits)
    l[128 - t8] = _PITABLE[l[128 - t8] & tm]
    for i in range(127 - t8, -1, -1):
        l[i] = _PITABLE[l[i + 1] ^ l[i + t8]]
    return [l[2 * i] | (l[2 * i + 1] << 8) for i in range(64)]


def _ror(x: int, n: int) -> int:
    return ((x >> n) | (x << (16 - n))) & 0xFFFF


def _decrypt_block(k: list[int], block: bytes) -> bytes:
    r = list(struct.unpack("<4H", block))
    j = 63
    for rnd in range(16, 0, -1):
        for i in (3, 2, 1, 0):
            r[i] = _ror(r[i], (1, 2, 3, 5)[i])
            r[i] = (r[i] - k[j] - (r[(i - 1) % 4] & r[(i - 2) % 4]) - ((~r[(i - 1) % 4]) & r[(i - 3) % 4])) & 0xFFFF
            j -= 1
        if rnd in (6, 12):  # r-mashing before rounds 5 and 11 (counting down)
            for i in (3, 2, 1, 0):
                r[i] = (r[i] - k[r[(i - 1) % 4] & 63]) & 0xFFFF
    return struct.pack("<4H", *r)


def rc2_decrypt_block(key: bytes, bits: int, block: bytes) -> bytes:
    return _decrypt_block(_expand(key, bits), block)


def rc2_cbc_decrypt(key: bytes, bits: int, iv: bytes, data: bytes) -> bytes:
    """Decrypt (still padded) ``data``; the caller removes the padding."""
    if len(data) % 8 or len(iv) != 8:
        raise ValueError("RC2-CBC data is not a whole number of blocks")
    k = _expand(key, bits)
    out = bytearray()
    prev = iv
    for i in range(0, len(data), 8):
        block = data[i:i + 8]
        out += bytes(a ^ b for a, b in zip(_decrypt_block(k, block), prev))
        prev = block
    return bytes(out)
