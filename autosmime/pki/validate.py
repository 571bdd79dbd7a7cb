"""Is a certificate trusted for S/MIME? RFC 5280 path validation with the e-mail rules NSS applies.

    >>> from autosmime.pki.profiles import new_key, make_ca, make_mailbox_cert
    >>> from autosmime.pki.validate import validate, validate_signer, cert_addresses
    >>> ca_key, ca_cert = make_ca("Doc CA", new_key("ec"))
    >>> cert = make_mailbox_cert("Alice@Example.test", new_key("ec").public_key(), ca_key, ca_cert)
    >>> [c.subject.rfc4514_string() for c in validate_signer(cert, [], [ca_cert])]
    ['1.2.840.113549.1.9.1=Alice@Example.test,CN=Alice@Example.test', 'CN=Doc CA']
    >>> path = validate(cert, [], [ca_cert], purpose="encrypt")
    >>> len(path.chain), path.notes
    (2, ())
    >>> cert_addresses(cert)
    ['alice@example.test']

The rules (what Thunderbird's NSS accepts for e-mail, not the WebPKI server profile):

* the leaf: extendedKeyUsage absent means any use, present it must hold
  emailProtection or anyExtendedKeyUsage; keyUsage, when present, must allow
  digitalSignature or nonRepudiation to sign, keyEncipherment (RSA) or
  keyAgreement (EC, X25519) to encrypt; it must not be a CA (basicConstraints cA), unless it is itself a
  trust anchor;
* every CA below the anchor: basicConstraints cA true (critical or not),
  keyCertSign when keyUsage is present, emailProtection or
  anyExtendedKeyUsage when extendedKeyUsage is present, pathLenConstraint and
  nameConstraints (rfc822Name, also against the subject's emailAddress;
  dNSName, iPAddress, directoryName; see :mod:`autosmime.pki.names`) on the
  certificates below it, self-issued ones excepted as §6.1 says;
* every certificate but the anchor: no critical extension we do not
  understand (policyConstraints and inhibitAnyPolicy are understood and, as in
  mozilla::pkix, ignored: no policy is required of a path);
* the trust anchor (one of ``trust_roots``, the user's explicit choice) is
  checked for nothing but its signature on the next certificate and its
  validity (RFC 5280 §6.1: only its name and key are inputs);
* each signature is checked (RSA keys of at least 2048 bits; no MD5), and each
  certificate is valid at ``at`` (default now; callers pass the signing time).

Deviations from the S/MIME Baseline Requirements' strict profile (the one
:mod:`autosmime.pki.profiles` issues) are not failures but :class:`Note`\\ s
in the result: a leaf without EKU (``no-eku``), a CA whose basicConstraints
is not critical or absent on the anchor (``bc-not-critical``, ``bc-absent``),
a SHA-1 signature on a certificate of the path (``sha1-in-chain``). SHA-1
*message* signatures are refused elsewhere (autosmime.smime).

Why hand-written. Three candidates were run on the same 19 cases
(``benchmarks/bench_path_validators.py`` reruns them: certutil's root with a
non-critical basicConstraints and its leaf without EKU, a root without
extensions, serverAuth-only and keyCertSign-only leaves, rfc822Name and
directoryName constraints, a subject emailAddress outside the constraint, a
SHA-1 intermediate, pathLen on an intermediate and on the anchor, unknown
critical extensions, Ed25519 paths), timing a cold three-certificate path in
the same run (five runs on the shared 2-core machine):

* cryptography 50 ``x509.verification`` with ``ExtensionPolicy.permit_all()``
  plus our validators: 14 of 19 right, 0.6-1.4x our time. It hard-codes
  refusals no policy relaxes: Ed25519 keys and SHA-1 signatures anywhere in
  the chain, a root without basicConstraints, the anchor's pathLenConstraint,
  directoryName constraints ("unsupported"); and it never checks the
  subject's emailAddress against rfc822Name constraints. It would still need
  a second builder for EdDSA, the split the issue asks to remove.
* pyhanko-certvalidator 0.33: 19 of 19 right, but 6-16x our time, async only
  (a synchronous caller inside a running event loop, as in our servers, needs
  a thread), its errors would have to be mapped to our one-line messages, and
  the notes computed by us anyway. Worth revisiting for CRL/OCSP.
* this module: 19 of 19, 0.26-0.5 ms a path (one signature check per edge
  through cryptography), synchronous, one code path for every key type.

Successful validations are memoised (a bounded LRU keyed by the purpose and
the exact certificates passed); a repeat re-checks only the validity windows
at ``at``, and anything outside its window takes the full validation again.

ExpiredSigner (a subclass of UntrustedSigner) means validity is the only
problem: the same certificates form a path by every other rule, each
certificate inside its own window. The message names the first certificate of
that path not valid at ``at``, with its dates. No OS trust store and no
revocation: trust is exactly ``trust_roots``.
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
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from autosmime.errors import ExpiredSigner, UntrustedSigner
from autosmime.pki import names
from autosmime.pki.certcache import cert_der, per_certificate, unique_certificates
from autosmime.pki.certs import cert_addresses

__all__ = ["Note", "Purpose", "ValidatedPath", "cert_addresses", "validate", "validate_signer"]

Purpose = Literal["sign", "encrypt"]


@dataclass(frozen=True, slots=True)
class Note:
    """A deviation from the S/MIME BR strict profile that does not make the path invalid.

    ``code`` is stable (for JSON and tests): ``no-eku``, ``bc-not-critical``, ``bc-absent``,
    ``sha1-in-chain``; ``text`` is one line naming the certificate.
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
_MAX_DEPTH = 8  # certificates above the leaf
# Candidate issuers tried per search: a message may carry many certificates with one subject
# (cross-certificates), and each try costs a signature check. Real paths need a handful.
_MAX_EDGES = 200
_MIN_RSA_BITS = 2048
# Critical extensions we understand, so may accept. policyConstraints and inhibitAnyPolicy only
# restrict policy processing, which e-mail validation does not do (mozilla::pkix ignores them too).
_UNDERSTOOD = (x509.BasicConstraints, x509.KeyUsage, x509.ExtendedKeyUsage, x509.SubjectAlternativeName,
               x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier, x509.CertificatePolicies,
               x509.IssuerAlternativeName, x509.NameConstraints, x509.PolicyConstraints, x509.InhibitAnyPolicy)
