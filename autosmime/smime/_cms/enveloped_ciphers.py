"""Content-encryption algorithms of CMS EnvelopedData and AuthEnvelopedData.

    >>> import os
    >>> from autosmime.smime._cms.enveloped_ciphers import seal_cbc, ContentCipher
    >>> key = os.urandom(32)
    >>> algorithm, ciphertext = seal_cbc(key, b"hello")
    >>> ContentCipher.parse(algorithm, authenticated=False).open(key, ciphertext, b"", b"")
    b'hello'

Reading is liberal (AES-CBC, 3DES, AES-GCM with any tag of 12..16 bytes,
ChaCha20-Poly1305); writing is AES-256-CBC or AES-256-GCM only. Every way
a decryption can fail ends in the same :class:`Rejected`, so callers cannot
build a padding oracle out of the difference.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from autosmime.errors import MalformedMessage, UnsupportedAlgorithm

if TYPE_CHECKING:
    from asn1crypto import algos, core

# asn1crypto (and our classes built on it) are imported where the general parse and the
# writers need them: the common decryption, by hand from the DER, does not (a fifth of a
# command's start-up).


class Rejected(Exception):
    """Private: the content did not decrypt (wrong key, bad padding, bad tag)."""


_CBC_KEY_SIZES = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32, "tripledes_3key": 24}
_GCM_KEY_SIZES = {"aes128_gcm": 16, "aes192_gcm": 24, "aes256_gcm": 32}
_LEGACY = {"tripledes_3key"}
GCM_NONCE_SIZE = 12
GCM_TAG_SIZE = 16


@dataclass(slots=True)  # built per message: frozen construction costs 4x
class ContentCipher:
    """A parsed contentEncryptionAlgorithm, ready to open the content with a CEK."""

    name: str
    key_size: int
    iv: bytes
    tag_size: int  # 0 for CBC
    weak: bool

    @classmethod
    def parse(cls, algorithm: algos.EncryptionAlgorithm, *, authenticated: bool) -> ContentCipher:
        """Read an AlgorithmIdentifier; raise UnsupportedAlgorithm or MalformedMessage."""
        from asn1crypto import core

        from autosmime.smime._cms.enveloped_asn1 import CHACHA20_POLY1305, GcmParameters

        oid = algorithm["algorithm"].dotted
        name = algorithm["algorithm"].native
        params = algorithm["parameters"]
        if name in _CBC_KEY_SIZES:
            if authenticated:
                raise MalformedMessage(f"AuthEnvelopedData with non-AEAD cipher {name}")
            iv = _octets(params)
            block = 8 if name in _LEGACY else 16
            if len(iv) != block:
                raise MalformedMessage(f"{name}: IV of {len(iv)} bytes")
            return cls(name, _CBC_KEY_SIZES[name], iv, 0, name in _LEGACY)
        if name in _GCM_KEY_SIZES or oid == CHACHA20_POLY1305:
            if not authenticated:
                raise MalformedMessage(f"EnvelopedData with AEAD cipher {name}")
            if oid == CHACHA20_POLY1305:
                nonce = _octets(params)
                if len(nonce) != 12:
                    raise MalformedMessage("chacha20_poly1305: nonce is not 12 bytes")
                return cls("chacha20_poly1305", 32, nonce, 16, False)
            gcm = GcmParameters.load(params.dump())
            nonce = gcm["aes_nonce"].native
            tag_size = 12 if isinstance(gcm["aes_icvlen"], core.Void) else gcm["aes_icvlen"].native
            # RFC 5084 allows 4..16 but rules that CMS uses at least 12.
            if not 12 <= tag_size <= 16 or not 8 <= len(nonce) <= 128:
                raise MalformedMessage(f"{name}: bad GCM parameters")
            return cls(name, _GCM_KEY_SIZES[name], nonce, tag_size, False)
        raise UnsupportedAlgorithm(name, "content encryption")

    def open(self, key: bytes, ciphertext: bytes, mac: bytes, aad: bytes) -> bytes:
        """The plaintext, or :class:`Rejected` whatever went wrong."""
        return b"".join(self.open_pieces(key, ciphertext, mac, aad))

    def open_pieces(self, key: bytes, ciphertext, mac: bytes, aad: bytes) -> list[bytes]:
        """:meth:`open` as pieces to be joined, so a large plaintext is never copied to unpad it."""
        if len(key) != self.key_size:
            raise Rejected
        if self.tag_size == 0:
            return _open_cbc(self.name, key, self.iv, ciphertext)
        if len(mac) != self.tag_size:
            raise Rejected
        try:
            if self.name == "chacha20_poly1305":
                return [ChaCha20Poly1305(key).decrypt(self.iv, bytes(ciphertext) + mac, aad or None)]
            decryptor = Cipher(
                algorithms.AES(key), modes.GCM(self.iv, mac, min_tag_length=12)
            ).decryptor()
            decryptor.authenticate_additional_data(aad)
            # Nothing leaves before finalize() has checked the tag.
            return [decryptor.update(ciphertext), decryptor.finalize()]
        except (InvalidTag, ValueError):
            raise Rejected from None


    def open_chunks(self, key: bytes, chunks: Iterable[bytes], length: int, tail: bytes) -> Iterator[bytes]:
        """The plaintext of CBC ciphertext of ``length`` octets that ``chunks`` yields, ending
        with ``tail`` (at least its last two blocks), produced as it is consumed.

        The padding is checked before this returns, from the last two blocks alone
        (CBC decrypts a block with its predecessor as IV), so :class:`Rejected` comes
        before ``chunks`` is even started, and a caller writing the pieces out never
        writes a failure.
        """
        if len(key) != self.key_size or self.tag_size:
            raise Rejected
        block = len(self.iv)
        if not length or length % block:
            raise Rejected
        tail = tail[-2 * block:]
        previous, last = (self.iv, tail[-block:]) if length == block else (tail[:block], tail[block:])
        decryptor = Cipher(self._algorithm(key), modes.CBC(previous)).decryptor()
        unpadder = padding.PKCS7(block * 8).unpadder()
        try:
            kept = len(unpadder.update(decryptor.update(last) + decryptor.finalize()) + unpadder.finalize())
        except ValueError:
            raise Rejected from None
        return _cbc_pieces(Cipher(self._algorithm(key), modes.CBC(self.iv)).decryptor(), chunks,
                           length - block + kept)

    def _algorithm(self, key: bytes):
        return TripleDES(key) if self.name in _LEGACY else algorithms.AES(key)


def _cbc_pieces(decryptor, chunks: Iterable[bytes], length: int) -> Iterator[bytes]:
    for chunk in chunks:
        piece = decryptor.update(chunk)
        if len(piece) > length:
            piece = piece[:length]
        length -= len(piece)
        if piece:
            yield piece
    decryptor.finalize()


def _octets(params: core.Asn1Value) -> bytes:
    from asn1crypto import core

    if not isinstance(params, core.OctetString):
        params = core.OctetString.load(params.dump())
    value = params.native
    if not isinstance(value, bytes):
        raise MalformedMessage("cipher parameters missing")
    return value


def _open_cbc(name: str, key: bytes, iv: bytes, ciphertext) -> list[bytes]:
    cipher = TripleDES(key) if name in _LEGACY else algorithms.AES(key)
    block = len(iv)
    if not len(ciphertext) or len(ciphertext) % block:
        raise Rejected
    view = memoryview(ciphertext)
    decryptor = Cipher(cipher, modes.CBC(iv)).decryptor()
    body = decryptor.update(view[:-block])
    last = decryptor.update(view[-block:]) + decryptor.finalize()
    # Padding lives in the last block only; pyca's unpadder checks it in constant time
    # and fails with one ValueError.
    unpadder = padding.PKCS7(block * 8).unpadder()
    try:
        return [body, unpadder.update(last) + unpadder.finalize()]
    except ValueError:
        raise Rejected from None


def seal_cbc(key: bytes, content: bytes) -> tuple[algos.EncryptionAlgorithm, bytes]:
    """AES-256-CBC with a fresh IV: (contentEncryptionAlgorithm, ciphertext)."""
    from asn1crypto import algos

    iv = os.urandom(16)
    ciphertext = b"".join(seal_cbc_chunks(key, iv, [content]))
    return algos.EncryptionAlgorithm({"algorithm": "aes256_cbc", "parameters": iv}), ciphertext


_PIECE = 256 * 1024  # ciphertext handed out at a time: large enough to amortise calls, small next to 10 MB


def seal_cbc_chunks(key: bytes, iv: bytes, content: Sequence) -> Iterator[bytes]:
    """AES-CBC ciphertext of the concatenated bytes-like ``content`` chunks, PKCS#7 padded, in pieces."""
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    total = 0
    for chunk in _coalesced(content):
        view = memoryview(chunk)
        total += len(view)
        for i in range(0, len(view), _PIECE):
            piece = encryptor.update(view[i:i + _PIECE])
            if piece:
                yield piece
    # The encryptor keeps the partial last block: padding only ever touches those bytes.
    pad = 16 - total % 16
    yield encryptor.update(bytes((pad,)) * pad) + encryptor.finalize()


