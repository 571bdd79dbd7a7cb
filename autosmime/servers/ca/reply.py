"""Checking an RFC 8823 response mail: DKIM, From, the one response block.

    >>> from autosmime.servers.ca.reply import reply_keys
    >>> reply_keys(b"Subject: Re: ACME: abc\\r\\n def\\r\\nIn-Reply-To: <m@ca>\\r\\n\\r\\nbody")
    ('abcdef', '<m@ca>')

A reply counts only when all of these hold (:func:`verify_reply`):

- exactly one From header with exactly one address;
- a DKIM signature that verifies (dkimpy, keys from the CA's resolver, never
  a foreign Authentication-Results header) whose ``d=`` equals the From
  domain (case-insensitively), whose ``h=`` covers From, To, Subject, Date
  and Message-ID, and that has no ``l=`` (a body length limit would leave the
  response block outside the signature);
- exactly one ``-----BEGIN ACME RESPONSE-----`` ... ``-----END ACME
  RESPONSE-----`` block over all text/plain parts (at most 512 bytes; lines
  are joined and whitespace removed; trailing ``=`` are tolerated).

Matching the reply to its challenge (Subject ``ACME: <token-part1>``,
whitespace inside the token ignored, else In-Reply-To) and comparing the
digest in constant time are the caller's (:mod:`.validation`).
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.policy
import email.utils
import re
from collections.abc import Callable
from dataclasses import dataclass

import dkim
import dkim.util

REQUIRED_SIGNED = {"from", "to", "subject", "date", "message-id"}
MAX_BLOCK = 512
_BEGIN = "-----BEGIN ACME RESPONSE-----"
_END = "-----END ACME RESPONSE-----"
_BLOCK = re.compile(r"^-----BEGIN ACME RESPONSE-----[ \t]*\r?\n(.*?)^-----END ACME RESPONSE-----[ \t]*\r?$",
                    re.MULTILINE | re.DOTALL)
_BEGIN_LINE = re.compile(r"^-----BEGIN ACME RESPONSE-----", re.MULTILINE)
_DIGEST = re.compile(r"[A-Za-z0-9_-]+")
_SUBJECT_TOKEN = re.compile(r"ACME:\s*(.*)$", re.DOTALL)


class ReplyRejected(Exception):
    """The reply does not count; ``reason`` is a short code for the audit log."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class VerifiedReply:
    from_addr: str
    response: str            # the digest, whitespace and padding removed
    dkim_domain: str
    dkim_selector: str


def _header_block(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return raw[:i]
    return raw


def _decoded(value: str) -> str:
    """An RFC 2047 header value as text (a broken encoded-word is left as it is)."""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return value


# The compat32 policy: the default policy's header objects cost about a millisecond a message
# here, and nothing below needs more than strings.
def reply_keys(raw: bytes) -> tuple[str | None, str | None]:
    """(token-part1 from the Subject, In-Reply-To) — what finds the challenge, before any check."""
    msg = email.message_from_bytes(_header_block(raw) + b"\r\n\r\n", policy=email.policy.compat32)
    token = None
    subject = _decoded(str(msg.get("Subject", "") or ""))
    m = _SUBJECT_TOKEN.search(subject)
    if m:
        token = "".join(m.group(1).split()).rstrip("=") or None
    irt = msg.get("In-Reply-To")
    in_reply_to = str(irt).strip() if irt else None
    return token, in_reply_to


def from_address(msg: email.message.Message) -> str:
    values = msg.get_all("From") or []
    if len(values) != 1:
        raise ReplyRejected("from", f"{len(values)} From headers")
    addresses = email.utils.getaddresses([str(values[0])])
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        raise ReplyRejected("from", "From must hold exactly one address")
    return addresses[0][1]


def check_dkim(raw: bytes, from_domain: str, dnsfunc: Callable[..., bytes | None]) -> tuple[str, str]:
    """(d, s) of the first acceptable valid signature, else :class:`ReplyRejected` (``no_dkim``/``dkim_*``)."""
    try:
        d = dkim.DKIM(raw, minkey=1024)
    except Exception:
        raise ReplyRejected("malformed", "unparsable message") from None
    sigs = [v for k, v in d.headers if k.lower() == b"dkim-signature"]
    if not sigs:
        raise ReplyRejected("no_dkim", "no DKIM signature")
    reasons = []
    for idx, value in enumerate(sigs):
        try:
            tags = dkim.util.parse_tag_value(b"".join(value.split()))
        except dkim.util.InvalidTagValueList:
            reasons.append("dkim_malformed")
            continue
        domain = tags.get(b"d", b"").decode("ascii", "replace").lower().rstrip(".")
        signed = {h.strip().lower() for h in tags.get(b"h", b"").decode("ascii", "replace").split(":")}
        if domain != from_domain.lower():
            reasons.append("dkim_domain")
            continue
        if b"l" in tags:
            reasons.append("dkim_length_limit")
            continue
        if not REQUIRED_SIGNED <= signed:
            reasons.append("dkim_headers")
            continue
        try:
            ok = d.verify(idx=idx, dnsfunc=dnsfunc)
        except Exception:   # dkimpy raises on broken keys/records; that is just "not valid"
            ok = False
        if ok:
            return domain, tags.get(b"s", b"").decode("ascii", "replace")
        reasons.append("dkim_invalid")
    # the most telling reason: a bad signature by the right domain beats a foreign one
    for reason in ("dkim_invalid", "dkim_headers", "dkim_length_limit", "dkim_domain", "dkim_malformed"):
        if reason in reasons:
            raise ReplyRejected(reason, f"no acceptable DKIM signature for {from_domain}")
    raise ReplyRejected("no_dkim")  # pragma: no cover


def response_block(msg: email.message.Message) -> str:
    texts = []
    for part in msg.walk():
        if part.get_content_type() != "text/plain" or part.get_content_disposition() == "attachment":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            texts.append(payload.decode(part.get_content_charset() or "us-ascii", "replace"))
        except LookupError:
            texts.append(payload.decode("latin-1"))
    text = "\n".join(t.replace("\r\n", "\n") for t in texts)
    begins = len(_BEGIN_LINE.findall(text))
    blocks = _BLOCK.findall(text)
    if begins != 1 or len(blocks) != 1:
        raise ReplyRejected("blocks", f"{begins} response blocks (exactly one required)")
    body = blocks[0]
    if len(body.encode()) > MAX_BLOCK:
        raise ReplyRejected("blocks", "response block too long")
    digest = "".join(body.split()).rstrip("=")
    if not _DIGEST.fullmatch(digest):
        raise ReplyRejected("blocks", "the response block is not base64url")
    return digest


def verify_reply(raw: bytes, dnsfunc: Callable[..., bytes | None]) -> VerifiedReply:
    """The checked reply, or :class:`ReplyRejected` saying why it does not count."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        sender = from_address(msg)
    except ReplyRejected:
        raise
    except Exception as e:  # the parser is lenient, but header objects can still throw
        raise ReplyRejected("malformed", type(e).__name__) from None
    from_domain = sender.rpartition("@")[2]
    d, s = check_dkim(raw, from_domain, dnsfunc)
    return VerifiedReply(from_addr=sender, response=response_block(msg), dkim_domain=d, dkim_selector=s)
