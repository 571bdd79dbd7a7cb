"""A message as a person reads it on a terminal: the main headers, the text, the attachments listed.

    >>> from autosmime.cli._view import text_view
    >>> print(text_view(b"From: a@example.test\\r\\nSubject: hi\\r\\nContent-Type: text/plain\\r\\n\\r\\nHello\\r\\n"))
    From:    a@example.test
    Subject: hi
    <BLANKLINE>
    Hello

Everything shown was written by the sender, so every line goes through
:func:`autosmime.mailbox.text.mail_text`: no escape sequence or bidi override reaches the terminal.
``read UID --raw`` (or ``--out FILE``) gives the message itself.
"""

from __future__ import annotations

import email.parser
import email.policy
import html
import re
from email.message import EmailMessage, MIMEPart

from autosmime.mailbox.text import mail_text, server_text

__all__ = ["text_view"]

_HEADERS = ("From", "To", "Cc", "Date", "Subject")


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a header so malformed the policy raises: not shown rather than the read failing
        return ""
    return server_text(str(value)) if value is not None else ""


def _text_of(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # unknown charset or broken encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    if part.get_content_subtype() == "html":
        content = re.sub(r"(?is)<(script|style)\b.*?</\1>", "", str(content))
        content = re.sub(r"(?i)<br\s*/?>|</p>", "\n", content)
        content = html.unescape(re.sub(r"<[^>]*>", "", content))
    return mail_text(str(content))


def text_view(raw: bytes) -> str:
    """The headers From, To, Cc, Date and Subject, a blank line, the text (the plain part, else the HTML
    part's text), and a line for each attachment."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    lines = [f"{name + ':':<8} {value}" for name in _HEADERS if (value := _header(message, name))]
    body = message.get_body(("plain", "html"))
    lines += ["", _text_of(body)] if body is not None else ["", "(no text)"]
    attachments = []
    for part in message.iter_attachments():
        name = server_text(part.get_filename() or "unnamed")
        size = len(part.get_payload(decode=True) or b"")
        attachments.append(f"[attachment: {name} ({part.get_content_type()}, {size:,} bytes)]")
    if attachments:
        lines += ["", *attachments]
    return "\n".join(lines)
