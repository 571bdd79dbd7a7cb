"""RFC 8823 ``email-reply-00``: the tokens, the key authorisation, the challenge mail and the reply.

    >>> from autosmime.enroll.challenges import response_digest
    >>> import josepy as jose
    >>> from cryptography.hazmat.primitives.asymmetric import ec
    >>> jwk = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    >>> part1 = "A" * 32   # 24 bytes, unpadded: both readings agree
    >>> response_digest(part1, "DGyRejmCefe7v4NfDGDKfA", jwk, "string") == response_digest(
    ...     part1, "DGyRejmCefe7v4NfDGDKfA", jwk, "bytes")
    True

The ACME token is token-part1 (from the challenge mail's Subject) joined with
token-part2 (the challenge object's ``token``). RFC 8823 does not say whether the
base64url *strings* or the decoded *bytes* are joined, and implementations differ
(shared/research/certificate-automation.md §3): the ``string`` reading (acme4j,
acme2certifier) and the ``bytes`` reading (acmez, CASTLE). They agree exactly when
token-part1 is unpadded and a whole number of 3-byte groups; otherwise the caller
picks one per CA and retries once with :func:`other_reading`.

Nothing here touches the network: the mail comes in as bytes, DNS for DKIM comes
from a caller-supplied ``dnsfunc`` (see :func:`zone_dnsfunc` for a zone file).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from pathlib import Path
from typing import Literal

import josepy as jose

from autosmime.errors import ChallengeMailInvalid

Reading = Literal["string", "bytes"]
READINGS: tuple[Reading, ...] = ("string", "bytes")
DnsFunc = Callable[..., bytes | None]

BEGIN = "-----BEGIN ACME RESPONSE-----"
END = "-----END ACME RESPONSE-----"
# Headers a CA's DKIM signature must cover for the mail to count (RFC 8823 §3.1; CASTLE enforces these).
REQUIRED_SIGNED = frozenset({b"from", b"to", b"subject", b"date", b"message-id", b"auto-submitted"})
_TOKEN = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_SUBJECT = re.compile(r"\s*ACME:\s+(.+?)\s*", re.S)


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64u_decode(text: str) -> bytes:
    text = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ChallengeMailInvalid(f"token {text[:12]}… is not base64url") from None


def other_reading(reading: Reading) -> Reading:
    return "bytes" if reading == "string" else "string"


def readings_agree(part1: str) -> bool:
    """True when both readings give the same token: part1 unpadded and a multiple of 3 bytes."""
    return "=" not in part1 and len(part1) % 4 == 0


def join_token(part1: str, part2: str, reading: Reading) -> str:
    """The ACME token: the base64url strings joined (``string``) or the bytes joined and re-encoded."""
    part1 = "".join(part1.split())
    if reading == "string":
        return part1 + part2
    if reading == "bytes":
        return _b64u(_b64u_decode(part1) + _b64u_decode(part2))
    raise ValueError(f"unknown token reading {reading!r}")


def key_authorization(part1: str, part2: str, account_key: jose.JWK, reading: Reading) -> str:
    """token "." base64url(JWK thumbprint) (RFC 8555 §8.1)."""
    thumb = _b64u(account_key.public_key().thumbprint(hash_function=jose.jwk.hashes.SHA256))
    return f"{join_token(part1, part2, reading)}.{thumb}"


def response_digest(part1: str, part2: str, account_key: jose.JWK, reading: Reading) -> str:
    """What goes into the response block: base64url(SHA-256(keyAuthorization)), unpadded."""
    ka = key_authorization(part1, part2, account_key, reading)
    return _b64u(hashlib.sha256(ka.encode("ascii")).digest())


# --- the challenge mail --------------------------------------------------------------------


@dataclass(frozen=True)
class ChallengeMail:
    """A challenge mail that passed the header checks (DKIM is :func:`check_dkim`'s job)."""

    message_id: str       # with the angle brackets
    sender: str           # the From address
    reply_to: str | None
    to: tuple[str, ...]
    subject: str          # decoded
    token_part1: str      # whitespace removed

    @property
    def reply_address(self) -> str:
        """Where the response goes: Reply-To if present, else From (RFC 8823 §3.2)."""
        return self.reply_to or self.sender


def _decoded(value: str | None) -> str:
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return value


def same_address(a: str, b: str) -> bool:
    """Mailbox equality: the local part exactly, the domain case-insensitively."""
    la, _, da = a.strip().rpartition("@")
    lb, _, db = b.strip().rpartition("@")
    return bool(la) and la == lb and da.lower().rstrip(".") == db.lower().rstrip(".")


def _addresses(values: list[str]) -> list[str]:
    return [addr for _name, addr in email.utils.getaddresses([_decoded(v) for v in values]) if addr]


def looks_like_challenge(raw: bytes) -> bool:
    """A cheap pre-filter: Subject ``ACME: ...`` without a reply prefix."""
    msg = message_from_bytes(raw, policy=policy.compat32)
    return bool(_SUBJECT.fullmatch(_decoded(msg.get("Subject"))))


def parse_challenge_mail(raw: bytes, *, expected_from: str, address: str) -> ChallengeMail:
    """Check a candidate challenge mail's headers (RFC 8823 §3.1) and take token-part1 from it.

    ``expected_from`` is the challenge object's ``from``; ``address`` the mailbox being
    validated. Raises :class:`ChallengeMailInvalid` saying which check failed.
    """
    msg = message_from_bytes(raw, policy=policy.compat32)
    froms = _addresses(msg.get_all("From") or [])
    if len(froms) != 1:
        raise ChallengeMailInvalid(f"the challenge mail must have exactly one From address, not {len(froms)}")
    if not same_address(froms[0], expected_from):
        raise ChallengeMailInvalid(f"the challenge mail is from {froms[0]}, not the CA's {expected_from}")
    to = _addresses(msg.get_all("To") or [])
    if not any(same_address(t, address) for t in to):
        raise ChallengeMailInvalid(f"the challenge mail is not addressed to {address}")
    auto = " ".join((msg.get("Auto-Submitted") or "").split()).lower()
    if not (auto == "auto-generated" or auto.startswith("auto-generated;")):
        raise ChallengeMailInvalid("the challenge mail lacks 'Auto-Submitted: auto-generated'")
    subject = _decoded(msg.get("Subject"))
    match = _SUBJECT.fullmatch(subject)
    if not match:
        raise ChallengeMailInvalid("the challenge mail's Subject is not 'ACME: <token>'")
    token = "".join(match.group(1).split())      # a folded Subject may split the token
    if not _TOKEN.fullmatch(token) or len(_b64u_decode(token)) < 16:
        raise ChallengeMailInvalid("the challenge mail's token-part1 is not base64url of at least 128 bits")
    message_id = " ".join((msg.get("Message-ID") or "").split())
    if not (message_id.startswith("<") and message_id.endswith(">") and "@" in message_id):
        raise ChallengeMailInvalid("the challenge mail has no usable Message-ID")
    reply_to = _addresses(msg.get_all("Reply-To") or [])
    return ChallengeMail(message_id=message_id, sender=froms[0], reply_to=reply_to[0] if reply_to else None,
                         to=tuple(to), subject=subject, token_part1=token)


def check_dkim(raw: bytes, domain: str, dnsfunc: DnsFunc) -> None:
    """Require a valid DKIM signature with ``d=`` ``domain``, no ``l=``, covering the RFC 8823 headers.

    Raises :class:`ChallengeMailInvalid` otherwise; a key that cannot be looked up
    counts as a failure (the caller decides whether a resolver is available at all).
    """
    import dkim
    from dkim.util import InvalidTagValueList, parse_tag_value

    verifier = dkim.DKIM(raw, minkey=1024)
    sigs = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    if not sigs:
        raise ChallengeMailInvalid("the challenge mail is not DKIM-signed")
    reasons = []
    for idx, value in enumerate(sigs):
        try:
            tags = parse_tag_value(value)
        except InvalidTagValueList:
            reasons.append("malformed DKIM-Signature")
            continue
        d = tags.get(b"d", b"").decode("ascii", "replace").lower().rstrip(".")
        if d != domain.lower().rstrip("."):
            reasons.append(f"signed by {d}, not {domain}")
            continue
        if b"l" in tags:
            reasons.append("l= leaves part of the body unsigned")
            continue
        signed = {h.strip().lower() for h in tags.get(b"h", b"").split(b":")}
        missing = REQUIRED_SIGNED - signed
        if missing:
            reasons.append("the signature does not cover " + ", ".join(sorted(m.decode() for m in missing)))
            continue
        try:
            ok = verifier.verify(idx, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            reasons.append(f"DKIM: {e}")
            continue
        if ok:
            return
        reasons.append("DKIM signature does not verify")
    raise ChallengeMailInvalid("the challenge mail failed DKIM: " + "; ".join(reasons))


def zone_dnsfunc(path: str | Path) -> DnsFunc:
    """A dkimpy ``dnsfunc`` answering TXT look-ups from an RFC 1035 master file (absolute names).

    For the embedded stack and tests, where the CA's DKIM key is published in a
    local zone file instead of DNS. The file is re-read on every look-up, so
    records added later (a CA started after the client) are seen.
    """
    import dns.rdataclass
    import dns.rdatatype

    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        qname = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower() + "."
        try:
            zone = _read_zone(Path(path).read_text())
        except Exception:
            return None
        node = zone.get_node(qname)
        if node is None:
            return None
        rdataset = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TXT)
        if rdataset is None:
            return None
        for rdata in rdataset:
            return b"".join(rdata.strings)
        return None

    return lookup


def _read_zone(text: str):  # -> dns.zone.Zone
    """A master file with absolute names; the origin is $ORIGIN, else the SOA's owner."""
    import dns.zone

    origin = None
    if "$ORIGIN" not in text.upper():
        for line in text.splitlines():
            fields = line.split(";", 1)[0].split()
            if "SOA" in (f.upper() for f in fields[1:4]) and fields[0].endswith("."):
                origin = fields[0]
                break
    return dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)


