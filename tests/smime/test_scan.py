"""The compiled byte scans (autosmime/smime/_cscan.c) give the pure-Python reference's answers."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autosmime.smime import _scan, mime

pytestmark = pytest.mark.skipif(not _scan.COMPILED and not os.environ.get("CI"),
                                reason="the C extension did not build here (no compiler?)")


def test_ci_builds_the_extension():
    # .ci/run installs a compiler: a CI run that silently fell back to Python would test the wrong code.
    assert _scan.COMPILED


# Mostly line-ending and whitespace bytes, so runs, pairs and edges are common.
_DATA = st.binary(max_size=80) | st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\t", b"A", b"=", b"\x00",
                                                           b"x" * 15, b"y" * 16, b"z" * 17]),
                                         max_size=40).map(b"".join)


@given(data=_DATA, start=st.integers(0, 90), end=st.none() | st.integers(0, 90))
@settings(max_examples=800, deadline=None)
def test_crlf_only_agrees(data, start, end):
    assert _scan.crlf_only(data, start, end) == _scan.py_crlf_only(data, start, end)
    assert _scan.crlf_only(data) == _scan.py_crlf_only(data)


@given(data=_DATA, start=st.integers(0, 90))
@settings(max_examples=800, deadline=None)
def test_strip_whitespace_agrees(data, start):
    assert _scan.strip_whitespace(data, start) == _scan.py_strip_whitespace(data, start)
    assert _scan.strip_whitespace(data) == _scan.py_strip_whitespace(data)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, mime.Crlf])
def test_any_buffer(wrap):
    data = b"QUJD\r\nRE VG\t\r\n" * 300 + b"\r"
    assert _scan.strip_whitespace(wrap(data), 3) == data[3:].translate(None, b" \t\r\n")
    assert _scan.crlf_only(wrap(data), 0, len(data) - 1) is True
    assert _scan.crlf_only(wrap(data)) is False


def test_bad_arguments_are_typed_errors():
    with pytest.raises(TypeError):
        _scan.crlf_only("text")
    with pytest.raises(TypeError):
        _scan.strip_whitespace()
    with pytest.raises(ValueError):
        _scan.crlf_only(b"a", -1)
