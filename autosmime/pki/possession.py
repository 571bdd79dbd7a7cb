"""The key-possession statements a directory asks for, byte for byte the same on both sides.

    >>> from autosmime.pki.possession import statement, statement_message
    >>> statement("publish", "r1", "bob@example.test", "ab" * 32, b"\\x00" * 32)[:33]
    b'autosmime-directory-proof v1\\r\\nop: '

A signing key proves possession by signing ``statement_message(...)`` (an
ordinary S/MIME signature, made and checked by autosmime.smime); the directory
compares the signed body with ``statement(...)`` exactly. An encryption-only
key proves it by decrypting the directory's enveloped ``statement_message``
and returning the nonce. The statement names the operation, the request, the
address and the certificate, so a proof cannot be replayed for anything else.
Monitor requests, which have no server nonce, carry the time instead and are
accepted within ``MONITOR_SKEW`` seconds.
"""

from __future__ import annotations

import base64

__all__ = ["statement", "statement_message", "monitor_statement", "MONITOR_SKEW", "TOKEN_HEADER", "token_header",
           "parse_token_header"]

MONITOR_SKEW = 300

# The mailbox-control token travels in one header of the directory's mail (servers.directory.mailer), found by
# an IMAP SEARCH HEADER for "request=<id>;" and parsed by the client (agent.publish):
#     X-Autosmime-Directory: v1; op=<publish|unpublish>; request=<id>; token=<token>; cert=<sha256 hex>
TOKEN_HEADER = "X-Autosmime-Directory"


def token_header(op: str, request_id: str, token: str, sha256_hex: str) -> str:
    """The header's value."""
    return f"v1; op={op}; request={request_id}; token={token}; cert={sha256_hex}"


def parse_token_header(value: str) -> dict[str, str]:
    """The fields of a token header value ({} unless version 1)."""
    items = [p.strip() for p in " ".join(value.split()).split(";")]
    if not items or items[0] != "v1":
        return {}
    return {k.strip(): v.strip() for k, eq, v in (i.partition("=") for i in items[1:]) if eq}


def statement(op: str, request_id: str, address: str, sha256_hex: str, nonce: bytes) -> bytes:
    return (f"autosmime-directory-proof v1\r\nop: {op}\r\nrequest: {request_id}\r\naddress: {address}\r\n"
            f"cert-sha256: {sha256_hex}\r\nnonce: {base64.b64encode(nonce).decode()}\r\n").encode()


def monitor_statement(address: str, unix_time: int) -> bytes:
    return f"autosmime-directory-proof v1\r\nop: monitor\r\naddress: {address}\r\ntime: {unix_time}\r\n".encode()


def statement_message(body: bytes, address: str) -> bytes:
    """``body`` as a small text/plain message from ``address``, ready for autosmime.smime.sign or encrypt."""
    return (f"From: <{address}>\r\nSubject: autosmime directory proof\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode() + body


def message_body(message: bytes) -> bytes:
    """The body of a message (after the first empty line), line endings as they are."""
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = message.partition(b"\n\n")
    return body
