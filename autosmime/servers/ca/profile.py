"""Issuance: the CSR checks and the Mailbox-validated Strict certificate profile.

    >>> from autosmime.servers.ca.profile import check_csr, issue_mailbox_cert   # doctest: +SKIP
    >>> key = check_csr(csr_der, {"alice@example.test"}, account_spki)           # doctest: +SKIP
    >>> cert = issue_mailbox_cert(["alice@example.test"], key, authority, "http://127.0.0.1:8555")  # doctest: +SKIP

The profile follows the S/MIME Baseline Requirements v1.0.10 for a
Mailbox-validated Strict certificate (§7.1.2.3, §7.1.4.2, §7.1.6.1):
subject ``CN=<mailbox>`` only; SAN rfc822Name = exactly the validated
addresses; critical keyUsage (RSA: digitalSignature + keyEncipherment, EC:
digitalSignature + keyAgreement; a CSR asking for signing only or encryption
only gets that); EKU emailProtection only; certificatePolicies
2.23.140.1.5.1.3; CRL distribution point and caIssuers over HTTP; AKI
(keyIdentifier) and SKI; a 159-bit random serial; validity 365 days by
default, never over 825. Keys accepted (§6.1.5): RSA 2048..8192 bits in
multiples of 8 with an odd exponent >= 65537, ECDSA P-256/P-384/P-521.
Before the CA key signs, :class:`PreIssuanceLinter` runs pkilint's
MAILBOX-STRICT linter on the same certificate signed with a throw-away key
(S/MIME BR §4.3.1.2).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from autosmime.servers.ca.authority import Authority
from autosmime.servers.ca.errors import Problem

MAILBOX_STRICT_OID = x509.ObjectIdentifier("2.23.140.1.5.1.3")
MAX_VALIDITY_DAYS = 825
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def normalise_address(address: str) -> str:
    """Local part as given, domain lower-case (and A-labels for a non-ASCII domain)."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local or not domain:
        raise ValueError(f"not an email address: {address!r}")
    domain = domain.lower().rstrip(".")
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


def spki_der(public_key: object) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def check_public_key(key: object) -> PublicKey:
    """The key, if the S/MIME BRs allow it for a subscriber; else ``badCSR``."""
    if isinstance(key, rsa.RSAPublicKey):
        n = key.public_numbers()
        if key.key_size < 2048 or key.key_size > 8192 or key.key_size % 8:
            raise Problem.bad_csr(f"RSA key of {key.key_size} bits: 2048..8192 in multiples of 8 required")
        if n.e < 65537 or n.e % 2 == 0:
            raise Problem.bad_csr("RSA public exponent must be odd and at least 65537")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise Problem.bad_csr(f"EC curve {key.curve.name} not allowed (P-256, P-384, P-521)")
        return key
    raise Problem.bad_csr(f"key type {type(key).__name__} not allowed (RSA or ECDSA)")


def check_csr(csr_der: bytes, identifiers: Iterable[str], account_spki: bytes) -> tuple[PublicKey, str]:
    """The CSR's public key and the usage it asks for ("dual", "sign", "encrypt"), or ``badCSR``."""
    try:
        csr = x509.load_der_x509_csr(csr_der)
    except ValueError:
        raise Problem.bad_csr("not a DER-encoded PKCS#10 request") from None
    try:
        public_key = csr.public_key()
    except (ValueError, TypeError) as e:
        raise Problem.bad_csr(f"unsupported public key: {e}") from None
    key = check_public_key(public_key)
    if not csr.is_signature_valid:
        raise Problem.bad_csr("the CSR signature does not verify")
    if spki_der(key) == account_spki:
        raise Problem.bad_csr("the certificate key must not be the account key")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise Problem.bad_csr("the CSR has no subjectAltName with the order's email addresses") from None
    except ValueError as e:
        raise Problem.bad_csr(f"unreadable CSR extensions: {e}") from None
    addresses: set[str] = set()
    for name in san:
        if not isinstance(name, x509.RFC822Name):
            raise Problem.bad_csr(f"only rfc822Name SAN entries are allowed, not {type(name).__name__}")
        try:
            addresses.add(normalise_address(name.value))
        except ValueError as e:
            raise Problem.bad_csr(str(e)) from None
    wanted = {normalise_address(i) for i in identifiers}
    if addresses != wanted:
        raise Problem.bad_csr("the CSR's subjectAltName addresses must equal the order's identifiers exactly")
    for attr in csr.subject:
        if attr.oid not in (NameOID.COMMON_NAME, NameOID.EMAIL_ADDRESS):
            continue  # ignored: the subject is ours to write
        try:
            value = normalise_address(str(attr.value))
        except ValueError:
            raise Problem.bad_csr("subject commonName/emailAddress must be one of the order's addresses") from None
        if value not in wanted:
            raise Problem.bad_csr("subject commonName/emailAddress must be one of the order's addresses")
    return key, _usage_wish(csr)


