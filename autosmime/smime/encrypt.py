"""Encrypt a message to its recipients — and always to the sender too.

    >>> from autosmime.smime import encrypt, sign_and_encrypt
    >>> out = encrypt(open("in.eml", "rb").read(), [bob_cert], sender_cert=my_cert)   # doctest: +SKIP
    >>> out = sign_and_encrypt(open("in.eml", "rb").read(), my_key, my_cert, [bob_cert])   # doctest: +SKIP

The default "interop" profile is what every client decrypts (AES-256-CBC,
RSA PKCS#1 v1.5, ECDH P-256 for EC certificates); "modern" uses
AuthEnvelopedData AES-256-GCM with RSA-OAEP, for recipients known to read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from cryptography import x509

from autosmime.pki.certcache import unique_certificates
from autosmime.smime import mime
from autosmime.smime._cms import enveloped as _enveloped
from autosmime.smime._cms import signed as _signed
from autosmime.smime.sign import micalg_for

Profile = Literal["interop", "modern"]


def encrypt(message: bytes, recipient_certs: Sequence[x509.Certificate], *,
            sender_cert: x509.Certificate | None = None, profile: Profile = "interop") -> bytes:
    """The message encrypted to every recipient and to ``sender_cert`` (so Sent stays readable)."""
    # The sender, often also a recipient, is encrypted to once.
    recipients = unique_certificates([*recipient_certs, *([sender_cert] if sender_cert is not None else [])])
    msg = mime.Message.parse(message)
    return _envelope(msg.outer_headers(), msg.entity_chunks(), recipients, profile)


def sign_and_encrypt(message: bytes, key, cert: x509.Certificate, recipient_certs: Sequence[x509.Certificate], *,
                     sender_cert: x509.Certificate | None = None, chain: Sequence[x509.Certificate] = (),
                     profile: Profile = "interop", pss: bool = False) -> bytes:
    """``encrypt(sign(message, key, cert, chain), recipient_certs, sender_cert=...)``, in one pass.

    ``sender_cert`` is the sender's encryption certificate, for the Sent copy;
    by default the signing certificate ``cert``, as most mailbox certificates
    serve both. The multipart/signed entity goes into the envelope as it is
    built: it is canonical by construction, so it is not joined, re-parsed and
    re-checked in between.
    """
    msg = mime.Message.parse(message)
    entity = msg.entity_chunks()
    content_type, body = mime.signed_entity(entity, _signed.sign(entity, key, cert, chain, pss=pss), micalg_for(key))
    return _envelope(msg.outer_headers(), [content_type, mime.CRLF, *body],
                     unique_certificates([*recipient_certs, sender_cert or cert]), profile)


def _envelope(outer: list[bytes], entity: Sequence, recipients: list[x509.Certificate], profile: Profile) -> bytes:
    # The ciphertext streams from the entity's pieces straight into the base64 output.
    der_len, der = _enveloped.encrypt_chunks(entity, recipients, profile)
    smime_type = "authEnveloped-data" if profile == "modern" else "enveloped-data"
    return mime.pkcs7_mime(outer, der, smime_type, der_len)
