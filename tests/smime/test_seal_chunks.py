"""AES-CBC sealing of an entity given in pieces: the same ciphertext as sealing it whole."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from autosmime.smime._cms import enveloped_ciphers


def _whole(key: bytes, iv: bytes, content: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


_CHUNKS = st.lists(st.binary(max_size=90) | st.binary(min_size=100, max_size=300).map(memoryview), max_size=12)


@pytest.mark.parametrize("piece", [64, 256 * 1024])  # pieces bigger than some chunks, and the real size
@given(chunks=_CHUNKS)
@settings(max_examples=150, deadline=None)
def test_chunked_sealing_equals_whole(chunks, piece):
    key, iv = os.urandom(32), os.urandom(16)
    saved = enveloped_ciphers._PIECE
    enveloped_ciphers._PIECE = piece
    try:
        sealed = b"".join(enveloped_ciphers.seal_cbc_chunks(key, iv, chunks))
        joined = list(enveloped_ciphers._coalesced(chunks))
    finally:
        enveloped_ciphers._PIECE = saved
    content = b"".join(bytes(c) for c in chunks)
    assert sealed == _whole(key, iv, content)
    assert b"".join(bytes(p) for p in joined) == content
    # Runs of small chunks are joined: at most one piece per full piece size, plus one per big
    # chunk standing alone and the run before it.
    big = sum(len(c) >= piece for c in chunks)
    assert len(joined) <= max(1, len(content) // piece + 2 * big + 1)
