"""The token mail: proof of mailbox control, picked up and confirmed by the autosmime client itself.

    >>> raw = token_mail("dir@example.test", "bob@example.test", "publish", "r1", "tok", "ab" * 32, "http://d")
    >>> b"X-Autosmime-Directory: v1; op=publish; request=r1; token=tok" in raw
    True

The machine-readable part is one header (its format: autosmime.pki.possession),
so an IMAP ``SEARCH HEADER`` finds it without downloading anything else:

    X-Autosmime-Directory: v1; op=<publish|unpublish>; request=<id>; token=<token>; cert=<sha256 hex>

``request`` is the id the client got back from its POST; it only confirms a
mail whose request it made. The body repeats the facts for a human and says
what to do if they did not ask (nothing: the request expires). The mail is
sent unauthenticated to the configured SMTP relay, like any MTA hands mail on.
"""

from __future__ import annotations

import email.utils
import smtplib

from autosmime.errors import DirectoryError
from autosmime.pki.possession import TOKEN_HEADER, token_header


def token_mail(sender: str, address: str, op: str, request_id: str, token: str, sha256_hex: str, directory: str) -> bytes:
    what = "publish your certificate in" if op == "publish" else "withdraw your certificate from"
    body = (
        f"Someone (very likely your own autosmime) asked to {what} the key directory\r\n"
        f"{directory}\r\n\r\n"
        f"Address: {address}\r\nCertificate SHA-256: {sha256_hex}\r\n\r\n"
        "autosmime confirms this by itself; there is nothing to click.\r\n"
        "If you did not ask for it, ignore this mail: the request expires in an hour.\r\n"
    )
    head = (
        f"From: autosmime key directory <{sender}>\r\n"
        f"To: <{address}>\r\n"
        f"Subject: [autosmime] confirm: {op} your certificate\r\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
        f"Message-ID: {email.utils.make_msgid('directory')}\r\n"
        "Auto-Submitted: auto-generated\r\n"
        f"{TOKEN_HEADER}: {token_header(op, request_id, token, sha256_hex)}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
    )
    return (head + "\r\n" + body).encode("ascii")


def send(smtp: tuple[str, int], sender: str, address: str, raw: bytes) -> None:
    host, port = smtp
    try:
        with smtplib.SMTP(host, port, timeout=30) as s:
            s.sendmail(sender, [address], raw)
    except (OSError, smtplib.SMTPException) as e:
        raise DirectoryError(f"cannot send the confirmation mail: {e}") from None
