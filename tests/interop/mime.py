"""Build and take apart S/MIME .eml files on raw bytes, the way a mail client would.

    >>> from tests.interop.mime import message, entity, wrap_enveloped, enveloped_der
    >>> eml = message("alice@example.test", "bob@example.test")
    >>> enveloped_der(wrap_enveloped(eml, b"0\\x03\\x02\\x01\\x00")) == b"0\\x03\\x02\\x01\\x00"
    True
    >>> entity(eml).startswith(b"Content-Type: multipart/mixed")
    True

gpgsm and cmsutil read and write bare CMS, so the harness does the MIME
part for them: it cuts the DER out of what autosmime wrote and wraps what
the peers wrote into the .eml a mail client would have sent. Nothing here
re-serialises a message through the ``email`` package, because that can
change the signed bytes (smime-crypto.md §7).
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default as _default_policy
from email.utils import format_datetime

#: Headers that stay outside the S/MIME layer (the contract preserves them).
OUTER = ("From", "To", "Subject", "Date", "Message-ID")

_BOUNDARY = b"=-=interop-mixed=-="
# The time of this run: peers sign now, and a Date over an hour from the signing time is a
# time-mismatch (Thunderbird's rule, which autosmime applies).
_DATE = format_datetime(datetime.now(UTC).replace(microsecond=0)).encode()


def crlf(data: bytes) -> bytes:
    """Line endings made CRLF, as on the wire and as signed (RFC 8551 §3.1.1)."""
    return re.sub(rb"\r?\n", b"\r\n", data)


def message(sender: str, recipient: str) -> bytes:
    """A test mail that exercises canonicalisation: QP text (non-ASCII, a leading
    "From ", an encoded trailing space) plus a binary attachment in base64."""
    blob = base64.encodebytes(bytes(range(256)) * 2).replace(b"\n", b"\r\n")
    text = (
        b"Gr=C3=BC=C3=9Fe from the autosmime interop suite.\r\n"
        b"=46rom the start of a line, and a trailing space=20\r\n"
        b"\r\n"
        b"-- \r\n"
        b"last line\r\n"
    )
    return (
        f"From: Sender <{sender}>\r\n"
        f"To: Recipient <{recipient}>\r\n"
        "Subject: interop check =?utf-8?q?=E2=9C=93?=\r\n"
    ).encode() + (
        b"Date: " + _DATE + b"\r\n"
        b"Message-ID: <interop-check@example.test>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="' + _BOUNDARY + b'"\r\n'
        b"\r\n"
        b"--" + _BOUNDARY + b"\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n" + text +
        b"--" + _BOUNDARY + b"\r\n"
        b'Content-Type: application/octet-stream; name="blob.bin"\r\n'
        b'Content-Disposition: attachment; filename="blob.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n" + blob +
        b"--" + _BOUNDARY + b"--\r\n"
    )


def split_head(eml: bytes) -> tuple[list[bytes], bytes]:
    """Header lines (folded lines joined to their field) and the body, on raw bytes."""
    eml = crlf(eml)
    head, sep, body = eml.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no header/body separator")
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields, body


def _name(field: bytes) -> str:
    return field.split(b":", 1)[0].strip().decode("ascii").lower()


def header(eml: bytes, name: str) -> str | None:
    """One decoded header value of the top-level entity."""
    msg = BytesHeaderParser(policy=_default_policy).parsebytes(crlf(eml))
    value = msg.get(name)
    return None if value is None else str(value)


def param(eml: bytes, name: str, key: str) -> str | None:
    msg = BytesHeaderParser(policy=_default_policy).parsebytes(crlf(eml))
    value = msg.get(name)
    return None if value is None else value.params.get(key)


def entity(eml: bytes) -> bytes:
    """The MIME entity the S/MIME layer protects: Content-* fields and body, CRLF."""
    fields, body = split_head(eml)
    kept = [f for f in fields if _name(f).startswith("content-")]
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


def duplicate_fields(eml: bytes) -> list[str]:
    """Header fields that RFC 5322/2045 allow once but appear more often."""
    once = {"from", "to", "subject", "date", "message-id", "mime-version",
            "content-type", "content-transfer-encoding"}
    names = [_name(f) for f in split_head(eml)[0]]
    return sorted({n for n in names if n in once and names.count(n) > 1})


def outer(eml: bytes) -> bytes:
    """The header fields a mail client keeps outside the S/MIME layer."""
    fields, _ = split_head(eml)
    keep = {h.lower() for h in OUTER}
    return b"".join(f + b"\r\n" for f in fields if _name(f) in keep)


def _b64(der: bytes) -> bytes:
    return base64.encodebytes(der).replace(b"\n", b"\r\n")


def wrap_signed(eml: bytes, content: bytes, signature: bytes, micalg: str = "sha-256") -> bytes:
    """multipart/signed around ``content`` (sent byte-exact) with a DER signature."""
    boundary = b"----=interop-signed-7f3a"
    assert boundary not in content
    return (
        outer(eml) + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        b'micalg=' + micalg.encode() + b'; boundary="' + boundary + b'"\r\n'
        b"\r\n"
        b"This is a cryptographically signed message in MIME format.\r\n"
        b"\r\n"
        b"--" + boundary + b"\r\n" + content + b"\r\n"
        b"--" + boundary + b"\r\n"
        b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="smime.p7s"\r\n'
        b"\r\n" + _b64(signature) +
        b"\r\n--" + boundary + b"--\r\n"
    )


def wrap_pkcs7_mime(eml: bytes, der: bytes, smime_type: str) -> bytes:
    """application/pkcs7-mime (enveloped-data, signed-data, ...) carrying ``der``."""
    return (
        outer(eml) + b"MIME-Version: 1.0\r\n"
        b"Content-Type: application/pkcs7-mime; smime-type=" + smime_type.encode()
        + b'; name="smime.p7m"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="smime.p7m"\r\n'
        b"\r\n" + _b64(der)
    )


def wrap_enveloped(eml: bytes, der: bytes) -> bytes:
    return wrap_pkcs7_mime(eml, der, "enveloped-data")


def with_outer(eml: bytes, smime: bytes) -> bytes:
    """OpenSSL's own S/MIME output (MIME-Version + body, LF) given the mail's outer headers."""
    return outer(eml) + crlf(smime)


def pkcs7_mime_der(eml: bytes) -> bytes:
    """The DER inside an application/pkcs7-mime message (base64 body)."""
    ctype = (header(eml, "Content-Type") or "").lower()
    if not ctype.startswith(("application/pkcs7-mime", "application/x-pkcs7-mime")):
        raise ValueError(f"not application/pkcs7-mime: {ctype!r}")
    cte = (header(eml, "Content-Transfer-Encoding") or "").strip().lower()
    if cte != "base64":
        raise ValueError(f"pkcs7-mime body is not base64 but {cte!r}")
    _, body = split_head(eml)
    return base64.b64decode(b"".join(body.split()), validate=True)


enveloped_der = pkcs7_mime_der


def split_signed(eml: bytes) -> tuple[bytes, bytes]:
    """(signed content, DER signature) of a multipart/signed message, cut on raw bytes.

    The signed content is everything between the first delimiter line and the
    CRLF that precedes the next one (RFC 1847 §2.1), never re-serialised.
    """
    boundary = param(eml, "Content-Type", "boundary")
    if not boundary:
        raise ValueError("multipart/signed without boundary")
    _, body = split_head(eml)
    delim = b"--" + boundary.encode()
    parts = re.split(rb"(?:^|\r\n)" + re.escape(delim) + rb"(?:--)?[ \t]*(?:\r\n|$)", body)
    # parts: [preamble, signed content, signature part, epilogue...]
    if len(parts) < 3:
        raise ValueError("multipart/signed with fewer than two parts")
    content, sig_part = parts[1], parts[2]
    sig_head, _, sig_body = sig_part.partition(b"\r\n\r\n")
    if b"pkcs7-signature" not in sig_head.lower():
        raise ValueError("second part is not application/pkcs7-signature")
    # The closing delimiter may lack its CRLF at the end of the message.
    sig_body = sig_body.split(b"\r\n" + delim, 1)[0]
    return content, base64.b64decode(b"".join(sig_body.split()), validate=True)
