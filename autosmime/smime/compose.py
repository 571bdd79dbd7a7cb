"""Write a new message: headers, a UTF-8 text body and attachments, ready to sign and encrypt.

    >>> from autosmime.smime.compose import compose
    >>> raw = compose("alice@example.test", ["bob@example.test"], "Hello", "Hi Bob,\\nsee you.\\n")
    >>> raw.split(b"\\r\\n")[0]
    b'From: alice@example.test'

The output is canonical CRLF with 7-bit transfer encodings (quoted-printable or base64 as the
content needs), so the signature covers exactly what is sent and survives any relay. Bcc is never
written into the message: it exists only in the SMTP envelope.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from email import policy, utils
from email.message import EmailMessage
from pathlib import Path

from autosmime.errors import UsageError

__all__ = ["compose"]

_POLICY = policy.SMTP.clone(max_line_length=78)


def compose(sender: str, to: Sequence[str], subject: str, body: str, *, cc: Sequence[str] = (),
            attachments: Sequence[Path] = (), message_id_domain: str | None = None) -> bytes:
    """One RFC 5322 message; UsageError for an empty recipient list or a header that would inject another."""
    if not to and not cc:
        raise UsageError("a message needs at least one recipient")
    for value in (sender, subject, *to, *cc):
        if "\r" in value or "\n" in value:
            raise UsageError("a header value may not contain a line break")
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Date"] = utils.format_datetime(utils.localtime())
    msg["Message-ID"] = utils.make_msgid(domain=message_id_domain or sender.rpartition("@")[2] or None)
    msg["MIME-Version"] = "1.0"
    msg.set_content(body, charset="utf-8", cte="quoted-printable")
    for path in attachments:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise UsageError(f"cannot read attachment {path}: {e.strerror}") from None
        ctype, encoding = mimetypes.guess_type(str(path))
        maintype, _, subtype = (ctype if ctype and not encoding else "application/octet-stream").partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=Path(path).name)
    return msg.as_bytes()
