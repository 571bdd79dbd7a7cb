"""The RFC 8823 challenge mail: tokens, the message, its DKIM signature, and how it leaves.

    >>> from autosmime.servers.ca.mail import new_token1, compose_challenge
    >>> t1 = new_token1(); len(t1), "=" in t1
    (32, False)
    >>> raw = compose_challenge("acme@ca.test", "alice@example.test", t1, "<x@ca.test>")
    >>> b"Auto-Submitted: auto-generated; type=acme" in raw and (b"Subject: ACME: " + t1.encode()) in raw
    True

token-part1 is 24 random bytes (192 bits) in unpadded base64url: a whole
number of 3-byte groups, so joining the two token parts as strings or as
decoded bytes gives the same key authorization (the RFC leaves this open and
clients disagree; see shared/research/certificate-automation.md §3).
token-part2 is 32 random bytes, unpadded base64url, in the challenge object.

The mail carries From (the CA's address), To (the mailbox), Subject
``ACME: <token-part1>``, Date, Message-ID, ``Auto-Submitted: auto-generated;
type=acme``, MIME-Version and a text/plain US-ASCII body without tokens.
It is DKIM-signed (relaxed/relaxed, rsa-sha256, d = the From domain) over
every header RFC 8823 lists; the absent ones (Sender, Reply-To, Cc,
In-Reply-To, References) are signed too, so none can be added later.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import re
import secrets
import smtplib
import threading
import time
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGNED_HEADERS = (b"from", b"sender", b"reply-to", b"to", b"cc", b"subject", b"date", b"in-reply-to",
                  b"references", b"message-id", b"auto-submitted", b"mime-version", b"content-type",
                  b"content-transfer-encoding")

BODY = (
    "This message was sent by an automatic certificate authority (ACME, RFC 8823)\r\n"
    "because a certificate was requested for this address.\r\n"
    "\r\n"
    "If your mail program requested it, it answers this message by itself.\r\n"
    "If you did not ask for a certificate, ignore this message: without an answer\r\n"
    "nothing is issued.\r\n"
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_token1() -> str:
    return b64url(secrets.token_bytes(24))


def new_token2() -> str:
    return b64url(secrets.token_bytes(32))


def new_message_id(domain: str) -> str:
    return f"<{secrets.token_urlsafe(18)}@{domain}>"


def compose_challenge(mail_from: str, to: str, token1: str, message_id: str, *, date: str | None = None) -> bytes:
    """The unsigned challenge message, CRLF line endings."""
    for value in (mail_from, to, token1, message_id):
        if any(c in value for c in "\r\n"):
            raise ValueError("header value with a line break")
    headers = [
        f"From: {mail_from}",
        f"To: {to}",
        f"Subject: ACME: {token1}",
        f"Date: {date or email.utils.formatdate(localtime=False, usegmt=True)}",
        f"Message-ID: {message_id}",
        "Auto-Submitted: auto-generated; type=acme",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + BODY).encode("utf-8")


_WSP = re.compile(rb"[ \t]+")


def _relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 §3.4.2: lower-case name, unfolded value, runs of WSP as one SP, trimmed."""
    value = _WSP.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.strip().lower() + b":" + value


def _relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4: WSP runs as one SP, no trailing WSP, no trailing empty lines."""
    lines = [_WSP.sub(b" ", line).rstrip(b" ") for line in body.split(b"\r\n")]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def _split_message(raw: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("a message needs CRLF line endings and an empty line after the header")
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        else:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields, body


def dkim_sign(raw: bytes, *, selector: str, domain: str, key: rsa.RSAPrivateKey,
              headers: tuple[bytes, ...] = SIGNED_HEADERS, now: int | None = None) -> bytes:
    """``raw`` (CRLF) with a DKIM-Signature header prepended: rsa-sha256, relaxed/relaxed.

    Written here rather than with ``dkim.sign`` because dkimpy does RSA in
    pure Python (7 ms a signature); OpenSSL does it in well under 1 ms. The
    result is checked by dkimpy's verifier in the tests. Absent headers in
    ``headers`` are signed as absent (over-signing), so they cannot be added.
    """
    fields, body = _split_message(raw)
    bh = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest()).decode()
    tags = (f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s={selector}; "
            f"t={int(time.time()) if now is None else now}; h={':'.join(h.decode() for h in headers)}; "
            f"bh={bh}; b=")
    # Each name takes the next instance from the bottom (RFC 6376 §5.4.2); none left: nothing hashed.
    remaining: dict[bytes, list[bytes]] = {}
    for name, value in fields:
        remaining.setdefault(name.strip().lower(), []).append(value)
    hashed = b""
    for name in headers:
        instances = remaining.get(name)
        if instances:
            hashed += _relaxed_header(name, instances.pop()) + b"\r\n"
    hashed += _relaxed_header(b"dkim-signature", b" " + tags.encode())
    signature = key.sign(hashed, padding.PKCS1v15(), hashes.SHA256())
    return b"DKIM-Signature: " + tags.encode() + base64.b64encode(signature) + b"\r\n" + raw


class Outbox(Protocol):
    """Where challenge mails go."""

    def send(self, mail_from: str, to: str, raw: bytes) -> None: ...


class SMTPOutbox:
    """Plain SMTP to a relay that accepts the CA's mail (the devstack's relay port, an MTA)."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0, starttls: bool = False) -> None:
        self.host, self.port, self.timeout, self.starttls = host, port, timeout, starttls

    def send(self, mail_from: str, to: str, raw: bytes) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            smtp.sendmail(mail_from, [to], raw)


class MemoryOutbox:
    """Keeps sent mails in a list: for the benchmark's no-mail-loop figure and unit tests."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []
        self._lock = threading.Lock()

    def send(self, mail_from: str, to: str, raw: bytes) -> None:
        with self._lock:
            self.sent.append((mail_from, to, raw))
