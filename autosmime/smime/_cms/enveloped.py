"""CMS EnvelopedData / AuthEnvelopedData: encrypt bytes for certificates, decrypt with keys.

    >>> from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
    >>> from autosmime.smime._cms.enveloped import encrypt, decrypt
    >>> ca_key, ca = make_ca("Test CA")
    >>> bob_key = new_key("rsa")
    >>> bob = make_mailbox_cert("bob@example.test", bob_key.public_key(), ca_key, ca)
    >>> der = encrypt(b"Content-Type: text/plain\\r\\n\\r\\nhi\\r\\n", [bob])
    >>> result = decrypt(der, [(bob_key, bob)])
    >>> result.content, result.content_algorithm, result.key_algorithm
    (b'Content-Type: text/plain\\r\\n\\r\\nhi\\r\\n', 'aes256_cbc', 'rsaes_pkcs1v15')

``encrypt`` writes one of two fixed profiles: "interop" is EnvelopedData with
AES-256-CBC and RSA PKCS#1 v1.5, which every S/MIME client opens; "modern"
is AuthEnvelopedData with AES-256-GCM and RSA-OAEP-SHA256, for OpenSSL- and
BouncyCastle-class readers only (not Thunderbird/NSS, not gpgsm). EC
recipients get ECDH ephemeral-static with the X9.63 KDF and AES-256 key wrap
in both. ``decrypt`` reads far more than we write:
BER or DER, RSA v1.5 and OAEP with any parameters, ECDH with any X9.63 or
HKDF KDF, AES-CBC/GCM, 3DES, ChaCha20-Poly1305. Every failure is a typed
:mod:`autosmime.errors` error.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm as CryptographyUnsupported
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

from autosmime.errors import (
    AutosmimeError,
    DecryptionError,
    MalformedMessage,
    NoKey,
    NotForMe,
    UnsupportedAlgorithm,
    UsageError,
)
from autosmime.smime._cms import der as _der
from autosmime.smime._cms.enveloped_ber import definite_lengths
from autosmime.smime._cms.enveloped_ciphers import ContentCipher, Rejected, seal_cbc_chunks, seal_gcm
from autosmime.smime._cms.enveloped_recipients import (
    CertIdentity,
    PrivateKey,
    Slot,
    read_recipient_infos,
    recipient_info_der,
)
from autosmime.smime._cms.enveloped_walk import walk_enveloped, walk_enveloped_head

__all__ = ["DecryptResult", "PrivateKey", "Profile", "decrypt", "encrypt"]

Profile = Literal["interop", "modern"]

_CEK_SIZE = 32  # AES-256 in both profiles; the key wrap size matches (RFC 8551 2.7)


def encrypt(content: bytes, recipients: Sequence[x509.Certificate],
            profile: Profile = "interop") -> bytes:
    """DER ContentInfo. content = the exact bytes to encrypt (a canonical MIME entity)."""
    return b"".join(encrypt_chunks([content], recipients, profile)[1])


def encrypt_chunks(content: Sequence, recipients: Sequence[x509.Certificate],
                   profile: Profile = "interop") -> tuple[int, Iterator[bytes]]:
    """(length of the DER ContentInfo, its bytes in pieces) for content given as bytes-like chunks.

    The "interop" ciphertext is produced piece by piece while the caller consumes
    it, so a large message is never held twice (plaintext and DER) in memory.
    """
    if profile not in ("interop", "modern"):
        raise UsageError(f"unknown encryption profile {profile!r}")
    if not recipients:
        raise NoKey("no recipient certificate to encrypt to")
    cek = os.urandom(_CEK_SIZE)
    infos = [recipient_info_der(cert, cek, oaep=profile == "modern") for cert in recipients]
    # SET OF RecipientInfo: DER orders the elements by their encodings.
    recipient_set = _der.tlv(_der.SET, *sorted(der for der, _ in infos))
    content_len = sum(map(len, content))
    if profile == "interop":
        iv = os.urandom(16)
        ciphertext_len = (content_len // 16 + 1) * 16  # PKCS#7 padding always adds 1..16 bytes
        # RFC 5652 6.1: version 0 only when every RecipientInfo is v0 (ktri with IAS).
        version = b"\x02\x01\x00" if all(is_ktri for _, is_ktri in infos) else b"\x02\x01\x02"
        eci_head = (_DATA_OID + _der.tlv(_der.SEQUENCE, _AES256_CBC_OID, _der.tlv(_der.OCTET_STRING, iv))
                    + _der.header(0x80, ciphertext_len))
        eci_head = _der.header(_der.SEQUENCE, len(eci_head) + ciphertext_len) + eci_head
        fields = version + recipient_set + eci_head
        oid, envelope_head = _ENVELOPED_DATA_OID, _der.header(_der.SEQUENCE, len(fields) + ciphertext_len) + fields
        tail: Iterator[bytes] = seal_cbc_chunks(cek, iv, content)
        tail_len = ciphertext_len
    else:
        from asn1crypto import cms

        algorithm, ciphertext, tag = seal_gcm(cek, b"".join(content))
        envelope = cms.AuthEnvelopedData({
            "version": "v0",
            "recipient_infos": [cms.RecipientInfo.load(der) for der, _ in infos],
            "auth_encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": algorithm,
                "encrypted_content": ciphertext,
            },
            "mac": tag,
        })
        oid, envelope_head = _AUTH_ENVELOPED_DATA_OID, envelope.dump()
        tail, tail_len = iter(()), 0
    # ContentInfo: the definite lengths are known before the first ciphertext byte exists.
    explicit_len = len(envelope_head) + tail_len
    head = oid + _der.header(0xA0, explicit_len) + envelope_head
    head = _der.header(_der.SEQUENCE, len(head) + tail_len) + head
    return len(head) + tail_len, itertools.chain((head,), tail)


_DATA_OID = _der.oid("1.2.840.113549.1.7.1")
_ENVELOPED_DATA_OID = _der.oid("1.2.840.113549.1.7.3")
_AUTH_ENVELOPED_DATA_OID = _der.oid("1.2.840.113549.1.9.16.1.23")
_AES256_CBC_OID = _der.oid("2.16.840.1.101.3.4.1.42")


@dataclass(slots=True)  # built per message: frozen construction costs 4x
class DecryptResult:
    """What came out of a CMS envelope, and how it was protected."""

    content: bytes  # decrypted bytes
    content_algorithm: str  # e.g. "aes256_cbc", "aes256_gcm", "tripledes_3key", "chacha20_poly1305"
    key_algorithm: str  # e.g. "rsaes_pkcs1v15", "rsaes_oaep", "ecdh-sha256kdf-aes256_wrap"
    weak: bool  # True for 3DES / RC2 / any legacy content cipher
    authenticated: bool  # True for AuthEnvelopedData
    recipient_cert: x509.Certificate | None  # the cert of the key that opened it, when given


@dataclass(slots=True)  # built per message: frozen construction costs 4x
class _Envelope:
    authenticated: bool
    slots: list[Slot]
    recipient_count: int
    keyless_kinds: list[str]  # kekri/pwri/ori: opened by a shared key or password, not by ours
    cipher: ContentCipher | UnsupportedAlgorithm
    ciphertext: bytes | memoryview | _Streamed
    mac: bytes
    aad: bytes


# asn1crypto reports bad input with whatever exception the failing step raises.
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
                 UnicodeError, RecursionError, AssertionError)


def _parse(der: bytes) -> _Envelope:
    walked = walk_enveloped(der)  # the common layout, read by hand
    if walked is not None:
        slots, cipher, ciphertext = walked
        return _Envelope(False, slots, len(slots), [], cipher, ciphertext, b"", b"")
    hollow = _hollow(der)
    if hollow is not None:
        skeleton, ciphertext = hollow
        envelope = _parse_full(skeleton)
        if isinstance(envelope.ciphertext, bytes) and not envelope.ciphertext:
            return dataclasses.replace(envelope, ciphertext=ciphertext)
    return _parse_full(der)


def _hollow(der: bytes) -> tuple[bytes, memoryview] | None:
    """(the ContentInfo with an empty encryptedContent, the ciphertext), for definite-length DER.

    asn1crypto copies a value's contents at every nesting level it parses, five
    copies of a 10 MB ciphertext. So the ciphertext is cut out here and everything
    else, the skeleton, goes through the same strict parse as before. Any layout
    this walk does not expect gives None: the caller parses the whole message instead.
    """
    try:
        end = len(der)
        tag, start, info_end = _der.read_tlv(der, 0, end)
        if tag != _der.SEQUENCE or info_end != end:
            return None
        tag, _, oid_end = _der.read_tlv(der, start, end)
        tag2, explicit_start, explicit_end = _der.read_tlv(der, oid_end, end)
        if tag != _der.OID or tag2 != 0xA0 or explicit_end != end:
            return None
        tag, fields_start, fields_end = _der.read_tlv(der, explicit_start, end)
        if tag != _der.SEQUENCE or fields_end != end:
            return None
        # (Auth)EnvelopedData: version, [0] originatorInfo?, recipientInfos SET, then the content info.
        pos, seen_set = fields_start, False
        while True:
            tag, inner_start, inner_end = _der.read_tlv(der, pos, end)
            if tag == _der.SET:
                seen_set = True
            elif tag == _der.SEQUENCE and seen_set:
                break
            pos = inner_end
        eci_start = pos
        tag, _, pos = _der.read_tlv(der, inner_start, inner_end)  # contentType
        tag2, _, pos = _der.read_tlv(der, pos, inner_end)  # contentEncryptionAlgorithm
        content_start = pos
        tag3, ct_start, ct_end = _der.read_tlv(der, pos, inner_end)  # [0] IMPLICIT OCTET STRING
        if (tag, tag2, tag3) != (_der.OID, _der.SEQUENCE, 0x80) or ct_end != inner_end:
            return None
    except ValueError:
        return None
    eci = der[inner_start:content_start] + b"\x80\x00"
    fields = (der[fields_start:eci_start] + _der.header(_der.SEQUENCE, len(eci)) + eci
              + der[inner_end:fields_end])
    envelope = _der.header(_der.SEQUENCE, len(fields)) + fields
    info = der[start:oid_end] + _der.header(0xA0, len(envelope)) + envelope
    return _der.header(_der.SEQUENCE, len(info)) + info, memoryview(der)[ct_start:ct_end]


def _parse_full(der: bytes) -> _Envelope:
    from asn1crypto import cms, core  # the general parse: the common layout is walked by hand

    try:
        info = cms.ContentInfo.load(definite_lengths(der), strict=True)
        content_type = info["content_type"].native
        if content_type == "enveloped_data":
            envelope, authenticated = info["content"], False
            eci = envelope["encrypted_content_info"]
            mac, aad = b"", b""
        elif content_type == "authenticated_enveloped_data":
            envelope, authenticated = info["content"], True
            eci = envelope["auth_encrypted_content_info"]
            mac = envelope["mac"].native
            auth_attrs = envelope["auth_attrs"]
            # RFC 5083 2.1: authenticated as the DER SET OF, not the [1] IMPLICIT encoding.
            aad = b"" if isinstance(auth_attrs, core.Void) else b"\x31" + auth_attrs.dump()[1:]
        else:
            raise MalformedMessage(f"not an encrypted CMS message ({content_type})")
        slots, count, keyless = read_recipient_infos(envelope["recipient_infos"])
        ciphertext = eci["encrypted_content"].native
        if not isinstance(ciphertext, bytes):
            raise MalformedMessage("the encrypted content is missing (detached)")
        cipher: ContentCipher | UnsupportedAlgorithm
        try:
            cipher = ContentCipher.parse(eci["content_encryption_algorithm"], authenticated=authenticated)
        except UnsupportedAlgorithm as e:
            cipher = e  # only reported once we know the message is for us
        return _Envelope(authenticated, slots, count, keyless, cipher, ciphertext, mac, aad)
    except AutosmimeError:
        raise
    except _PARSE_ERRORS as e:
        raise MalformedMessage(f"not a valid CMS encrypted message ({type(e).__name__})") from None


def _attempts(slots: list[Slot], keys: Sequence[tuple[PrivateKey, x509.Certificate | None]]
              ) -> Iterator[tuple[Slot, PrivateKey, x509.Certificate | None]]:
    """Slot/key pairs worth trying: one per certificate, then guesses for keys without one.

    At most one slot per certificate, because a failed RSA PKCS#1 v1.5 unwrap cannot be
    seen: the key answers with a random stand-in CEK (implicit rejection), which passes
    the CBC padding check once in 256 and turns the content into garbage that looks like
    success. Trying every slot that names the certificate gave each bogus slot that
    chance. A key without certificate gets every slot of its type it could own, except
    PKCS#1 v1.5 ones when more than one could be its own (it cannot tell which).
    """
    named: set[int] = set()  # ids of slots that a given certificate names: not guessed at
    tried: set[CertIdentity] = set()
    for key, cert in keys:
        if cert is None:
            continue
        try:
            ident = CertIdentity.of(cert)
        except _PARSE_ERRORS:
            continue
        mine = [slot for slot in slots if slot.rid.names(ident)]
        named.update(map(id, mine))
        if mine and ident not in tried:
            tried.add(ident)
            # A supported slot first: one we cannot read must not hide one we can.
            yield min(mine, key=lambda slot: slot.unsupported), key, cert
    for key, cert in keys:
        if cert is None:
            guesses = [slot for slot in slots if id(slot) not in named
                       and isinstance(key, _KEY_TYPES[slot.key_type])]
            blind = [slot for slot in guesses if slot.algorithm == _RSA_V15]
            for slot in guesses:
                if len(blind) < 2 or slot.algorithm != _RSA_V15:
                    yield slot, key, None


_KEY_TYPES = {"rsa": rsa.RSAPrivateKey, "ec": ec.EllipticCurvePrivateKey,
              "x25519": x25519.X25519PrivateKey}


_RSA_V15 = "rsaes_pkcs1v15"


def _unwrap(slot: Slot, key: PrivateKey, key_size: int) -> bytes | None:
    try:
        return slot.unwrap(key, key_size)
    except (ValueError, TypeError, CryptographyUnsupported):  # e.g. a point not on our curve
        return None


def decrypt(der: bytes, keys: Sequence[tuple[PrivateKey, x509.Certificate | None]]) -> DecryptResult:
    """Open a DER or BER ContentInfo with any of the user's keys, old or new."""
    pieces, result = decrypt_pieces(der, keys)
    return dataclasses.replace(result, content=b"".join(pieces))