_SHA1_SIGNATURES = {SignatureAlgorithmOID.RSA_WITH_SHA1, SignatureAlgorithmOID.ECDSA_WITH_SHA1,
                    SignatureAlgorithmOID.DSA_WITH_SHA1}
_BROKEN_SIGNATURES = {SignatureAlgorithmOID.RSA_WITH_MD5, x509.ObjectIdentifier("1.2.840.113549.1.1.2"),
                      x509.ObjectIdentifier("1.2.840.113549.1.1.4")}  # MD5, MD2, MD4 with RSA

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
    hit = _cached(key)
    # A path once found stays a path for the same certificates: only the windows depend on time.
    if hit is not None and all(_valid_at(c, when) for c in hit[0]):
        return ValidatedPath(hit[0], hit[1], when, purpose)
    chain, notes = _Search(cert, list(intermediates), roots, purpose).run(when)
    _remember(key, certs, (chain, notes))
    return ValidatedPath(chain, notes, when, purpose)


# --- memo of successful validations ------------------------------------------------
#
# Keyed by the purpose and the identities of the leaf, the intermediates and the roots exactly
# as passed, so other roots or another pool never hit. The entry holds those certificates, so
# their ids cannot be reused while it exists (see autosmime.pki.certcache: hashing a certificate
# hashes its DER, which cost more than the rest of a hit). Only successes are kept; a hit is
# re-checked against the validity windows at the new moment and, if any certificate is outside
# its window, goes through the full validation like a miss, so errors (ExpiredSigner included)
# are always the cold path's own. When several paths are valid, a hit returns the one found
# first while it stays valid.

_MEMO_SIZE = 256
_Found = tuple[tuple[x509.Certificate, ...], tuple[Note, ...]]
_memo: OrderedDict[tuple, tuple[tuple, _Found]] = OrderedDict()
_memo_lock = threading.Lock()


def _cached(key: tuple) -> _Found | None:
    with _memo_lock:
        entry = _memo.get(key)
        if entry is None:
            return None
        _memo.move_to_end(key)
        return entry[1]


def _remember(key: tuple, certs: tuple, found: _Found) -> None:
    with _memo_lock:
        _memo[key] = (certs, found)
        _memo.move_to_end(key)
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)


