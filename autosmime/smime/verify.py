"""Verify a signed message: the signature, the signer's chain, and the From address.

    >>> from autosmime.smime import verify
    >>> result = verify(open("signed.eml", "rb").read(), trust_roots=[ca])   # doctest: +SKIP
    >>> result.signer_address, result.from_matches                          # doctest: +SKIP
    ('alice@example.test', True)

Verification runs on the raw bytes of the signed part, never a re-serialised
copy. ``at`` validates the signer's chain as of another moment, for old mail
signed with a certificate that has expired since.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from email.utils import getaddresses
from functools import lru_cache

from cryptography import x509

from autosmime.errors import MalformedMessage, SignerMismatch
from autosmime.pki.validate import cert_addresses, validate_signer
from autosmime.smime import mime
from autosmime.smime._cms import signed as _signed
from autosmime.smime._cmstype import Classified, classify
from autosmime.smime.models import SignerReport, VerifyResult


def from_address(msg: mime.Message) -> str | None:
    field = msg.raw_header("From")
    return None if field is None else _first_address(field)


@lru_cache(maxsize=256)  # the email package's address parser is slow, and From repeats per sender
def _first_address(field: bytes) -> str | None:
    value = mime.field_value(field)
    if not value:
        return None
    addrs = [a for _, a in getaddresses([value]) if a]
    return addrs[0].lower() if addrs else None


def verify(message: bytes, trust_roots: Sequence[x509.Certificate], at: _dt.datetime | None = None, *,
           require_from_match: bool = True, extra_certs: Sequence[x509.Certificate] = (),
           detached_content: bytes | None = None) -> VerifyResult:
    """Verify the outermost signature layer of ``message``.

    Raises BadSignature, UntrustedSigner, ExpiredSigner, SignerMismatch,
    UnsupportedAlgorithm or MalformedMessage.
    """
    return verify_classified(classify(message), trust_roots, at, require_from_match=require_from_match,
                             extra_certs=extra_certs, detached_content=detached_content)


def verify_classified(layer: Classified, trust_roots: Sequence[x509.Certificate], at: _dt.datetime | None = None, *,
                      require_from_match: bool = True, extra_certs: Sequence[x509.Certificate] = (),
                      detached_content: bytes | None = None) -> VerifyResult:
    """:func:`verify` of a message already classified (by :func:`read`, which classified it anyway)."""
    msg = layer.msg
    if layer.kind != "signed":
        if layer.kind == "enveloped":
            raise MalformedMessage("the message is encrypted, not signed: decrypt it first")
        raise MalformedMessage(f"not a signed message ({msg.mime_type})")
    outer: list[bytes] = []
    if msg is None:  # bare CMS, as peers write it
        result = _signed.verify(layer.der, detached_content, extra_certs)
    else:
        outer = msg.outer_headers()
        if layer.der is None:  # multipart/signed
            parts = mime.split_signed_view(msg)  # the signed bytes as a view of ``message``: no copy
            result = _signed.verify(parts.signature, parts.content, extra_certs)
        else:
            result = _signed.verify(layer.der, None, extra_certs)
    if not result.signers:
        raise MalformedMessage("the signature has no signers")
    pool = list(result.certificates) + list(extra_certs)
    reports = []
    for s in result.signers:
        chain = validate_signer(s.cert, pool, trust_roots, at)
        reports.append(SignerReport(
            cert=s.cert, chain=tuple(chain), addresses=tuple(cert_addresses(s.cert)),
            signing_time=s.signing_time, digest_algorithm=s.digest_algorithm,
            signature_algorithm=s.signature_algorithm, capabilities=tuple(s.capabilities)))
    sender = from_address(msg) if msg is not None else None
    matches = None
    if sender is not None:
        matches = any(sender in r.addresses for r in reports)
        if require_from_match and not matches:
            signer_addrs = ", ".join(a for r in reports for a in r.addresses) or "no address"
            raise SignerMismatch(f"From is {sender} but the signer's certificate is for {signer_addrs}")
    canonical = isinstance(result.content, memoryview)  # split_signed_view only views CRLF bytes
    return VerifyResult(message=mime.rejoin(outer, result.content, canonical=canonical), signers=tuple(reports),
                        from_address=sender, from_matches=matches)