def _coalesced(chunks: Sequence) -> Iterator:
    """``chunks`` with runs of small ones joined: a multipart/signed entity comes as a dozen
    header and boundary snippets around the content, and each cipher update costs a call."""
    if sum(map(len, chunks)) < _PIECE:  # a small message: one piece, joined at C speed
        yield b"".join(chunks)
        return
    run: list = []
    size = 0
    for chunk in chunks:
        if len(chunk) >= _PIECE:
            if run:
                yield b"".join(run)
                run, size = [], 0
            yield chunk
            continue
        run.append(chunk)
        size += len(chunk)
        if size >= _PIECE:
            yield b"".join(run)
            run, size = [], 0
    if run:
        yield b"".join(run)


def seal_gcm(key: bytes, content: bytes) -> tuple[algos.EncryptionAlgorithm, bytes, bytes]:
    """AES-256-GCM, 12-byte nonce, 16-byte tag: (algorithm, ciphertext, tag)."""
    from asn1crypto import algos

    from autosmime.smime._cms.enveloped_asn1 import GcmParameters

    nonce = os.urandom(GCM_NONCE_SIZE)
    sealed = AESGCM(key).encrypt(nonce, content, None)
    params = GcmParameters({"aes_nonce": nonce, "aes_icvlen": GCM_TAG_SIZE})
    algorithm = algos.EncryptionAlgorithm({"algorithm": "aes256_gcm", "parameters": params})
    return algorithm, sealed[:-GCM_TAG_SIZE], sealed[-GCM_TAG_SIZE:]
