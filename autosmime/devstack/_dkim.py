"""DKIM for the devstack's mail domain: the key, its DNS record, and signing outgoing mail.

    >>> from autosmime.devstack._dkim import make_key, txt_record, sign
    >>> pem = make_key()
    >>> txt_record("mail", "example.test", pem).startswith('mail._domainkey.example.test. 300 IN TXT "v=DKIM1;')
    True
    >>> raw = b"From: a@example.test\\r\\nTo: b@example.test\\r\\nSubject: x\\r\\n\\r\\nhi\\r\\n"
    >>> sign(raw, "example.test", "mail", pem).startswith(b"DKIM-Signature:")
    True

Like a provider's outbound MTA, the stack signs mail whose From is in its own
domain and passes everything else through untouched (the CA signs its own).
"""

from __future__ import annotations

import base64
import email.utils
from email import message_from_bytes, policy

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SELECTOR = "mail"
# Everything RFC 8823 §3.2 asks a reply's signature to cover; absent ones are signed as absent.
SIGNED_HEADERS = [b"from", b"sender", b"reply-to", b"to", b"cc", b"subject", b"date", b"in-reply-to",
                  b"references", b"message-id", b"auto-submitted", b"mime-version", b"content-type",
                  b"content-transfer-encoding"]


def make_key() -> bytes:
    """A fresh RSA-2048 DKIM key, PKCS#1 PEM (what dkimpy signs with)."""
    key = rsa.generate_private_key(65537, 2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def txt_record(selector: str, domain: str, pem: bytes, ttl: int = 300) -> str:
    """The zone-file line publishing the key, split into quoted strings of at most 250 characters."""
    key = serialization.load_pem_private_key(pem, None)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    value = f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"
    strings = " ".join(f'"{value[i:i + 250]}"' for i in range(0, len(value), 250))
    return f"{selector}._domainkey.{domain.rstrip('.')}. {ttl} IN TXT {strings}\n"


def from_domain(raw: bytes) -> str | None:
    msg = message_from_bytes(raw, policy=policy.compat32)
    addrs = [a for _n, a in email.utils.getaddresses(msg.get_all("From") or []) if a]
    return addrs[0].rpartition("@")[2].lower() if len(addrs) == 1 else None


def sign(raw: bytes, domain: str, selector: str, pem: bytes) -> bytes:
    """``raw`` with a DKIM-Signature for ``domain`` prepended (relaxed/relaxed)."""
    import dkim

    sig = dkim.sign(raw, selector.encode(), domain.encode(), pem, include_headers=SIGNED_HEADERS,
                    canonicalize=(b"relaxed", b"relaxed"))
    return sig + raw


def sign_if_ours(raw: bytes, domain: str, selector: str, pem: bytes) -> bytes:
    """Sign mail From ``domain``; anything else (e.g. the CA's own signed mail) passes unchanged."""
    if from_domain(raw) != domain.lower():
        return raw
    return sign(raw, domain, selector, pem)
