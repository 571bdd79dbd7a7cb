"""Encrypt a message to its recipients — and always to the sender too.

    >>> from autosmime.smime import encrypt
    >>> out = encrypt(open("in.eml", "rb").read(), [bob_cert], sender_cert=my_cert)   # doctest: +SKIP

The default "interop" profile is what every client decrypts (AES-256-CBC,
RSA PKCS#1 v1.5, ECDH P-256 for EC certificates); "modern" uses
AuthEnvelopedData AES-256-GCM with RSA-OAEP, for recipients known to read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from cryptography import x509

from autosmime.smime import mime
from autosmime.smime._cms import enveloped as _enveloped
from autosmime.smime._cms.certinfo import cert_der

Profile = Literal["interop", "modern"]


def encrypt(message: bytes, recipient_certs: Sequence[x509.Certificate], *,
            sender_cert: x509.Certificate | None = None, profile: Profile = "interop") -> bytes:
    """The message encrypted to every recipient and to ``sender_cert`` (so Sent stays readable)."""
    # The sender, often also a recipient, is encrypted to once (certificates are equal by their DER).
    everyone = [*recipient_certs, *([sender_cert] if sender_cert is not None else [])]
    unique: dict[bytes, x509.Certificate] = {}
    for cert in everyone:
        unique.setdefault(cert_der(cert), cert)
    recipients = list(unique.values())
    msg = mime.Message.parse(message)
    # The ciphertext streams from the raw message's bytes straight into the base64 output.
    der_len, der = _enveloped.encrypt_chunks(msg.entity_chunks(), recipients, profile)
    smime_type = "authEnveloped-data" if profile == "modern" else "enveloped-data"
    return mime.pkcs7_mime(msg.outer_headers(), der, smime_type, der_len)