def decrypt_pieces(der: bytes, keys: Sequence[tuple[PrivateKey, x509.Certificate | None]]
                   ) -> tuple[list[bytes], DecryptResult]:
    """:func:`decrypt`, with the plaintext as pieces to be joined (``result.content`` is empty)."""
    pieces, result = _open(_parse(der), keys)
    assert isinstance(pieces, list)  # the ciphertext was whole: so is the plaintext
    return pieces, result


def decrypt_chunks(chunks: Iterable, keys: Sequence[tuple[PrivateKey, x509.Certificate | None]]
                   ) -> tuple[Iterator[bytes], DecryptResult] | bytes:
    """:func:`decrypt_pieces` of a ContentInfo arriving in pieces (as base64 decodes it), or,
    for a layout other than the common one, the whole ContentInfo for the general path.

    The common layout (see :mod:`autosmime.smime._cms.enveloped_walk`) spools the
    ciphertext to a temporary file as it arrives (see :class:`_Spool`), keeping its last
    blocks for the padding check; the plaintext comes out piece by piece as the
    iterator is consumed, after every check has passed.
    """
    it = iter(chunks)
    head = b""
    need = _HEAD
    while True:
        parts = [head]
        size = len(head)
        for chunk in it:
            parts.append(chunk)
            size += len(chunk)
            if size >= need:
                break
        head = b"".join(parts)
        try:
            tag, _, total = _der.read_tlv(head, 0, _UNBOUNDED)
        except ValueError:  # BER or no ASN.1 at all: the general path judges
            tag, total = -1, 0
        walked = walk_enveloped_head(head, total) if tag == _der.SEQUENCE else None
        if walked is not None:
            break
        if tag != _der.SEQUENCE or size < need or need >= _MAX_HEAD:
            return b"".join([head, *it])
        need *= 4
    slots, cipher, start = walked
    kept = _Spool(head[start:])
    tail = head[start:][-_TAIL:]
    received = len(head)
    del head
    for chunk in it:
        received += len(chunk)
        if received > total:
            break
        kept.append(chunk)
        tail = chunk[-_TAIL:] if len(chunk) >= _TAIL else (tail + chunk)[-_TAIL:]
    if received != total:
        raise MalformedMessage("not a valid CMS encrypted message "
                               f"({'data after its end' if received > total else 'truncated'})")
    length = total - start
    ciphertext = _Streamed(kept.chunks(), length, tail)
    pieces, result = _open(_Envelope(False, slots, len(slots), [], cipher, ciphertext, b"", b""), keys)
    return iter(pieces), result


