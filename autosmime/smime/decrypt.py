"""Decrypt a message with any key the user has ever held.

    >>> from autosmime.smime import decrypt
    >>> result = decrypt(open("enc.eml", "rb").read(), [(key, cert)])   # doctest: +SKIP
    >>> result.report.content_algorithm                                 # doctest: +SKIP
    'aes256_cbc'
    >>> report, pieces = decrypt_stream(open("enc.eml", "rb"), [(key, cert)])   # doctest: +SKIP
    >>> sys.stdout.buffer.writelines(pieces)                                   # doctest: +SKIP

:func:`decrypt_stream` is the same operation for a large message read from a
file or a pipe: it keeps none of the message, its decoded DER or the plaintext
in memory (the ciphertext waits in an unlinked temporary file) and hands the
plaintext out piece by piece.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO, cast

from cryptography import x509

from autosmime.errors import MalformedMessage
from autosmime.smime import mime
from autosmime.smime._cms import enveloped as _enveloped
from autosmime.smime._cmstype import _CMS_FIRST_BYTES, Classified, classify, cms_kind
from autosmime.smime._scan import _blank_line, crlf_only, strip_whitespace
from autosmime.smime.models import DecryptReport, DecryptResult

KeyList = Sequence[tuple[object, x509.Certificate | None]]


def decrypt(message: bytes, keys: KeyList) -> DecryptResult:
    """The outermost encryption layer removed. Raises NotForMe, DecryptionError, ..."""
    return decrypt_classified(classify(message), keys)


def decrypt_classified(layer: Classified, keys: KeyList) -> DecryptResult:
    """:func:`decrypt` of a message already classified (by :func:`read`, which classified it anyway)."""
    _check_enveloped(layer)
    assert layer.msg is not None or layer.der is not None
    outer = layer.msg.outer_headers() if layer.msg is not None else []
    pieces, r = _enveloped.decrypt_pieces(layer.take_der(), _pairs(keys))  # the ciphertext goes before the rejoin
    return DecryptResult(message=mime.rejoin(outer, pieces), report=_report(r))


def decrypt_stream(source: BinaryIO, keys: KeyList) -> tuple[DecryptReport, Iterator[bytes]]:
    """:func:`decrypt` of the message ``source`` reads: (report, the decrypted message in pieces).

    Every error is raised before this returns, so a caller that writes the pieces
    out writes nothing for a message that does not decrypt. A base64
    application/pkcs7-mime message in the common layout is decoded as it is read,
    its ciphertext spooled to an unlinked temporary file (memory if none can be
    written) and decrypted from there as the pieces are consumed; anything else
    is read whole and goes through :func:`decrypt`.
    """
    data, body = _read_head(source)
    if body is None:  # bare CMS, or no header block: read whole
        return _whole(data + source.read(), keys)
    msg = mime.Message.parse(data[:body])
    if mime.kind(msg) != "pkcs7-mime" or msg.transfer_encoding != "base64":
        return _whole(data + source.read(), keys)
    opened = _enveloped.decrypt_chunks(_b64_chunks(data[body:], source), _pairs(keys))
    del data
    if isinstance(opened, bytes):  # another CMS layout: the general path, with the DER decoded already
        result = decrypt_classified(Classified(cms_kind(opened), msg, opened), keys)
        return result.report, iter((result.message,))
    plaintext, r = opened
    return _report(r), _rejoined(msg.outer_headers(), _crlf(plaintext))


_READ = 1 << 20  # input read at a time: a few system calls per 25 MB, little memory in flight


def _read_head(source: BinaryIO) -> tuple[bytes, int | None]:
    """(what was read, where the body starts in it), reading on until the header block has
    ended; None for where when the input is bare CMS or has no blank line."""
    data = source.read(_READ)
    if data[:1] in _CMS_FIRST_BYTES:
        return data, None
    while True:
        blank = _blank_line(data)
        if blank is not None:
            return data, blank[1]
        more = source.read(_READ)
        if not more:
            return data, None
        data += more  # a header block over a megabyte: only then is anything copied


def _whole(message: bytes, keys: KeyList) -> tuple[DecryptReport, Iterator[bytes]]:
    result = decrypt(message, keys)
    return result.report, iter((result.message,))


def _check_enveloped(layer: Classified) -> None:
    if layer.kind != "enveloped":
        if layer.der is not None:
            raise MalformedMessage("the message is signed, not encrypted")
        raise MalformedMessage(f"not an encrypted message ({layer.msg.mime_type if layer.msg else 'bare CMS'})")


def _pairs(keys: KeyList) -> list:
    """(key, cert) tuples from tuples or KeyPairs."""
    return [k if type(k) is tuple else (k.key, k.cert) if hasattr(k, "cert") else k
            for k in cast(Sequence[Any], keys)]


def _report(r: _enveloped.DecryptResult) -> DecryptReport:
    return DecryptReport(content_algorithm=r.content_algorithm, key_algorithm=r.key_algorithm,
                         weak=r.weak, authenticated=r.authenticated, recipient_cert=r.recipient_cert)


def _b64_chunks(first: bytes, source: BinaryIO) -> Iterator[bytes]:
    """Strict base64 of ``first`` and the rest of ``source``, whitespace ignored, decoded as read.

    The verdicts of ``mime.pkcs7_der`` on the whole body: padding may only close the
    last piece, so a "=" seen before the end has the rest judged in one piece.
    """
    carry = b""
    data = first
    while True:
        following = source.read(_READ)
        text = carry + strip_whitespace(data) if carry else strip_whitespace(data)
        if not following:
            if text:
                yield mime._strict_b64(text)
            return
        if b"=" in text:  # padding before the end: the rest is judged with it, as one piece
            yield mime._strict_b64(text + strip_whitespace(following) + strip_whitespace(source.read()))
            return
        # Keep at least one quantum back: the last piece must not start at a "=".
        cut = max(len(text) - 1, 0) // 4 * 4
        if cut:
            yield mime._strict_b64(text[:cut])
        carry = text[cut:]
        data = following


def _crlf(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The pieces in canonical CRLF form, as ``mime.rejoin`` makes the joined whole."""
    carry = b""
    for piece in pieces:
        if carry:
            piece, carry = carry + piece, b""
        if piece.endswith(b"\r"):  # its LF may open the next piece
            piece, carry = piece[:-1], b"\r"
        if piece:
            yield piece if crlf_only(piece) else mime.to_crlf(piece)
    if carry:
        yield mime.CRLF


def _rejoined(outer: list[bytes], pieces: Iterator[bytes]) -> Iterator[bytes]:
    """``mime.rejoin(outer, pieces, canonical=True)``, streamed: it decides from the entity's
    header block, so only the pieces up to its blank line are joined."""
    head = b""
    for piece in pieces:
        head = head + piece if head else piece
        if b"\r\n\r\n" in head:
            break
        if b"\n" in head and not head.startswith(mime.CRLF) and not mime._HEADER_START.match(head):
            break  # content without a header block: its first line decides
    yield mime.rejoin(outer, head, canonical=True)
    yield from pieces