# --- what each certificate says, read once ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Facts:
    unreadable: str | None  # why the extensions cannot be read; the other fields are then empty
    bc: x509.BasicConstraints | None = None
    bc_critical: bool = False
    ku: x509.KeyUsage | None = None
    eku: x509.ExtendedKeyUsage | None = None
    nc: x509.NameConstraints | None = None
    san: tuple[x509.GeneralName, ...] = ()
    unknown_critical: str | None = None  # the first critical extension we do not understand
    self_issued: bool = False


@per_certificate(1024)
def _facts(cert: x509.Certificate) -> _Facts:
    try:
        exts = cert.extensions
        found = {type(e.value): e for e in exts}
        unknown = next((e.oid.dotted_string for e in exts if e.critical and not isinstance(e.value, _UNDERSTOOD)),
                       None)
        bc = found.get(x509.BasicConstraints)
        san = found.get(x509.SubjectAlternativeName)
        return _Facts(
            unreadable=None,
            bc=bc.value if bc else None, bc_critical=bool(bc and bc.critical),
            ku=found[x509.KeyUsage].value if x509.KeyUsage in found else None,
            eku=found[x509.ExtendedKeyUsage].value if x509.ExtendedKeyUsage in found else None,
            nc=found[x509.NameConstraints].value if x509.NameConstraints in found else None,
            san=tuple(san.value) if san else (),
            unknown_critical=unknown,
            self_issued=cert.subject == cert.issuer)
    except _BAD_CERT as e:
        return _Facts(unreadable=" ".join(str(e).split()) or type(e).__name__)


def _email_eku(eku: x509.ExtendedKeyUsage) -> bool:
    return ExtendedKeyUsageOID.EMAIL_PROTECTION in eku or _ANY_EKU in eku


def _leaf_problem(cert: x509.Certificate, f: _Facts, purpose: Purpose, is_anchor: bool) -> str | None:
    if f.unreadable:
        return f"has unreadable extensions ({f.unreadable})"
    if f.unknown_critical:
        return f"has a critical extension autosmime does not understand ({f.unknown_critical})"
    if f.eku is not None and not _email_eku(f.eku):
        return "is not for e-mail: its extended key usage holds neither emailProtection nor anyExtendedKeyUsage"
    if f.ku is not None:
        if purpose == "sign" and not (f.ku.digital_signature or f.ku.content_commitment):
            return "is not for signing: its key usage allows neither digitalSignature nor nonRepudiation"
        if purpose == "encrypt":
            return _encryption_usage_problem(cert, f.ku)
    if f.bc is not None and f.bc.ca and not is_anchor:
        return "is a CA certificate (basicConstraints cA), not a mailbox certificate"
    return None


def _encryption_usage_problem(cert: x509.Certificate, ku: x509.KeyUsage) -> str | None:
    # As NSS (CERT_CheckKeyUsage, KU_KEY_ENCIPHERMENT_OR_AGREEMENT): an RSA key must allow
    # keyEncipherment, a key-agreement key (EC, X25519, X448) keyAgreement; others either.
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        key = None
    if isinstance(key, rsa.RSAPublicKey):
        return None if ku.key_encipherment else "is not for encryption: its key usage lacks keyEncipherment"
    if isinstance(key, (ec.EllipticCurvePublicKey, x25519.X25519PublicKey, x448.X448PublicKey)):
        return None if ku.key_agreement else "is not for encryption: its key usage lacks keyAgreement"
    if ku.key_encipherment or ku.key_agreement:
        return None
    return "is not for encryption: its key usage allows neither keyEncipherment nor keyAgreement"


def _ca_problem(f: _Facts) -> str | None:
    """Why a certificate below the anchor cannot issue certificates for e-mail."""
    if f.unreadable:
        return f"has unreadable extensions ({f.unreadable})"
    if f.unknown_critical:
        return f"has a critical extension autosmime does not understand ({f.unknown_critical})"
    if f.bc is None or not f.bc.ca:
        return "is not a CA (basicConstraints cA is not set)"
    if f.ku is not None and not f.ku.key_cert_sign:
        return "may not sign certificates (its key usage lacks keyCertSign)"
    if f.eku is not None and not _email_eku(f.eku):
        return "is not a CA for e-mail: its extended key usage holds neither emailProtection nor anyExtendedKeyUsage"
    return None