@dataclass(slots=True)
class _Streamed:
    """Ciphertext that is not in memory as one piece: produced by ``chunks`` when consumed."""

    chunks: Iterator[bytes]
    length: int
    tail: bytes  # its last _TAIL octets: the CBC padding is checked from them before anything is read


_TAIL = 32  # two AES blocks


class _Spool:
    """Ciphertext read once (from a pipe) kept for its decryption: in an unlinked temporary
    file, so memory does not grow with the message; in memory if no file can be written.

    Only ciphertext goes to disk, never plaintext: what is there is what the mail server
    already holds.
    """

    def __init__(self, first: bytes) -> None:
        self._memory: list = []
        try:
            # Unbuffered: each write's outcome is known, so nothing is lost when the disk fills.
            self._file: IO[bytes] | None = tempfile.TemporaryFile(prefix="autosmime-", buffering=0)
        except OSError:
            self._file = None
        self.append(first)

    def append(self, chunk: bytes) -> None:
        if self._file is not None and not self._memory:
            view = memoryview(chunk)
            try:
                while view:
                    written = self._file.write(view)
                    if not written:
                        raise OSError("nothing written")
                    view = view[written:]
                return
            except OSError:  # the disk is full: the rest stays in memory
                chunk = bytes(view)
        self._memory.append(chunk)

    def chunks(self) -> Iterator[bytes]:
        """Everything appended, once, each piece let go of as it is handed out."""
        if self._file is not None:
            with self._file as f:
                f.seek(0)
                while chunk := f.read(_SPOOL_READ):
                    yield chunk
        memory, self._memory = self._memory, []
        for i in range(len(memory)):
            chunk, memory[i] = memory[i], None
            yield chunk


