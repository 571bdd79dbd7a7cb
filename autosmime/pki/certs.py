"""What autosmime asks of a certificate: its addresses, fingerprint, key roles and public key.

    >>> from autosmime.pki.profiles import new_key, make_ca, make_mailbox_cert
    >>> from autosmime.pki.certs import cert_address, cert_addresses, fingerprint, key_roles, same_key
    >>> ca_key, ca = make_ca("Doc CA", new_key("ec"))
    >>> key = new_key("ec"); cert = make_mailbox_cert("Alice@Example.test", key.public_key(), ca_key, ca)
    >>> cert_addresses(cert), cert_address(cert)
    (['alice@example.test'], 'alice@example.test')
    >>> len(fingerprint(cert)), sorted(key_roles(cert)), same_key(key, cert)
    (64, ['encrypt', 'sign'], True)

One function for each question, so the vault, the backup format, the PKCS#12
codec, path validation and the CLI all give the same answer.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from autosmime.pki.certcache import per_certificate

__all__ = ["cert_address", "cert_addresses", "fingerprint", "key_roles", "normalize_fingerprint", "same_key",
           "spki"]

# What cryptography raises for a certificate whose extensions cannot be read.
_BAD_CERT = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def cert_addresses(cert: x509.Certificate) -> list[str]:
    """Lower-cased rfc822Name SAN values, plus subject emailAddress if no SAN rfc822Name."""
    return list(_cert_addresses(cert))


@per_certificate(256)  # asked once per verified message
def _cert_addresses(cert: x509.Certificate) -> tuple[str, ...]:
    found: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found = [a.lower() for a in san.get_values_for_type(x509.RFC822Name)]
    except x509.ExtensionNotFound:
        pass
    except _BAD_CERT:  # unparsable extensions: the certificate names nobody
        return ()
    if not found:
        try:
            found = [str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
        except ValueError:
            return ()
    return tuple(dict.fromkeys(found))


def cert_address(cert: x509.Certificate) -> str | None:
    """The mailbox address a certificate is for (its first one, lower case), or None."""
    found = _cert_addresses(cert)
    return found[0] if found else None


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate DER, 64 lowercase hex digits: how autosmime names a certificate."""
    return cert.fingerprint(hashes.SHA256()).hex()


def normalize_fingerprint(text: str) -> str:
    """A fingerprint as people paste it (colons, spaces, upper case) -> the :func:`fingerprint` form."""
    return text.replace(":", "").replace(" ", "").lower()


def key_roles(cert: x509.Certificate) -> frozenset[str]:
    """"sign" and/or "encrypt", from the key usage (both when it is absent).

    People with separate signing and encryption certificates (RFC 9216's
    personas, many enterprise CAs) have one active certificate per role.
    """
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset({"sign", "encrypt"})
    roles = set()
    if ku.digital_signature or ku.content_commitment:
        roles.add("sign")
    if ku.key_encipherment or ku.key_agreement:
        roles.add("encrypt")
    return frozenset(roles or {"sign", "encrypt"})


def spki(owner: Any) -> bytes:
    """DER SubjectPublicKeyInfo of a certificate, a private key's public half, or a public key."""
    public = owner.public_key() if hasattr(owner, "public_key") else owner
    return bytes(public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def same_key(key: object, cert: x509.Certificate) -> bool:
    """True when ``key`` (private or public) is the key ``cert`` certifies."""
    return spki(key) == spki(cert)
