"""Loading keys and certificates from the files users have.

    >>> from autosmime.pki.keys import load_p12
    >>> bundle = load_p12(open("../shared/vectors/nss-interop-openssl/Fran.p12", "rb").read(), b"nss")  # doctest: +SKIP
    >>> bundle.cert.subject.rfc4514_string()  # doctest: +SKIP
    'CN=Fran,...'
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from cryptography.hazmat.primitives.serialization import pkcs12

from autosmime.errors import KeyFileError, WrongPassword
from autosmime.pki.certs import same_key

__all__ = ["KeyPair", "PrivateKey", "as_private_key", "load_certificates", "load_key_and_cert", "load_p12",
           "load_private_key", "read_file", "read_first_line"]

#: Every kind of private key autosmime holds: S/MIME signing (RSA, ECDSA, EdDSA) and decryption
#: (RSA, ECDH, X25519). The one alias for "a private key" throughout autosmime.
PrivateKey = (rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
              | ed448.Ed448PrivateKey | x25519.X25519PrivateKey)
_PRIVATE_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
                      ed448.Ed448PrivateKey, x25519.X25519PrivateKey)


def as_private_key(obj: object) -> PrivateKey:
    """``obj`` as a :data:`PrivateKey`; KeyFileError for a key type S/MIME has no use for (DSA, DH, X448)."""
    if not isinstance(obj, _PRIVATE_KEY_TYPES):
        raise KeyFileError(f"unsupported private key type {type(obj).__name__}")
    return obj


@dataclass(frozen=True)
class KeyPair:
    """A private key with its certificate and the chain that came with it."""

    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = field(default_factory=tuple)


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in PEM (one or many) or DER ``data``."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise KeyFileError(f"not a certificate file: {e}") from None


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    """A private key from PEM or DER (PKCS#8, PKCS#1 or SEC1)."""
    loaders = (
        (serialization.load_pem_private_key,)
        if b"-----BEGIN" in data
        else (serialization.load_der_private_key,)
    )
    for loader in loaders:
        try:
            return as_private_key(loader(data, password))
        except TypeError as e:  # encrypted without a password, or the reverse
            raise WrongPassword(f"key file: {e}") from None
        except ValueError as e:
            if "password" in str(e).lower() or "decrypt" in str(e).lower():
                raise WrongPassword("the password does not open the key file") from None
            raise KeyFileError(f"not a private key file: {e}") from None
    raise KeyFileError("not a private key file")  # pragma: no cover


def read_file(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read {path}: {e.strerror}") from None


def read_first_line(path: str | os.PathLike[str]) -> bytes:
    """The first line of a password file, without its line ending ("" for an empty file)."""
    lines = read_file(path).splitlines()
    return lines[0] if lines else b""


def load_key_and_cert(key_path: str | Path, cert_path: str | Path,
                      chain_path: str | Path | None = None) -> KeyPair:
    """A :class:`KeyPair` from a key file, a certificate file and an optional chain file."""
    key = load_private_key(read_file(key_path))
    certs = load_certificates(read_file(cert_path))
    chain = list(certs[1:])
    if chain_path:
        chain += load_certificates(read_file(chain_path))
    cert = certs[0]
    if not same_key(key, cert):
        raise KeyFileError(f"the certificate in {cert_path} does not belong to the key in {key_path}")
    return KeyPair(key, cert, tuple(chain))


def load_p12(data: bytes, password: bytes | None) -> KeyPair:
    """The key, its certificate and the other certificates of a PKCS#12 file.

    NSS (Thunderbird) writes BER; cryptography accepts it with a deprecation
    warning, which is not the user's business.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p12 = pkcs12.load_pkcs12(data, password)
    except ValueError as e:
        text = str(e).lower()
        if "password" in text or "mac" in text or "decrypt" in text:
            raise WrongPassword("the password does not open the PKCS#12 file") from None
        raise KeyFileError(f"not a PKCS#12 file: {e}") from None
    if p12.key is None or p12.cert is None:
        raise KeyFileError("the PKCS#12 file holds no private key with a certificate")
    return KeyPair(as_private_key(p12.key), p12.cert.certificate, tuple(c.certificate for c in p12.additional_certs))
