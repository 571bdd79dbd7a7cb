"""Byte scans of the message engine: compiled when the C extension built, else pure Python.

    >>> from autosmime.smime._scan import crlf_only, strip_whitespace
    >>> crlf_only(b"a\\r\\nb\\r\\n"), crlf_only(b"a\\nb")
    (True, False)
    >>> strip_whitespace(b"QUJD\\r\\nREVG\\r\\n")
    b'QUJDREVG'

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


def py_strip_whitespace(data, start: int = 0) -> bytes:
    """``data[start:]`` as bytes, without spaces, tabs, CRs and LFs."""
    return bytes(data[start:] if start else data).translate(None, _WHITESPACE)


try:
    from autosmime.smime._speedups import crlf_only, strip_whitespace
    COMPILED = True
except ImportError:  # no compiler where autosmime was installed: same answers, slower
    crlf_only, strip_whitespace = py_crlf_only, py_strip_whitespace
    COMPILED = False