_SPOOL_READ = 1 << 20


_HEAD = 16 * 1024  # enough for the fields before the ciphertext of nearly every message
_MAX_HEAD = 4 * 1024 * 1024  # a recipient list longer than this goes the general way
_UNBOUNDED = 1 << 62


def _open(envelope: _Envelope, keys: Sequence[tuple[PrivateKey, x509.Certificate | None]]
          ) -> tuple[Iterable[bytes], DecryptResult]:
    unsupported: UnsupportedAlgorithm | None = None
    damaged = False  # a key unwrapped a checked CEK (OAEP, key agreement) that did not open the content
    named = False  # a slot named one of the user's certificates
    for slot, key, cert in _attempts(envelope.slots, keys):
        if slot.unsupported:
            unsupported = unsupported or UnsupportedAlgorithm(slot.algorithm, "key encryption")
            continue
        if isinstance(envelope.cipher, UnsupportedAlgorithm):
            raise envelope.cipher
        cipher = envelope.cipher
        named = named or cert is not None
        cek = _unwrap(slot, key, cipher.key_size)
        if cek is None:
            continue
        try:
            if isinstance(envelope.ciphertext, _Streamed):
                streamed = envelope.ciphertext
                plaintext: Iterable[bytes] = cipher.open_chunks(cek, streamed.chunks, streamed.length,
                                                                streamed.tail)
            else:
                plaintext = cipher.open_pieces(cek, envelope.ciphertext, envelope.mac, envelope.aad)
        except Rejected:
            # OAEP and key agreement check the key they unwrap, so the content itself is
            # damaged; a PKCS#1 v1.5 stand-in key says nothing: the slot may be bogus.
            damaged = damaged or slot.algorithm != _RSA_V15
            continue
        return plaintext, DecryptResult(
            content=b"",
            content_algorithm=cipher.name,
            key_algorithm=slot.algorithm,
            weak=cipher.weak,
            authenticated=envelope.authenticated,
            recipient_cert=cert,
        )
    if damaged:
        raise DecryptionError("the message could not be decrypted")
    if named:
        # The same answer whatever failed (key unwrap or content padding): no oracle.
        raise NotForMe("the message names your certificate, but none of your keys opens its copy of the key")
    if unsupported is not None:
        raise unsupported
    count = envelope.recipient_count
    keyless = f" ({len(envelope.keyless_kinds)} by shared key or password: " \
        f"{', '.join(sorted(set(envelope.keyless_kinds)))})" if envelope.keyless_kinds else ""
    raise NotForMe(
        f"the message is encrypted for {count} recipient{'s' if count != 1 else ''}{keyless}, "
        "none of them one of your keys"
    )

