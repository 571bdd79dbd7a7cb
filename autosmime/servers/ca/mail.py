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
import secrets
import smtplib
import threading
from typing import Protocol

import dkim

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


def dkim_sign(raw: bytes, *, selector: str, domain: str, key_pem: bytes,
              headers: tuple[bytes, ...] = SIGNED_HEADERS) -> bytes:
    """``raw`` with a DKIM-Signature header prepended."""
    sig = dkim.sign(raw, selector.encode(), domain.encode(), key_pem, include_headers=list(headers),
                    canonicalize=(b"relaxed", b"relaxed"))
    return sig + raw


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
