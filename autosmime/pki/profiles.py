"""Certificate profiles: the shapes of the CA and mailbox certificates autosmime issues.

    >>> from autosmime.pki.profiles import new_key, make_ca, make_mailbox_cert
    >>> ca_key, ca_cert = make_ca("Example Test CA")
    >>> key = new_key("ec")
    >>> cert = make_mailbox_cert("alice@example.test", key.public_key(), ca_key, ca_cert)
    >>> cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.RFC822Name)
    ['alice@example.test']

The mailbox profile follows the S/MIME Baseline Requirements' strict
mailbox-validated shape (SAN rfc822Name only, EKU emailProtection, key usage
chosen by key type). The embedded CA server and the tests use the same code,
so what tests exercise is what users get.
"""

from __future__ import annotations

import datetime as _dt
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyKind = Literal["rsa", "rsa3072", "rsa4096", "ec", "ec384"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def new_key(kind: KeyKind = "rsa") -> PrivateKey:
    """A fresh private key, made on this device."""
    if kind == "rsa":
        return rsa.generate_private_key(65537, 2048)
    if kind == "rsa3072":
        return rsa.generate_private_key(65537, 3072)
    if kind == "rsa4096":
        return rsa.generate_private_key(65537, 4096)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"unknown key kind {kind!r}")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def make_ca(
    common_name: str,
    key: PrivateKey | None = None,
    *,
    not_before: _dt.datetime | None = None,
    days: int = 3650,
    issuer_key: PrivateKey | None = None,
    issuer_cert: x509.Certificate | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """A CA certificate: self-signed root, or an intermediate when an issuer is given."""
    key = key or new_key("rsa3072")
    start = not_before or _now() - _dt.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer_key = issuer_key or key
    issuer_name = issuer_cert.subject if issuer_cert is not None else name
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False
        )
    )
    return key, builder.sign(signer_key, _hash_for(signer_key))


def make_mailbox_cert(
    email: str,
    public_key: PublicKey,
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    *,
    not_before: _dt.datetime | None = None,
    days: int = 365,
    common_name: str | None = None,
) -> x509.Certificate:
    """A mailbox-validated S/MIME certificate for ``email``."""
    start = not_before or _now() - _dt.timedelta(minutes=5)
    is_ec = isinstance(public_key, ec.EllipticCurvePublicKey)
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=not is_ec,
        data_encipherment=False, key_agreement=is_ec, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name or email),
         x509.NameAttribute(NameOID.EMAIL_ADDRESS, email)]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    return builder.sign(ca_key, _hash_for(ca_key))
