"""Which certificate to encrypt to: address normalisation, the usability filter and the ranking.

    >>> from autosmime.pki.profiles import new_key, make_ca, make_mailbox_cert
    >>> from autosmime.pki.select import choose_recipient_cert, normalize_address
    >>> ca_key, ca = make_ca("Doc CA", new_key("ec"))
    >>> cert = make_mailbox_cert("bob@example.test", new_key("ec").public_key(), ca_key, ca)
    >>> normalize_address(" Bob@EXAMPLE.test ")
    'bob@example.test'
    >>> choose_recipient_cert("bob@example.test", [cert], [ca]) is cert
    True

The filter (all must hold): the certificate names the address (SAN rfc822Name,
compared after normalisation), EKU emailProtection, key usage allows key
management (keyEncipherment for RSA, keyAgreement for EC), the chain validates
to the given roots now, and the status is not "revoked". Then the rank: the
owner's preference first, then the newest notBefore, ties to the latest
notAfter (NSS ``CERT_SortCBValidity``; shared/research/key-exchange.md 6).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from collections.abc import Collection, Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from autosmime.errors import NoKey, UntrustedSigner, UsageError
from autosmime.pki.certs import cert_addresses, fingerprint
from autosmime.pki.validate import validate

__all__ = ["normalize_address", "address_label", "can_encrypt", "validate_for",
           "usable_for_encryption", "rank_key", "choose_recipient_cert"]

_MAX_ADDRESS = 254
# Whitespace, controls, and the specials that would need quoting (which the directory does not accept).
_FORBIDDEN = re.compile(r'[\s\x00-\x1f\x7f<>(),;:\\"\[\]]')


def normalize_address(address: str) -> str:
    """The address as the directory indexes it: trimmed, lower-cased, the domain as an IDNA A-label.

    Raises UsageError for anything that is not a plausible RFC 5321 mailbox.
    """
    text = address.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or len(text) > _MAX_ADDRESS or _FORBIDDEN.search(text) or "@" in local:
        raise UsageError(f"not an e-mail address: {address!r}")
    try:
        domain = domain.lower() if domain.isascii() else domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UsageError(f"not an e-mail address (bad domain): {address!r}") from None
    if domain.startswith(".") or domain.endswith(".") or ".." in domain:
        raise UsageError(f"not an e-mail address (bad domain): {address!r}")
    return f"{local.lower()}@{domain}"


def address_label(address: str) -> bytes:
    """The transparency log's label for an address: SHA-256("smimedir/label/v1" || normalised address)."""
    return hashlib.sha256(b"smimedir/label/v1" + normalize_address(address).encode()).digest()


def can_encrypt(cert: x509.Certificate) -> bool:
    """Key usage (when present) allows key management for this key type; never for EdDSA keys."""
    key = cert.public_key()
    try:
        ku: x509.KeyUsage | None = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    except ValueError:
        return False
    if isinstance(key, rsa.RSAPublicKey):
        return ku is None or ku.key_encipherment
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ku is None or ku.key_agreement
    return False


def _has_email_eku(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return ExtendedKeyUsageOID.EMAIL_PROTECTION in eku


def validate_for(cert: x509.Certificate, pool: Sequence[x509.Certificate], roots: Sequence[x509.Certificate],
                 purpose: str, at: _dt.datetime | None = None) -> list[x509.Certificate]:
    """The validated chain (leaf first) for ``purpose`` "sign" or "encrypt"; UntrustedSigner otherwise."""
    return list(validate(cert, pool, roots, at=at, purpose=purpose).chain)  # type: ignore[arg-type]


def usable_for_encryption(address: str, cert: x509.Certificate, roots: Sequence[x509.Certificate],
                          pool: Sequence[x509.Certificate] = (), *, status: str = "unknown",
                          at: _dt.datetime | None = None) -> str | None:
    """None if ``cert`` may be encrypted to for ``address``, else the reason why not (one line)."""
    try:
        wanted = normalize_address(address)
    except UsageError as e:
        return str(e)
    names = []
    for a in cert_addresses(cert):
        try:
            names.append(normalize_address(a))
        except UsageError:
            continue
    if wanted not in names:
        return f"the certificate is for {', '.join(names) or 'no address'}, not {wanted}"
    if not _has_email_eku(cert):
        return "the certificate is not for e-mail protection (no EKU emailProtection)"
    if not can_encrypt(cert):
        return "the certificate's key usage does not allow encryption"
    if status == "revoked":
        return "the certificate is revoked"
    try:
        validate_for(cert, pool, roots, "encrypt", at)
    except UntrustedSigner as e:
        return str(e)
    return None


def rank_key(cert: x509.Certificate, preferred: bool = False) -> tuple:
    """Sort key, larger is better: preference, then newest notBefore, then latest notAfter."""
    return (preferred, cert.not_valid_before_utc, cert.not_valid_after_utc)


def choose_recipient_cert(address: str, candidates: Sequence[x509.Certificate], roots: Sequence[x509.Certificate],
                          pool: Sequence[x509.Certificate] = (), *, statuses: Mapping[str, str] | None = None,
                          preferred: Collection[str] = (), at: _dt.datetime | None = None) -> x509.Certificate:
    """The best usable certificate among ``candidates`` for ``address``; NoKey with the reasons if none.

    ``statuses`` maps a certificate's SHA-256 hex to good/revoked/unknown; ``preferred`` holds the
    SHA-256 hex of the owner's preferred certificates.
    """
    statuses = statuses or {}
    usable: list[x509.Certificate] = []
    reasons: list[str] = []
    for cert in candidates:
        digest = fingerprint(cert)
        why = usable_for_encryption(address, cert, roots, [*pool, *candidates], status=statuses.get(digest, "unknown"),
                                    at=at)
        if why is None:
            usable.append(cert)
        else:
            reasons.append(f"{digest[:16]}: {why}")
    if not usable:
        detail = "; ".join(reasons) if reasons else "none known"
        raise NoKey(f"no usable encryption certificate for {address} ({detail})")
    return max(usable, key=lambda c: rank_key(c, fingerprint(c) in preferred))