def _usage_wish(csr: x509.CertificateSigningRequest) -> str:
    try:
        ku = csr.extensions.get_extension_for_class(x509.KeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return "dual"
    sign = ku.digital_signature or ku.content_commitment
    encrypt = ku.key_encipherment or ku.key_agreement
    if sign and not encrypt:
        return "sign"
    if encrypt and not sign:
        return "encrypt"
    return "dual"


def key_usage(key: PublicKey, usage: str = "dual") -> x509.KeyUsage:
    is_ec = isinstance(key, ec.EllipticCurvePublicKey)
    sign = usage in ("dual", "sign")
    encrypt = usage in ("dual", "encrypt")
    return x509.KeyUsage(digital_signature=sign, content_commitment=False,
                         key_encipherment=encrypt and not is_ec, data_encipherment=False,
                         key_agreement=encrypt and is_ec, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def crl_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/crl/issuing.crl"


def ca_issuers_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/ca/issuing.der"


class PreIssuanceLinter:
    """pkilint's S/MIME linter (MAILBOX-STRICT) run on the to-be-signed certificate (S/MIME BR §4.3.1.2).

    The certificate is first signed with a throw-away key of the CA key's type
    (so the encoding is exactly what the CA will sign) and linted; only a
    certificate without FATAL or ERROR findings is then signed with the CA key.
    ``cabf.internal_domain_name`` is not counted: a CA on loopback or under a
    ``.test`` name (the devstack, the tests) cannot avoid it, and it says
    nothing about the profile. About 5 ms a certificate.
    """

    IGNORED = frozenset({"cabf.internal_domain_name"})

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._validator: Any = None
        self._dummy: ec.EllipticCurvePrivateKey | None = None

    def _setup(self, curve: ec.EllipticCurve) -> None:
        from pkilint.cabf import smime
        from pkilint.cabf.smime.smime_constants import Generation, ValidationLevel
        from pkilint.pkix import certificate

        self._validator = certificate.create_pkix_certificate_validator_container(
            smime.create_decoding_validators(),
            smime.create_subscriber_validators(ValidationLevel.MAILBOX, Generation.STRICT))
        self._dummy = ec.generate_private_key(curve)

    def findings(self, builder: x509.CertificateBuilder, ca_key: ec.EllipticCurvePrivateKey) -> list[str]:
        """The FATAL/ERROR finding codes for what ``builder`` would become (empty: fine to sign)."""
        from pkilint import loader

        with self._lock:
            if self._validator is None or self._dummy is None or self._dummy.curve.name != ca_key.curve.name:
                self._setup(ca_key.curve)
            assert self._dummy is not None
            der = builder.sign(self._dummy, hashes.SHA384()).public_bytes(serialization.Encoding.DER)
            doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
            results = self._validator.validate(doc.root)
        return sorted({f.finding.code for r in results for f in r.finding_descriptions
                       if f.finding.severity.name in ("FATAL", "ERROR") and f.finding.code not in self.IGNORED})


def issue_mailbox_cert(addresses: list[str], key: PublicKey, authority: Authority, base_url: str, *,
                       days: int | None = None, usage: str = "dual", now: _dt.datetime | None = None,
                       linter: PreIssuanceLinter | None = None) -> x509.Certificate:
    """Sign a Mailbox-validated Strict certificate for ``addresses`` (already validated).

    With ``linter``, the certificate is linted before the CA key signs it;
    findings raise ``serverInternal`` and nothing is signed.
    """
    days = authority.validity_days if days is None else days
    if not 1 <= days <= MAX_VALIDITY_DAYS:
        raise ValueError(f"validity {days} days is outside 1..{MAX_VALIDITY_DAYS}")
    start = (now or _dt.datetime.now(_dt.UTC)).replace(microsecond=0) - _dt.timedelta(minutes=5)
    issuer = authority.issuing_cert
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, addresses[0])]))
        .issuer_name(issuer.subject)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _dt.timedelta(days=days))
        .add_extension(key_usage(key, usage), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(a) for a in addresses]), critical=False)
        .add_extension(x509.CertificatePolicies([x509.PolicyInformation(MAILBOX_STRICT_OID, None)]),
                       critical=False)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_url(base_url))], relative_name=None, reasons=None,
            crl_issuer=None)]), critical=False)
        .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
            x509.UniformResourceIdentifier(ca_issuers_url(base_url)))]), critical=False)
        .add_extension(_aki(issuer), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
    )
    if linter is not None:
        found = linter.findings(builder, authority.issuing_key)
        if found:
            raise Problem.server_internal(f"pre-issuance lint failed ({', '.join(found)}); nothing was signed")
    return builder.sign(authority.issuing_key, hashes.SHA384())


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier(key_identifier=ski.digest, authority_cert_issuer=None,
                                       authority_cert_serial_number=None)


# RFC 5280 reason codes the CA accepts (no unspecified, no certificateHold: S/MIME BR §7.2.2).
REASONS = {1: x509.ReasonFlags.key_compromise, 3: x509.ReasonFlags.affiliation_changed,
           4: x509.ReasonFlags.superseded, 5: x509.ReasonFlags.cessation_of_operation,
           9: x509.ReasonFlags.privilege_withdrawn}


def build_crl(authority: Authority, revoked: Iterable[tuple[int, _dt.datetime, int | None]], number: int,
              now: _dt.datetime, next_days: int = 7) -> x509.CertificateRevocationList:
    """The issuing CA's CRL: ``revoked`` = (serial, revocation time, reason code or None)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.issuing_cert.subject)
        .last_update(now)
        .next_update(now + _dt.timedelta(days=next_days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(_aki(authority.issuing_cert), critical=False)
    )
    for serial, when, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        if reason in REASONS:
            entry = entry.add_extension(x509.CRLReason(REASONS[reason]), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(authority.issuing_key, hashes.SHA384())