def _signature_problem(child: x509.Certificate, issuer: x509.Certificate) -> str | None:
    """Why ``issuer``'s key did not make ``child``'s signature, or None."""
    oid = child.signature_algorithm_oid
    if oid in _BROKEN_SIGNATURES:
        return f"is signed with a broken algorithm ({_oid_name(oid)})"
    try:
        key = issuer.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
            return f"is signed with a {key.key_size}-bit RSA key (at least {_MIN_RSA_BITS} needed)"
        if oid in _SHA1_SIGNATURES:  # cryptography 50 no longer checks SHA-1 certificate signatures itself
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(child.signature, child.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA1())
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(hashes.SHA1()))
            else:
                return f"has an unsupported signature ({_oid_name(oid)})"
        else:
            child.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return f"has a signature that {_label(issuer)} did not make"
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        return f"has a signature that cannot be checked against {_label(issuer)} ({' '.join(str(e).split())})"
    return None


# --- path search ----------------------------------------------------------------------


class _Search:
    """Depth-first search for a path; each candidate edge is checked as it is taken.

    Failures are remembered with the length of the path they ended, and the one from the
    longest path is reported: it is the most specific (a leaf's issuer found but not a CA
    says more than "no path").
    """

    def __init__(self, leaf: x509.Certificate, pool: _Path, roots: _Path, purpose: Purpose) -> None:
        self.leaf, self.purpose = leaf, purpose
        self.roots = unique_certificates(roots)
        self.root_ders = {cert_der(r) for r in self.roots}
        self.pool = [c for c in unique_certificates(pool) if cert_der(c) not in self.root_ders]
        self.when: _dt.datetime | None = None
        self.reason: tuple[int, str] | None = None
        self.edges = 0
        self.signatures: dict[tuple[bytes, bytes], str | None] = {}  # both passes: time plays no part

    def run(self, when: _dt.datetime) -> _Found:
        found = self._find(when)
        if found is not None:
            return found
        reason = self.reason[1] if self.reason else f"{_label(self.leaf)} does not chain to a trusted root"
        # Validity the only problem? The same search with every window ignored.
        timeless = self._find(None)
        if timeless is not None:
            stale = [c for c in timeless[0] if not _valid_at(c, when)]
            if stale:
                raise _expired(stale[0], when)
        raise UntrustedSigner(reason)

    def _find(self, when: _dt.datetime | None) -> _Found | None:
        self.when, self.reason, self.edges = when, None, 0
        f = _facts(self.leaf)
        is_anchor = cert_der(self.leaf) in self.root_ders
        problem = _leaf_problem(self.leaf, f, self.purpose, is_anchor)
        if problem is not None:  # no path can help: the verdict is the leaf's own
            raise UntrustedSigner(f"{_label(self.leaf)} {problem}")
        if not _valid_at(self.leaf, when):
            self._fail(1, f"{_label(self.leaf)} is not valid at {_iso(when)}")
            return None
        if is_anchor:  # a certificate trusted directly
            return (self.leaf,), self._notes([self.leaf])
        path = self._extend([self.leaf])
        return None if path is None else (tuple(path), self._notes(path))

    def _fail(self, depth: int, reason: str) -> None:
        if self.reason is None or depth > self.reason[0]:
            self.reason = (depth, reason)

    def _extend(self, path: _Path) -> _Path | None:
        tip = path[-1]
        depth = len(path)
        tried = False
        for anchor in self.roots:
            if anchor.subject != tip.issuer:
                continue
            tried = True
            problem = self._anchor_problem(anchor, tip)
            if problem is None:
                problem = _path_problem([*path, anchor])
            if problem is None:
                return [*path, anchor]
            self._fail(depth + 1, problem)
        if depth > _MAX_DEPTH:
            self._fail(depth, f"the path from {_label(self.leaf)} is longer than {_MAX_DEPTH} certificates")
            return None
        # A key appears once in a path (RFC 4158 §2.4.2): this cuts loops of cross-certificates.
        seen = {_spki(c) for c in path}
        for issuer in self.pool:
            if issuer.subject != tip.issuer or _spki(issuer) in seen:
                continue
            tried = True
            self.edges += 1
            if self.edges > _MAX_EDGES:
                self._fail(_MAX_DEPTH + 2, f"{_label(self.leaf)} comes with too many candidate issuers"
                                           f" (more than {_MAX_EDGES} tried)")
                return None
            problem = self._issuer_problem(issuer, tip)
            if problem is not None:
                self._fail(depth + 1, problem)
                continue
            found = self._extend([*path, issuer])
            if found is not None:
                return found
        if not tried:
            self._fail(depth, f"{_label(tip)} does not chain to a trusted root: its issuer"
                              f" {_dn(tip.issuer)} is neither trusted nor among the"
                              " certificates given")
        return None

    def _anchor_problem(self, anchor: x509.Certificate, child: x509.Certificate) -> str | None:
        if not _valid_at(anchor, self.when):
            return f"the trusted root {_label(anchor)} is not valid at {_iso(self.when)}"
        problem = self._signature(child, anchor)
        return None if problem is None else f"{_label(child)} {problem}"

    def _issuer_problem(self, issuer: x509.Certificate, child: x509.Certificate) -> str | None:
        if not _valid_at(issuer, self.when):
            return f"{_label(issuer)} is not valid at {_iso(self.when)}"
        problem = _ca_problem(_facts(issuer))
        if problem is not None:
            return f"{_label(issuer)} {problem}"
        problem = self._signature(child, issuer)
        return None if problem is None else f"{_label(child)} {problem}"

    def _signature(self, child: x509.Certificate, issuer: x509.Certificate) -> str | None:
        key = (cert_der(child), cert_der(issuer))
        if key not in self.signatures:
            self.signatures[key] = _signature_problem(child, issuer)
        return self.signatures[key]

    def _notes(self, path: _Path) -> tuple[Note, ...]:
        notes: list[Note] = []
        if _facts(path[0]).eku is None:
            notes.append(Note("no-eku", f"{_label(path[0])} has no extended key usage (the S/MIME BR require"
                                        " emailProtection); accepted as any use"))
        for i, c in enumerate(path):
            f = _facts(c)
            if i == 0:  # the leaf's basicConstraints are no BR matter here
                pass
            elif f.bc is None:
                notes.append(Note("bc-absent", f"the trusted root {_label(c)} has no basicConstraints"))
            elif not f.bc_critical:
                notes.append(Note("bc-not-critical", f"{_label(c)} has basicConstraints not marked critical"))
            if i + 1 < len(path) and c.signature_algorithm_oid in _SHA1_SIGNATURES:
                notes.append(Note("sha1-in-chain", f"{_label(c)} is signed with SHA-1"))
        return tuple(notes)


