"""Is a signer's certificate trusted for S/MIME? Path validation against the user's own roots.

    >>> from autosmime.pki.profiles import new_key, make_ca, make_mailbox_cert
    >>> from autosmime.pki.validate import validate_signer, cert_addresses
    >>> ca_key, ca_cert = make_ca("Doc CA", new_key("ec"))
    >>> cert = make_mailbox_cert("Alice@Example.test", new_key("ec").public_key(), ca_key, ca_cert)
    >>> [c.subject.rfc4514_string() for c in validate_signer(cert, [], [ca_cert])]
    ['1.2.840.113549.1.9.1=Alice@Example.test,CN=Alice@Example.test', 'CN=Doc CA']
    >>> cert_addresses(cert)
    ['alice@example.test']

Chains are built and checked by ``cryptography.x509.verification`` with its
WebPKI CA profile, except that a CA's extended key usage must allow
emailProtection (S/MIME CAs carry it) instead of TLS client auth. The leaf
must carry EKU emailProtection (or anyExtendedKeyUsage) and, when key usage is
present, digitalSignature or nonRepudiation.

cryptography's verifier refuses Ed25519/Ed448 keys and signatures outright
("Forbidden public key algorithm"), which rules out the RFC 9216 sample PKI
(an Ed25519 root and cross certificates). Only for paths that contain an
EdDSA key or signature, a small permissive builder takes over: it still checks
each signature, validity at ``at``, basicConstraints CA=true with pathLen,
keyCertSign, no unknown critical extension, and the same leaf rules.

ExpiredSigner (a subclass of UntrustedSigner) means validity is the only
problem: either the same certificates form a fully checked path at some other
moment, or, when their windows never overlap, each passes the permissive rules
inside its own window. The message names the first such certificate and its dates.

No OS trust store and no revocation: trust is exactly ``trust_roots``.

Successful validations are memoised (a bounded LRU keyed by the exact
certificates passed); a repeat re-checks only the validity windows at ``at``,
and anything outside its window takes the full validation again.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from autosmime.errors import ExpiredSigner, UntrustedSigner
from autosmime.pki.certcache import cert_der, per_certificate, unique_certificates

__all__ = ["Note", "Purpose", "ValidatedPath", "cert_addresses", "validate", "validate_signer"]

Purpose = Literal["sign", "encrypt"]


@dataclass(frozen=True, slots=True)
class Note:
    """A deviation from the S/MIME BR strict profile that does not make the path invalid.

    ``code`` is stable (for JSON and tests): ``no-eku``, ``bc-not-critical``, ``sha1-in-chain``;
    ``text`` is one line naming the certificate.
    """

    code: str
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class ValidatedPath:
    """A certification path valid at ``at`` for ``purpose``: leaf first, trust anchor last."""

    chain: tuple[x509.Certificate, ...]
    notes: tuple[Note, ...]
    at: _dt.datetime
    purpose: Purpose

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def anchor(self) -> x509.Certificate:
        return self.chain[-1]

_ANY_EKU = x509.ObjectIdentifier("2.5.29.37.0")
_MAX_DEPTH = 8
_EDDSA_SIGNATURES = {SignatureAlgorithmOID.ED25519, SignatureAlgorithmOID.ED448}
# Critical extensions the permissive builder understands (and therefore may accept).
_UNDERSTOOD = {x509.BasicConstraints, x509.KeyUsage, x509.ExtendedKeyUsage, x509.SubjectAlternativeName,
               x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier, x509.CertificatePolicies,
               x509.IssuerAlternativeName}

_Path = list[x509.Certificate]
# What cryptography raises for a certificate whose extensions cannot be read.
_BAD_CERT = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def validate_signer(cert: x509.Certificate, intermediates: Sequence[x509.Certificate],
                    trust_roots: Sequence[x509.Certificate], at: _dt.datetime | None = None) -> list[x509.Certificate]:
    """The chain leaf..root of :func:`validate` for signing, as a list (the older entry point)."""
    return list(validate(cert, intermediates, trust_roots, at=at, purpose="sign").chain)


def validate(cert: x509.Certificate, intermediates: Sequence[x509.Certificate],
             trust_roots: Sequence[x509.Certificate], *, at: _dt.datetime | None = None,
             purpose: Purpose = "sign") -> ValidatedPath:
    """A path from ``cert`` through ``intermediates`` to one of ``trust_roots``, valid at ``at`` (default now)
    for ``purpose``. Raises UntrustedSigner, or ExpiredSigner when validity is the only problem.
    Never uses the OS trust store."""
    if purpose not in ("sign", "encrypt"):
        raise ValueError(f"purpose must be 'sign' or 'encrypt', not {purpose!r}")
    when = _dt.datetime.now(_dt.UTC) if at is None else _aware(at)
    roots = list(trust_roots)
    if not roots:
        raise UntrustedSigner(f"no trusted roots to check {_label(cert)} against")
    certs = (cert, tuple(intermediates), tuple(roots))
    key = (purpose, id(cert), tuple(map(id, certs[1])), tuple(map(id, certs[2])))
    chain = _cached_chain(key)
    # A chain once found stays a path for the same certificates: only the windows depend on time.
    if chain is not None and all(_valid_at(c, when) for c in chain):
        return ValidatedPath(chain, (), when, purpose)
    try:
        path = _validate(cert, list(intermediates), roots, when, purpose)
    except _BAD_CERT as e:  # a certificate cryptography loaded but cannot fully read
        raise UntrustedSigner(f"{_label(cert)} cannot be validated: unreadable certificate ({e})") from None
    _remember_chain(key, certs, path)
    return ValidatedPath(tuple(path), (), when, purpose)


# --- memo of successful validations ------------------------------------------------
#
# Keyed by the identities of the leaf, the intermediates and the roots exactly as passed,
# so other roots or another pool never hit. The entry holds those certificates, so their ids
# cannot be reused while it exists (see autosmime.pki.certcache: hashing a certificate hashes
# its DER, which cost more than the rest of a hit). Only successes are kept; a hit is
# re-checked against the validity windows at the new moment and, if any certificate is
# outside its window, goes through the full validation
# like a miss, so errors (ExpiredSigner included) are always the cold path's own.
# When several paths are valid, a hit returns the one found first while it stays valid.

_MEMO_SIZE = 256
_memo: OrderedDict[tuple, tuple[tuple, tuple[x509.Certificate, ...]]] = OrderedDict()
_memo_lock = threading.Lock()


def _cached_chain(key: tuple) -> tuple[x509.Certificate, ...] | None:
    with _memo_lock:
        entry = _memo.get(key)
        if entry is None:
            return None
        _memo.move_to_end(key)
        return entry[1]


def _remember_chain(key: tuple, certs: tuple, path: _Path) -> None:
    with _memo_lock:
        _memo[key] = (certs, tuple(path))
        _memo.move_to_end(key)
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)


def _validate(cert: x509.Certificate, pool: _Path, roots: _Path, when: _dt.datetime, purpose: Purpose) -> _Path:
    _check_leaf(cert, purpose)
    path, reason = _find_path(cert, pool, roots, when)
    if path is not None:
        return path
    # Report "expired" only when validity is the sole problem: first look for a
    # moment at which the same certificates form a fully checked path ...
    for moment in _other_moments(cert, pool, roots, when):
        path, _ = _find_path(cert, pool, roots, moment)
        if path is not None and _stale(path, when):
            raise _expired(_stale(path, when)[0], when)
    # ... else (windows that never overlap, e.g. a root newer than an old leaf)
    # judge each certificate inside its own window, with the permissive builder.
    path = _permissive_path(cert, pool, roots, None)
    if path is not None and _stale(path, when):
        raise _expired(_stale(path, when)[0], when)
    raise UntrustedSigner(f"{_label(cert)} does not chain to a trusted root: {reason}")


def _stale(path: _Path, when: _dt.datetime) -> _Path:
    return [c for c in path if not _valid_at(c, when)]


def _expired(cert: x509.Certificate, when: _dt.datetime) -> ExpiredSigner:
    return ExpiredSigner(f"{_label(cert)} is valid from {_iso(_not_before(cert))} to {_iso(_not_after(cert))},"
                         f" not at {_iso(when)}")


def cert_addresses(cert: x509.Certificate) -> list[str]:
    """Lower-cased rfc822Name SAN values, plus subject emailAddress if no SAN rfc822Name."""
    return list(_cert_addresses(cert))


@per_certificate(_MEMO_SIZE)  # asked once per verified message
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


# --- the leaf -----------------------------------------------------------------


def _check_leaf(cert: x509.Certificate, purpose: Purpose = "sign") -> None:
    try:
        _leaf_eku(None, cert, cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        try:
            ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            if purpose == "encrypt":
                if not (ku.key_encipherment or ku.key_agreement):
                    raise ValueError("key usage allows neither keyEncipherment nor keyAgreement")
            else:
                _leaf_key_usage(None, cert, ku)
        except x509.ExtensionNotFound:
            pass
    except x509.ExtensionNotFound:
        raise UntrustedSigner(f"{_label(cert)} has no extended key usage, so it is not for e-mail") from None
    except ValueError as e:  # our validators' verdicts, or an unreadable extension
        raise UntrustedSigner(f"{_label(cert)} is not usable for signing e-mail: {e}") from None
    except _BAD_CERT as e:
        raise UntrustedSigner(f"{_label(cert)} has unreadable extensions: {e}") from None


def _leaf_eku(_policy, _cert, eku: x509.ExtendedKeyUsage) -> None:
    if ExtendedKeyUsageOID.EMAIL_PROTECTION not in eku and _ANY_EKU not in eku:
        raise ValueError("extended key usage does not include emailProtection")


def _leaf_key_usage(_policy, _cert, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not (ku.digital_signature or ku.content_commitment):
        raise ValueError("key usage allows neither digitalSignature nor nonRepudiation")


def _ca_eku(_policy, _cert, eku: x509.ExtendedKeyUsage | None) -> None:
    # An EKU on a CA constrains what it may issue for (CA/B Forum S/MIME BR §7.1.2.2).
    if eku is not None:
        _leaf_eku(None, None, eku)


# --- path building ------------------------------------------------------------


def _find_path(cert: x509.Certificate, pool: _Path, roots: _Path,
               when: _dt.datetime) -> tuple[_Path | None, str]:
    try:
        return _webpki_path(cert, pool, roots, when), ""
    except VerificationError as e:
        reason = str(e)
    except _BAD_CERT as e:
        reason = f"unreadable certificate: {e}"
    path = _permissive_path(cert, pool, roots, when)
    if path is not None and any(_is_eddsa(c) for c in path):
        return path, ""
    return None, reason


def _webpki_path(cert: x509.Certificate, pool: _Path, roots: _Path, when: _dt.datetime) -> _Path:
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _ca_eku)
    ee_policy = (ExtensionPolicy.permit_all()
                 .require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _leaf_eku)
                 .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _leaf_key_usage))
    verifier = (PolicyBuilder().store(Store(roots)).time(when)
                .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
                .build_client_verifier())
    return list(verifier.verify(cert, pool).chain)


def _permissive_path(cert: x509.Certificate, pool: _Path, roots: _Path,
                     when: _dt.datetime | None) -> _Path | None:
    """A path by the permissive rules; ``when=None`` skips the validity windows (diagnosis only)."""
    if not _valid_at(cert, when) or not _critical_understood(cert):
        return None
    root_ders = {cert_der(r) for r in roots}
    candidates = unique_certificates([*roots, *pool])

    def extend(path: _Path) -> _Path | None:
        tip = path[-1]
        if cert_der(tip) in root_ders:
            return path
        if len(path) > _MAX_DEPTH:
            return None
        for issuer in candidates:
            if issuer.subject != tip.issuer or any(cert_der(issuer) == cert_der(p) for p in path):
                continue
            if _issues(issuer, tip, len(path) - 1, when):
                found = extend([*path, issuer])
                if found is not None:
                    return found
        return None

    return extend([cert])


def _issues(issuer: x509.Certificate, child: x509.Certificate, cas_below: int,
            when: _dt.datetime | None) -> bool:
    """Does ``issuer`` act as a valid CA for ``child``, with ``cas_below`` CA certs under the child?"""
    if not _valid_at(issuer, when) or not _critical_understood(issuer):
        return False
    try:
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not bc.ca or (bc.path_length is not None and bc.path_length < cas_below):
            return False
        try:
            if not issuer.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
                return False
        except x509.ExtensionNotFound:
            pass
        try:
            _ca_eku(None, issuer, issuer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        except x509.ExtensionNotFound:
            pass
        key = issuer.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
            return False
        child.verify_directly_issued_by(issuer)
    except (x509.ExtensionNotFound, *_BAD_CERT, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _critical_understood(cert: x509.Certificate) -> bool:
    try:
        return all(type(e.value) in _UNDERSTOOD for e in cert.extensions if e.critical)
    except _BAD_CERT:
        return False


def _is_eddsa(cert: x509.Certificate) -> bool:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    return cert.signature_algorithm_oid in _EDDSA_SIGNATURES or isinstance(
        key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey))


# --- validity windows -----------------------------------------------------------


def _other_moments(cert: x509.Certificate, pool: _Path, roots: _Path, when: _dt.datetime) -> list[_dt.datetime]:
    """Moments at which a path that fails now might hold, nearest first.

    If any path is valid at some moment, it is valid at the latest notBefore of
    its certificates, so trying every notBefore (and every notAfter, for the
    boundary) is enough.
    """
    everyone = _related(cert, unique_certificates([*pool, *roots]))
    moments = {m for c in everyone for m in (_not_before(c), _not_after(c))}
    moments.discard(when)
    return sorted(moments, key=lambda m: abs((m - when).total_seconds()))


def _related(cert: x509.Certificate, candidates: _Path) -> _Path:
    """``cert`` and every candidate reachable from it by issuer name, ignoring signatures and time."""
    found = [cert]
    seen = {cert_der(cert)}
    i = 0
    while i < len(found):
        for c in candidates:
            if cert_der(c) not in seen and c.subject == found[i].issuer:
                seen.add(cert_der(c))
                found.append(c)
        i += 1
    return found


def _valid_at(cert: x509.Certificate, when: _dt.datetime | None) -> bool:
    if when is None:
        return True
    not_before, not_after = _window(cert)
    return not_before <= when <= not_after


@per_certificate()  # each property call builds a new datetime; a memo hit checks two
def _window(cert: x509.Certificate) -> tuple[_dt.datetime, _dt.datetime]:
    return _not_before(cert), _not_after(cert)


def _not_before(cert: x509.Certificate) -> _dt.datetime:
    return cert.not_valid_before_utc


def _not_after(cert: x509.Certificate) -> _dt.datetime:
    return cert.not_valid_after_utc


def _aware(when: _dt.datetime) -> _dt.datetime:
    # A naive datetime is taken as UTC, as cryptography does.
    return when.replace(tzinfo=_dt.UTC) if when.tzinfo is None else when.astimezone(_dt.UTC)


def _iso(when: _dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%SZ")


def _label(cert: x509.Certificate) -> str:
    try:
        subject = cert.subject.rfc4514_string()
    except ValueError:
        subject = "an unreadable subject"
    return f"the certificate {subject or '(empty subject)'} (serial {cert.serial_number:x})"



