"""Verify a signed message: the signature, the signer's chain, From, and Date.

    >>> from autosmime.smime import verify
    >>> result = verify(open("signed.eml", "rb").read(), trust_roots=[ca])   # doctest: +SKIP
    >>> result.signer_address, result.from_matches, result.verdict          # doctest: +SKIP
    ('alice@example.test', True, 'good')

Verification runs on the raw bytes of the signed part, never a re-serialised
copy. ``at`` validates the signer's chain as of another moment, for old mail
signed with a certificate that has expired since.

Thunderbird's rules, which a signature must pass to be good:

- **From**: the header block the signature belongs to holds exactly one field
  named ``From`` (no ``From :``, no second one, which a reader could show
  instead), with exactly one mailbox, named by the signer's certificate. That
  block is the signed entity's own when it carries a From (a message/rfc822
  entity, or protected headers written into the signed part), else the one of
  the message the signature sits in.
- **Several SignerInfos**: the signer that counts is the one whose certificate
  names From; its failure makes the message bad whatever the others say.
- **Date**: a signingTime more than one hour away from the Date header is
  ``time-mismatch`` (an old signed body replayed under a new date); a Date that
  cannot be read is too. ``check_date=False`` relaxes it.
- **Revocation**, only when the caller gives a checker (``revocation=``, e.g.
  :class:`autosmime.pki.revocation.CrlChecker`; the engine itself stays offline)
  and only for the signer that counts once everything else is good: revoked for
  a key compromise, for no reason, or before the message was signed is
  ``revoked``; revoked afterwards for a harmless reason (superseded, ...) stays
  good with a note; a status that cannot be had is a note, never a verdict.

:func:`verify` raises the typed error of any verdict but good;
:func:`check_classified` returns the verdict instead, for :func:`read`.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import time
from collections.abc import Sequence
from dataclasses import replace
from email.headerregistry import Address
from functools import lru_cache
from typing import TYPE_CHECKING

from cryptography import x509

from autosmime.errors import (
    AutosmimeError,
    BadDigest,
    ExpiredSigner,
    MalformedMessage,
    RevokedSigner,
    SignerMismatch,
    TimeMismatch,
    UnsupportedAlgorithm,
    UntrustedSigner,
    WeakAlgorithm,
)
from autosmime.pki.validate import cert_addresses, validate
from autosmime.smime import mime
from autosmime.smime._cms import signed as _signed
from autosmime.smime._cmstype import Classified, classify
from autosmime.smime._scan import split_header
from autosmime.smime.models import SignerReport, VerifyResult

if TYPE_CHECKING:
    from autosmime.pki.revocation import RevocationCheck, RevocationStatus

MAX_DATE_SKEW = _dt.timedelta(hours=1)  # Thunderbird's VERIFY_TIME_MISMATCH bound


# -- verdicts --------------------------------------------------------------------------

def verdict_of(error: BaseException) -> str:
    """The verdict word (docs/engine.md) for a typed error of the engine."""
    if isinstance(error, BadDigest):
        return "bad-digest"
    if isinstance(error, WeakAlgorithm):
        return "weak-algorithm"
    if isinstance(error, UnsupportedAlgorithm):
        return "unsupported"
    if isinstance(error, TimeMismatch):
        return "time-mismatch"
    if isinstance(error, SignerMismatch):
        return "from-mismatch"
    if isinstance(error, RevokedSigner):
        return "revoked"
    if isinstance(error, ExpiredSigner):
        return "expired"
    if isinstance(error, UntrustedSigner):
        return "untrusted"
    return "bad-signature"


# -- the header block a signature belongs to ------------------------------------------

class HeaderBlock:
    """Header fields (each with its CRLF), and the next block outwards to fall back to for Date."""

    __slots__ = ("fields", "names", "outer")

    def __init__(self, fields: Sequence[bytes], outer: HeaderBlock | None = None,
                 names: Sequence[bytes] | None = None) -> None:
        self.fields, self.outer = fields, outer
        # Each field's name, blanks stripped, lower case: as split_header and Message give them.
        self.names = names if names is not None else [_name(f) for f in fields]

    def named(self, name: bytes) -> list[bytes]:
        """Every field whose name, blanks stripped and any case, is ``name`` (lower case)."""
        if name not in self.names:  # the common answer, at C speed
            return []
        return [f for f, n in zip(self.fields, self.names) if n == name]

    def date_field(self) -> bytes | None:
        block: HeaderBlock | None = self
        while block is not None:
            dates = block.named(b"date")
            if dates:
                return dates[0]
            block = block.outer
        return None


def _name(field: bytes) -> bytes:
    colon = field.find(b":")
    return field[:colon].strip().lower() if colon > 0 else b""


def _block_of(data, outer: HeaderBlock | None) -> tuple[HeaderBlock, int]:
    """The header block at the start of an entity (empty when it does not start with one),
    and where its body starts."""
    try:
        fields, names, start = split_header(data)
    except ValueError:
        return HeaderBlock([], outer, []), 0
    return HeaderBlock(fields, outer, names), start


def message_block(msg: mime.Message, prefix: int = 0) -> HeaderBlock:
    """The header block of ``msg`` that a signature inside it answers to.

    Its first ``prefix`` fields were put back from outside an encryption layer; the rest
    came out of it, and win when they carry a From (protected headers).
    """
    fields, names = msg.fields, msg.field_names()
    if not prefix:
        return HeaderBlock(fields, None, names)
    outer = HeaderBlock(fields[:prefix], None, names[:prefix])
    inner = HeaderBlock(fields[prefix:], outer, names[prefix:])
    return inner if inner.named(b"from") else outer


def signer_headers(content, outer: HeaderBlock | None) -> HeaderBlock | None:
    """The header block whose From and Date the signature over ``content`` answers to: the
    signed entity's own when it carries a From, else ``outer`` (the enclosing message's)."""
    own, start = _block_of(content, outer)
    if _is_rfc822(own):  # RFC 8551 3.1: the whole message wrapped to protect its headers
        own = _block_of(memoryview(content)[start:], outer)[0]
    return own if own.named(b"from") else outer


def _is_rfc822(block: HeaderBlock) -> bool:
    types = block.named(b"content-type")
    if not types:
        return False
    value = types[0].partition(b":")[2]
    if b"822" not in value:  # the usual answer, without splitting and lowering
        return False
    return value.split(b";")[0].strip().lower() == b"message/rfc822"


def from_binding(block: HeaderBlock | None) -> tuple[str | None, str | None]:
    """(the one From address, lower case; or None and why the block does not bind one)."""
    if block is None:
        return None, "the message has no From header"
    froms = block.named(b"from")
    if not froms:
        return None, "the message has no From header"
    if len(froms) > 1:
        return None, "the message has more than one From header"
    field = froms[0]
    if field[:field.find(b":")] != field[:field.find(b":")].strip():
        return None, "the From header's name is not exactly 'From'"
    address = _single_mailbox(bytes(field))
    if address is None:
        return None, "the From header does not hold exactly one readable address"
    return address, None


@lru_cache(maxsize=256)  # the email package's address parser is slow, and From repeats per sender
def _single_mailbox(field: bytes) -> str | None:
    value = mime.field_value(field)
    if not value:
        return None
    try:
        parsed = email.utils.getaddresses([value], strict=True)
    except TypeError:  # an older Python without strict=
        parsed = email.utils.getaddresses([value])
    addrs = [a for _, a in parsed]
    if len(addrs) != 1 or not addrs[0] or "@" not in addrs[0]:
        return None
    try:
        Address(addr_spec=addrs[0])
    except (ValueError, IndexError, TypeError):
        return None
    return addrs[0].lower()


def from_address(msg: mime.Message) -> str | None:
    """The single From address of ``msg``, or None (missing, several, unreadable)."""
    return from_binding(HeaderBlock(msg.fields))[0]


@lru_cache(maxsize=256)
def _date_value(field: bytes) -> _dt.datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(mime.field_value(field))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=_dt.UTC)


def date_problem(block: HeaderBlock | None, signing_time: _dt.datetime | None) -> str | None:
    """Why the Date header and the signing time disagree, or None.

    No signing time (it is optional) or no Date header at all: nothing to compare.
    """
    if signing_time is None or block is None:
        return None
    field = block.date_field()
    if field is None:
        return None
    when = _date_value(bytes(field))
    if when is None:
        return "the Date header cannot be read, so the signing time cannot be checked against it"
    skew = abs(when - signing_time)
    if int(skew.total_seconds()) > MAX_DATE_SKEW.total_seconds():
        minutes = int(skew.total_seconds()) // 60
        return (f"signed at {signing_time.isoformat()} but dated {when.isoformat()} ({minutes} minutes apart): "
                "an old signed body may have been resent under a new date")
    return None


# -- verification --------------------------------------------------------------------

def verify(message: bytes, trust_roots: Sequence[x509.Certificate], at: _dt.datetime | None = None, *,
           require_from_match: bool = True, check_date: bool = True,
           extra_certs: Sequence[x509.Certificate] = (), detached_content: bytes | None = None,
           revocation: RevocationCheck | None = None) -> VerifyResult:
    """Verify the outermost signature layer of ``message``; return it only when good.

    Raises BadSignature (BadDigest), UntrustedSigner (ExpiredSigner, RevokedSigner),
    SignerMismatch, TimeMismatch, UnsupportedAlgorithm (WeakAlgorithm) or MalformedMessage.
    ``revocation``: a checker asked about the signer that counts once all else is good
    (docs/engine.md, "Revocation"); None (the default) checks nothing and costs nothing.
    """
    return verify_classified(classify(message), trust_roots, at, require_from_match=require_from_match,
                             check_date=check_date, extra_certs=extra_certs, detached_content=detached_content,
                             revocation=revocation)


def verify_classified(layer: Classified, trust_roots: Sequence[x509.Certificate], at: _dt.datetime | None = None, *,
                      require_from_match: bool = True, check_date: bool = True,
                      extra_certs: Sequence[x509.Certificate] = (),
                      detached_content: bytes | None = None,
                      revocation: RevocationCheck | None = None) -> VerifyResult:
    """:func:`verify` of a message already classified."""
    result = check_classified(layer, trust_roots, at, require_from_match=require_from_match, check_date=check_date,
                              extra_certs=extra_certs, detached_content=detached_content, revocation=revocation)
    if result.error is not None:
        raise result.error
    return result


def check_classified(layer: Classified, trust_roots: Sequence[x509.Certificate], at: _dt.datetime | None = None, *,
                     require_from_match: bool = True, check_date: bool = True,
                     extra_certs: Sequence[x509.Certificate] = (), detached_content: bytes | None = None,
                     prefix: int = 0, context: HeaderBlock | None = None,
                     revocation: RevocationCheck | None = None) -> VerifyResult:
    """The signature layer's result with its verdict, good or not.

    Raises only when the layer cannot be opened at all (MalformedMessage: no signed content
    to be had). ``prefix``: how many of the message's fields came from outside an
    encryption layer (see :func:`message_block`); ``context``: the header block of the
    message that holds this one as a part, for a signed part inside a multipart.
    """
    msg = layer.msg
    if layer.kind != "signed":
        if layer.kind == "enveloped":
            raise MalformedMessage("the message is encrypted, not signed: decrypt it first")
        raise MalformedMessage(f"not a signed message ({msg.mime_type if msg is not None else 'CMS'})")
    outer: list[bytes] = []
    content: bytes | memoryview | None = detached_content
    der = layer.der
    if msg is not None:
        outer = msg.outer_headers()
        if der is None:  # multipart/signed: the signed bytes as a view of the message, no copy
            parts = mime.split_signed_view(msg)
            content, der = parts.content, parts.signature
    if der is None:
        raise MalformedMessage("no CMS signature to verify")
    try:
        signed = _signed.verify_each(der, content, extra_certs)
    except AutosmimeError as e:
        if content is None:
            raise  # opaque: without the structure there is no content either
        return _failed(outer, content, e)
    if context is None and msg is not None:
        context = message_block(msg, prefix)
    return _judge(signed, outer, context, trust_roots, at, require_from_match, check_date, extra_certs, revocation)


def _failed(outer: list[bytes], content, error: AutosmimeError) -> VerifyResult:
    canonical = isinstance(content, memoryview)
    return VerifyResult(message=mime.rejoin(outer, content, canonical=canonical), signers=(), from_address=None,
                        from_matches=None, verdict=verdict_of(error), error=error)


def _secure_headers(signed: _signed.SignedResult, outer: HeaderBlock | None) -> HeaderBlock | None:
    """The header fields a verified signer signed as an RFC 7508 attribute, when they hold a From."""
    for s in signed.signers:
        if not s.secure_headers:
            continue
        fields = [f"{name}: {value}\r\n".encode() for name, value, status in s.secure_headers if status != "deleted"]
        block = HeaderBlock(fields, outer)
        if block.named(b"from"):
            return block
    return None


def _duplicated_from(signed: _signed.SignedResult) -> bool:
    return any(name.lower() == "from" and status == "duplicated"
               for s in signed.signers for name, _, status in s.secure_headers)


def _validation_time(at: _dt.datetime | None, signing_time: _dt.datetime | None) -> _dt.datetime | None:
    """When the chain must have been valid: ``at`` if given, else the signing time (as NSS
    does), never later than now; None (now) without either."""
    if at is not None or signing_time is None:
        return at
    # time.time() is a twentieth of datetime.now(): the cap costs nothing for the usual past time.
    return signing_time if signing_time.timestamp() <= time.time() else _dt.datetime.now(_dt.UTC)


def _judge(signed: _signed.SignedResult, outer: list[bytes], context: HeaderBlock | None,
           trust_roots: Sequence[x509.Certificate], at: _dt.datetime | None, require_from_match: bool,
           check_date: bool, extra_certs: Sequence[x509.Certificate],
           revocation: RevocationCheck | None = None) -> VerifyResult:
    pool = [*signed.certificates, *extra_certs]
    # Each SignerInfo in the order received, the failed ones with what went wrong.
    failed = dict(signed.failures) if signed.failures else {}
    good = iter(signed.signers)
    reports: list[tuple[SignerReport, AutosmimeError | None]] = []
    for i in range(len(signed.signers) + len(failed)):
        if failed and i in failed:
            cert, err = failed[i].cert, failed[i].error
            reports.append((SignerReport(
                cert=cert, chain=(), addresses=tuple(cert_addresses(cert)) if cert is not None else (),
                signing_time=None, digest_algorithm=failed[i].digest_algorithm,
                signature_algorithm="", verdict=verdict_of(err), detail=str(err)), err))
            continue
        s = next(good)
        error: AutosmimeError | None = None
        chain: tuple[x509.Certificate, ...] = ()
        notes: tuple[str, ...] = ()
        try:
            path = validate(s.cert, pool, trust_roots, at=_validation_time(at, s.signing_time), purpose="sign")
            chain = path.chain
            if path.notes:
                notes = tuple(str(n) for n in path.notes)
        except (UntrustedSigner, UnsupportedAlgorithm) as e:
            error = e
        reports.append((SignerReport(
            cert=s.cert, chain=chain, addresses=tuple(cert_addresses(s.cert)), signing_time=s.signing_time,
            digest_algorithm=s.digest_algorithm, signature_algorithm=s.signature_algorithm,
            capabilities=tuple(s.capabilities), verdict="good" if error is None else verdict_of(error),
            detail=str(error) if error else "", notes=notes), error))
    # Bare CMS has no headers at all: nothing to bind (the caller knows what it verified).
    headers = signer_headers(signed.content, context) if context is not None else None
    sender, from_problem = from_binding(headers) if context is not None else (None, None)
    secured = _secure_headers(signed, headers) if any(s.secure_headers for s in signed.signers) else None
    altered = None
    if secured is not None:  # RFC 7508: the signed copy is what the signer vouched for
        signed_sender, problem = from_binding(secured)
        if sender is not None and signed_sender is not None and sender != signed_sender and _duplicated_from(signed):
            altered = f"the From header ({sender}) differs from the signed copy of it ({signed_sender}, RFC 7508)"
        headers, sender, from_problem = secured, signed_sender, problem

    # The signer that counts: the one From names; failing that, the first good one, or the first.
    chosen = reports[0]
    if len(reports) == 1:  # the usual case, without the searches
        matches = None if sender is None else sender in chosen[0].addresses
    else:
        named = next((r for r in reports if sender is not None and sender in r[0].addresses), None)
        matches = None if sender is None else named is not None
        chosen = named if named is not None else next((r for r in reports if r[1] is None), reports[0])
    primary, error = chosen
    if error is None and require_from_match and context is not None:
        if altered is not None:
            error = SignerMismatch(altered)
        elif sender is None:
            error = SignerMismatch(f"{from_problem}: the signer cannot be checked against it")
        elif not matches:
            signer_addrs = ", ".join(primary.addresses) or "no address"
            error = SignerMismatch(f"From is {sender} but the signer's certificate is for {signer_addrs}")
    if error is None and check_date:
        problem = date_problem(headers, primary.signing_time)
        if problem is not None:
            error = TimeMismatch(problem)
    counted = primary
    if error is None and revocation is not None and primary.cert is not None:
        primary, error = _revocation(primary, revocation, headers)
    ordered = (primary,) if len(reports) == 1 else (primary, *(r for r, _ in reports if r is not counted))
    canonical = isinstance(signed.content, memoryview)  # split_signed_view only views CRLF bytes
    return VerifyResult(message=mime.rejoin(outer, signed.content, canonical=canonical), signers=ordered,
                        from_address=sender, from_matches=matches,
                        verdict="good" if error is None else verdict_of(error), error=error)


# -- revocation (only with a checker) ---------------------------------------------------

#: revoked for these, and after the signing: the signatures made before stay good (no compromise)
HARMLESS_REASONS = frozenset({"superseded", "cessationOfOperation", "affiliationChanged"})


def _revocation(report: SignerReport, check: RevocationCheck,
                headers: HeaderBlock | None) -> tuple[SignerReport, AutosmimeError | None]:
    """The signer that counts, with its revocation status asked and judged (docs/engine.md)."""
    assert report.cert is not None
    chain = report.chain or (report.cert,)
    try:
        status = check(report.cert, chain)
    except (AutosmimeError, OSError, ValueError) as e:  # a checker that broke knows nothing
        from autosmime.pki.revocation import RevocationStatus

        status = RevocationStatus("unknown", detail=str(e))
    signed_at = report.signing_time
    if signed_at is None and headers is not None:
        field = headers.date_field()
        signed_at = _date_value(bytes(field)) if field is not None else None
    error, note = revocation_judgement(status, signed_at)
    notes = (*report.notes, note) if note else report.notes
    if error is None:
        return replace(report, revocation=status, notes=notes, revocation_note=note), None
    return replace(report, revocation=status, verdict="revoked", detail=str(error)), error


def revocation_judgement(status: RevocationStatus,
                         signed_at: _dt.datetime | None) -> tuple[RevokedSigner | None, str]:
    """(RevokedSigner or None, a note for people) for a signer's revocation ``status``.

        >>> from autosmime.pki.revocation import RevocationStatus
        >>> revocation_judgement(RevocationStatus("good"), None)
        (None, '')

    A key compromise, no reason, or any reason dated at or before the signing is revoked:
    signingTime is the signer's own claim, worth nothing once the key may be someone
    else's. Revoked later for a harmless reason (superseded, cessationOfOperation,
    affiliationChanged) leaves the signature good. ``signed_at`` is signingTime, else the
    Date header, else None (then revoked). Unknown is a note, never a verdict.
    """
    if status.status == "good":
        return None, ""
    if status.status != "revoked":
        why = f": {status.detail}" if status.detail else ""
        return None, f"the certificate's revocation status could not be checked{why}"
    when = status.revoked_at
    day = when.isoformat() if when is not None else "an unknown date"
    reason = status.reason or "no reason given"
    if (status.reason in HARMLESS_REASONS and when is not None and signed_at is not None
            and signed_at < when):
        return None, f"the certificate was revoked on {day} ({reason}), after this message was signed"
    if status.reason in HARMLESS_REASONS:
        why = ("before this message was signed" if signed_at is not None
               else "and the message does not say when it was signed")
    else:
        why = "its key must be taken as someone else's" if status.reason == "keyCompromise" else \
            "which may be a key compromise"
    message = f"the signer's certificate was revoked on {day} ({reason}), {why}"
    return RevokedSigner(message), message