def _path_problem(path: _Path) -> str | None:
    """pathLenConstraint and nameConstraints of each CA below the anchor, on the certificates below it."""
    for i in range(1, len(path) - 1):
        f = _facts(path[i])
        below = path[:i]
        if f.bc is not None and f.bc.path_length is not None:
            # Self-issued intermediates do not count against the constraint (RFC 5280 §6.1.4 (l)).
            cas_below = sum(1 for c in below[1:] if not _facts(c).self_issued)
            if cas_below > f.bc.path_length:
                return (f"{_label(path[i])} allows {f.bc.path_length} CA certificate(s) below it"
                        f" (pathLenConstraint), the path has {cas_below}")
        if f.nc is not None:
            for j, c in enumerate(below):
                if j > 0 and _facts(c).self_issued:  # RFC 5280 §6.1.3 (b)
                    continue
                problem = names.violation(f.nc, c.subject, _facts(c).san)
                if problem is not None:
                    return f"{_label(c)} breaks the name constraints of {_label(path[i])}: {problem}"
    return None


@per_certificate(1024)
def _spki(cert: x509.Certificate) -> bytes:
    try:
        return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, UnsupportedAlgorithm):  # an unusable key: unique, so never "seen" by mistake
        return cert_der(cert)


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    return getattr(oid, "_name", None) or oid.dotted_string


def _expired(cert: x509.Certificate, when: _dt.datetime) -> ExpiredSigner:
    return ExpiredSigner(f"{_label(cert)} is valid from {_iso(_not_before(cert))} to {_iso(_not_after(cert))},"
                         f" not at {_iso(when)}")


# --- validity windows -----------------------------------------------------------


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


def _iso(when: _dt.datetime | None) -> str:
    return "any time" if when is None else when.strftime("%Y-%m-%d %H:%M:%SZ")


def _dn(name: x509.Name) -> str:
    try:
        return name.rfc4514_string() or "(empty name)"
    except ValueError:
        return "(unreadable name)"


def _label(cert: x509.Certificate) -> str:
    try:
        subject = cert.subject.rfc4514_string()
    except ValueError:
        subject = "an unreadable subject"
    return f"the certificate {subject or '(empty subject)'} (serial {cert.serial_number:x})"