# --- the response mail ---------------------------------------------------------------------


def response_body(digest: str) -> str:
    """The response block, the digest wrapped at 72 columns (as acme4j does)."""
    lines = [digest[i:i + 72] for i in range(0, len(digest), 72)]
    return "\r\n".join([BEGIN, *lines, END]) + "\r\n"


def response_mail(challenge: ChallengeMail, address: str, digest: str, *, date: str | None = None,
                  message_id: str | None = None) -> tuple[bytes, str]:
    """The response mail (RFC 8823 §3.2) as CRLF bytes, and its Message-ID.

    Plain US-ASCII text: the CA reads the block from the text/plain body, and a
    provider's DKIM signature survives unchanged transports.
    """
    domain = address.rpartition("@")[2]
    message_id = message_id or f"<acme-reply.{secrets.token_hex(12)}@{domain}>"
    headers = [
        ("From", address),
        ("To", challenge.reply_address),
        ("Subject", f"Re: ACME: {challenge.token_part1}"),
        ("Date", date or email.utils.formatdate(localtime=False, usegmt=True)),
        ("Message-ID", message_id),
        ("In-Reply-To", challenge.message_id),
        ("References", challenge.message_id),
        ("Auto-Submitted", "auto-replied"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"),
        ("Content-Transfer-Encoding", "7bit"),
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (head + "\r\n" + response_body(digest)).encode("ascii"), message_id
