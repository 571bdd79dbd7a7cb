"""Per-certificate encodings the CMS writers and readers need again and again, computed once.

    >>> from autosmime.pki.profiles import make_ca
    >>> from autosmime.smime._cms.certinfo import cert_der, issuer_and_serial
    >>> _, ca = make_ca("Doc CA")
    >>> cert_der(ca)[:1], issuer_and_serial(ca)[:1]
    (b'0', b'0')

Keyed by the certificate object: cryptography's ``Certificate`` hashes and
compares by its DER, so two loads of the same certificate share an entry and
a different certificate can never hit another's entry.
"""

from __future__ import annotations

from functools import lru_cache

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from autosmime.smime._cms import der as _der

_SIZE = 256  # certificates a process works with at once: the user's, their peers', their CAs


@lru_cache(maxsize=_SIZE)
def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@lru_cache(maxsize=_SIZE)
def issuer_and_serial(cert: x509.Certificate) -> bytes:
    """IssuerAndSerialNumber as SignerInfo writes it: the issuer re-encoded by cryptography."""
    return _der.tlv(_der.SEQUENCE, cert.issuer.public_bytes(), _der.integer(cert.serial_number))


@lru_cache(maxsize=_SIZE)
def issuer_and_serial_raw(cert: x509.Certificate) -> bytes:
    """IssuerAndSerialNumber as RecipientInfos write it: the issuer exactly as in the certificate."""
    tbs = asn1_x509.Certificate.load(cert_der(cert))["tbs_certificate"]
    return _der.tlv(_der.SEQUENCE, tbs["issuer"].dump(), _der.integer(tbs["serial_number"].native))


@lru_cache(maxsize=_SIZE)
def spki_der(public_key_owner: x509.Certificate) -> bytes:
    return public_key_owner.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
