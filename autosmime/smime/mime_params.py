"""Content-Type and Content-Transfer-Encoding of a MIME entity, read without the email parser.

    >>> from autosmime.smime.mime_params import parse_entity_fields
    >>> parse_entity_fields((b'Content-Type: Multipart/Signed; Boundary="b 1"; micalg=sha-256\\r\\n',))
    ('multipart/signed', {'boundary': 'b 1', 'micalg': 'sha-256'}, '7bit')

The answers are exactly those of ``email.message_from_bytes(..., policy=compat32)``
(``get_content_type()``, ``get_params()``, ``get("content-transfer-encoding")``),
which is what autosmime used before: the same grammar (quoted-strings with
backslash escapes, ``;`` inside quotes, case-insensitive names, RFC 2045's
text/plain for a missing or invalid type, RFC 2231 continuations and
charsets through ``email.utils.decode_params``), without the feed parser,
which costs ~100 us per message. An RFC 2231 value is collapsed to text as
``Message.get_filename()`` does.

Only header blocks of the plain form take this path: ASCII, printable, and
field names written exactly ``Content-Type``/``Content-Transfer-Encoding``
(any case). Anything else (8-bit bytes, control characters, a space before
the colon, which ends the header block for the email parser) is answered by
the email package itself, so the odd cases keep its exact leniency.
tests/smime/test_perf2_mime_params.py compares both with hypothesis.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from collections.abc import Sequence
from functools import lru_cache

from autosmime.errors import MalformedMessage

__all__ = ["parse_entity_fields"]

Params = dict[str, str]

# A field the fast path understands: exact name, colon, then printable ASCII with
# spaces, tabs and folded CRLF-whitespace continuations only.
# (Runs of one character class, not a group per character: sre matches those in a C loop.)
_PLAIN_FIELD = re.compile(rb"(?i:(content-type|content-transfer-encoding)):[ \t!-~]*(?:\r\n[ \t][ \t!-~]*)*\r\n\Z")


@lru_cache(maxsize=256)
def parse_entity_fields(fields: tuple[bytes, ...]) -> tuple[str, Params, str]:
    """(type/subtype lower-cased, parameters by lower-cased name, transfer encoding lower-cased).

    ``fields`` are the Content-Type and Content-Transfer-Encoding header fields of one
    entity, in order, each CRLF-terminated with its folded continuation lines.
    The returned dict is shared by the cache: callers copy it before changing it.
    MalformedMessage where the email package itself fails (it raises TypeError for
    ``name*`` mixed with ``name*0``).
    """
    try:
        return _parse(fields)
    except (TypeError, ValueError, LookupError) as e:
        raise MalformedMessage(f"unreadable Content-Type parameters ({type(e).__name__})") from None


def _parse(fields: tuple[bytes, ...]) -> tuple[str, Params, str]:
    ctype_value: str | None = None
    cte_value: str | None = None
    for f in fields:
        m = _PLAIN_FIELD.match(f)
        if m is None:
            return _email_package(fields)
        # compat32: the value after the colon, leading blanks and the final CRLF removed.
        value = f[m.end(1) + 1:].decode("ascii").lstrip(" \t").rstrip("\r\n")
        if len(m.group(1)) == 12:  # content-type: the first one counts, as Message.get() answers
            if ctype_value is None:
                ctype_value = value
        elif cte_value is None:
            cte_value = value
    cte = (cte_value if cte_value is not None else "7bit").strip().lower()
    if ctype_value is None:
        return "text/plain", {}, cte
    return _content_type(ctype_value), _params(ctype_value), cte


def _content_type(value: str) -> str:
    ctype = value.partition(";")[0].strip().lower()
    # RFC 2045 5.2: an invalid type is taken as text/plain.
    return ctype if ctype.count("/") == 1 else "text/plain"


def _params(value: str) -> Params:
    pairs: list[tuple[str, str]] = []
    for p in _split_params(value):
        name, eq, val = p.partition("=")
        pairs.append((name.strip(), val.strip()) if eq else (p.strip(), ""))
    if "*" in value or "\\" in value:  # RFC 2231 names or backslash escapes: the email package's rules
        return _collapse(email.utils.decode_params(pairs))
    # Without them decode_params then _collapse come down to unquote(value), a third of the cost:
    # quote() and unquote() undo each other on text without backslashes.
    return {name.lower(): email.utils.unquote(val) for name, val in pairs[1:]}


def _split_params(s: str) -> list[str]:
    """The ``;``-separated pieces of a header value, ``;`` inside quotes kept (email.message._parseparam)."""
    s = ";" + s
    out: list[str] = []
    while s[:1] == ";":
        s = s[1:]
        end = s.find(";")
        # A ";" is inside a quoted-string while an odd number of unescaped quotes precede it.
        while end > 0 and (s.count('"', 0, end) - s.count('\\"', 0, end)) % 2:
            end = s.find(";", end + 1)
        if end < 0:
            end = len(s)
        f = s[:end]
        if "=" in f:
            i = f.index("=")
            f = f[:i].strip().lower() + "=" + f[i + 1:].strip()
        out.append(f.strip())
        s = s[end:]
    return out


def _collapse(decoded: Sequence[tuple[str, str | tuple[str | None, str | None, str]]]) -> Params:
    params: Params = {}
    for name, value in decoded[1:]:  # the first pair is type/subtype itself
        if isinstance(value, tuple):  # RFC 2231 charset'language'value
            text = email.utils.collapse_rfc2231_value(
                (value[0], value[1], email.utils.unquote(value[2])))
        else:
            text = email.utils.unquote(value)
        params[name.lower()] = str(text)
    return params


def _email_package(fields: tuple[bytes, ...]) -> tuple[str, Params, str]:
    """The reference answer: what the email package makes of the same header fields."""
    msg = email.message_from_bytes(b"".join(fields) + b"\r\n", policy=email.policy.compat32)
    params: Params = {}
    for name, value in (msg.get_params() or [])[1:]:
        if isinstance(value, tuple):
            value = email.utils.collapse_rfc2231_value(value)
        params[name.lower()] = str(value)
    cte = str(msg.get("content-transfer-encoding", "7bit")).strip().lower()
    return msg.get_content_type(), params, cte
