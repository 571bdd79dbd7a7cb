"""Byte scans of the message engine: compiled when the C extension built, else pure Python.

    >>> from autosmime.smime._scan import crlf_only, strip_whitespace
    >>> crlf_only(b"a\\r\\nb\\r\\n"), crlf_only(b"a\\nb")
    (True, False)
    >>> strip_whitespace(b"QUJD\\r\\nREVG\\r\\n")
    b'QUJDREVG'
    >>> split_header(b"From: a\\r\\nSubject: b\\r\\n c\\r\\n\\r\\nbody")
    ([b'From: a\\r\\n', b'Subject: b\\r\\n c\\r\\n'], [b'from', b'subject'], 27)

The pure-Python functions below are the reference: ``autosmime/smime/_speedups.c``
must give the same answers (tests/smime/test_scan.py compares them on generated
input). The extension is optional, so a machine without a C compiler still
installs and runs autosmime, only slower on small messages. ``COMPILED`` says
which one is in use.
"""

from __future__ import annotations

_WHITESPACE = b" \t\r\n"


def py_crlf_only(data, start: int = 0, end: int | None = None) -> bool:
    """Every CR and LF of ``data[start:end]`` belongs to a CRLF pair inside that range."""
    end = len(data) if end is None else end
    return data.count(b"\r\n", start, end) == data.count(b"\n", start, end) == data.count(b"\r", start, end)


MAX_LINE = 998  # octets of a line without its CRLF (RFC 5322 2.1.1)


def lines_fit(data, start: int = 0) -> bool:
    """No line of canonical CRLF ``data[start:]`` is over 998 octets.

    A line that fits ends with its LF at most 999 bytes after it starts: the
    last LF of that window starts a line again, so the scan jumps about a
    kilobyte per find() instead of visiting every line.
    """
    end = len(data)
    while end - start > MAX_LINE:
        lf = data.rfind(b"\n", start, start + MAX_LINE + 2)
        if lf < 0:
            return False
        start = lf + 1
    return True


def py_clean_7bit(data, start: int = 0) -> bool:
    """``data[start:]`` can be signed as it is: ASCII without NUL, every CR and LF in a CRLF pair,
    no line over 998 octets, and no line that starts with "From " (which mbox relays mangle)."""
    if start < 0:
        raise ValueError("negative offset")
    return (bytes(data[start:]).isascii() and data.find(b"\x00", start) < 0 and py_crlf_only(data, start)
            and lines_fit(data, start) and not data.startswith(b"From ", start)
            and data.find(b"\r\nFrom ", start) < 0)


def py_strip_whitespace(data, start: int = 0) -> bytes:
    """``data[start:]`` as bytes, without spaces, tabs, CRs and LFs."""
    return bytes(data[start:] if start else data).translate(None, _WHITESPACE)


def py_wrap_lines(data, width: int) -> bytes:
    """``data`` cut into lines of ``width`` bytes (the last may be shorter), each ended with CRLF."""
    if width <= 0:
        raise ValueError("width must be positive")
    data = bytes(data)
    return b"\r\n".join([data[i:i + width] for i in range(0, len(data), width)]) + b"\r\n"


def py_split_header(raw) -> tuple[list[bytes], list[bytes], int]:
    """(header fields, their lower-cased names, where the body starts) of a message.

    Each field keeps its folded continuation lines and ends with CRLF; lines may end
    with CRLF, CR or LF. The header block ends at the first blank line. ValueError
    on a continuation line before any field, or a line that is not a field.
    """
    if raw.startswith((b"\r\n", b"\n")):
        head, start = b"", 2 if raw.startswith(b"\r\n") else 1
    else:
        blank = _blank_line(raw)
        head, start = (raw, len(raw)) if blank is None else (raw[: blank[0]], blank[1])
    fields: list[bytes] = []
    for line in head.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise ValueError("message starts with a header continuation line")
            fields[-1] += line + b"\r\n"
        elif b":" in line:
            fields.append(line + b"\r\n")
        else:
            raise ValueError("malformed header line")
    return fields, [f[:f.find(b":")].strip().lower() for f in fields], start


def _blank_line(raw) -> tuple[int, int] | None:
    """(start, end) of the first blank line (``\\r?\\n\\r?\\n``) in ``raw``, found with find().

    A regex for it has no literal prefix, so it would be tried at every byte of the
    header block; the CRLF form is found first, then only the bytes before it are
    searched for the other forms.
    """
    crlf = raw.find(b"\r\n\r\n")
    limit = len(raw) if crlf < 0 else crlf + 4
    # The match's first LF is the earliest LF followed by LF or by CRLF.
    firsts = [i for i in (raw.find(b"\n\n", 0, limit), raw.find(b"\n\r\n", 0, limit)) if i >= 0]
    if not firsts:
        return None
    lf = min(firsts)
    start = lf - 1 if lf > 0 and raw[lf - 1] == 0x0D else lf
    return start, lf + (2 if raw[lf + 1] == 0x0A else 3)


def py_find_delimiters(body, boundary: bytes, origin: int = 0) -> list[tuple[int, int, bool]]:
    """(start, end, is_close) of each boundary line in ``body[origin:]``; start includes the line
    break before it (RFC 2046). Offsets are into ``body``.

    A literal find() instead of a regex anchored on line starts: on a 10 MB
    message the anchored regex is 30x slower.
    """
    marker = b"--" + boundary
    found: list[tuple[int, int, bool]] = []
    pos = body.find(marker, origin)
    while pos >= 0:
        at_line_start = pos == origin or body[pos - 1:pos] == b"\n"
        after = pos + len(marker)
        close = body[after:after + 2] == b"--"
        if close:
            after += 2
        eol = after
        while body[eol:eol + 1] in (b" ", b"\t"):
            eol += 1
        if at_line_start and (eol == len(body) or body[eol:eol + 1] in (b"\r", b"\n")):
            end = eol + (2 if body[eol:eol + 2] == b"\r\n" else 1 if eol < len(body) else 0)
            before = pos - origin
            start = pos - (2 if before >= 2 and body[pos - 2:pos] == b"\r\n" else 1 if before else 0)
            if found:  # the line break before this boundary may close the previous boundary line
                start = max(start, found[-1][1])
            found.append((start, end, close))
            if close:
                break
        pos = body.find(marker, pos + 1)
    return found


try:
    from autosmime.smime._speedups import (
        clean_7bit,
        crlf_only,
        find_delimiters,
        split_header,
        strip_whitespace,
        wrap_lines,
    )
    COMPILED = True
except ImportError:  # no compiler where autosmime was installed: same answers, slower
    crlf_only, split_header, strip_whitespace = py_crlf_only, py_split_header, py_strip_whitespace
    clean_7bit = py_clean_7bit
    find_delimiters, wrap_lines = py_find_delimiters, py_wrap_lines
    COMPILED = False
