"""Per-certificate encodings the CMS writers and readers need again and again, computed once.

    >>> from autosmime.pki.profiles import make_ca
    >>> from autosmime.smime._cms.certinfo import issuer_and_serial, spki_der
    >>> _, ca = make_ca("Doc CA")
    >>> spki_der(ca)[:1], issuer_and_serial(ca)[:1]
    (b'0', b'0')

Keyed by the certificate object (:mod:`autosmime.pki.certcache`).
"""

from __future__ import annotations

from asn1crypto import x509 as asn1_x509
from cryptography import x509

from autosmime.pki.certcache import cert_der, per_certificate
from autosmime.pki.certs import spki
from autosmime.smime._cms import der as _der


@per_certificate()
def issuer_and_serial(cert: x509.Certificate) -> bytes:
    """IssuerAndSerialNumber as SignerInfo writes it: the issuer re-encoded by cryptography."""
    return _der.tlv(_der.SEQUENCE, cert.issuer.public_bytes(), _der.integer(cert.serial_number))


@per_certificate()
def issuer_and_serial_raw(cert: x509.Certificate) -> bytes:
    """IssuerAndSerialNumber as RecipientInfos write it: the issuer exactly as in the certificate."""
    tbs = asn1_x509.Certificate.load(cert_der(cert))["tbs_certificate"]
    return _der.tlv(_der.SEQUENCE, tbs["issuer"].dump(), _der.integer(tbs["serial_number"].native))


@per_certificate()
def spki_der(public_key_owner: x509.Certificate) -> bytes:
    return spki(public_key_owner)
