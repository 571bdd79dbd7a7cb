"""Sign a message.

    >>> from autosmime.smime import sign
    >>> signed = sign(open("in.eml", "rb").read(), key, cert)   # doctest: +SKIP
    >>> signed.split(b"\\r\\n\\r\\n")[0]                           # doctest: +SKIP
    b'From: ...Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;...'

The entity is canonicalised once (CRLF, 7-bit safe) and exactly those bytes
are signed and sent: nothing re-serialises them afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from autosmime.smime import mime
from autosmime.smime._cms import signed as _signed


def micalg_for(key) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = key.curve.key_size
        return "sha-512" if size > 384 else "sha-384" if size > 256 else "sha-256"
    return "sha-256"


def sign(message: bytes, key, cert: x509.Certificate, chain: Sequence[x509.Certificate] = (), *,
         opaque: bool = False, pss: bool = False) -> bytes:
    """The message signed: detached multipart/signed, or opaque application/pkcs7-mime."""
    msg = mime.Message.parse(message)
    entity = msg.entity_chunks()  # pieces of the raw message, not a copy of it
    der = _signed.sign(entity, key, cert, chain, detached=not opaque, pss=pss)
    if opaque:
        return mime.pkcs7_mime(msg.outer_headers(), der, "signed-data")
    return mime.multipart_signed(msg.outer_headers(), entity, der, micalg_for(key))
