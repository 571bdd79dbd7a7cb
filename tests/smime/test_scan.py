"""The compiled helpers (autosmime/smime/_speedups.c) give their pure-Python twins' answers and errors."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autosmime.smime import _scan
from autosmime.smime._cms import der

pytestmark = pytest.mark.skipif(not _scan.COMPILED and not os.environ.get("CI"),
                                reason="the C extension did not build here (no compiler?)")


def test_ci_builds_the_extension():
    # .ci/run installs a compiler: a CI run that silently fell back to Python would test the wrong code.
    assert _scan.COMPILED
    assert der.read_tlv is not der.py_read_tlv and der.tlv is not der.py_tlv


# Mostly line-ending and whitespace bytes, so runs, pairs and edges are common.
_DATA = st.binary(max_size=80) | st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\t", b"A", b"=", b"\x00",
                                                           b"x" * 15, b"y" * 16, b"z" * 17]),
                                         max_size=40).map(b"".join)


@given(data=_DATA, start=st.integers(0, 90), end=st.none() | st.integers(0, 90))
@settings(max_examples=800, deadline=None)
def test_crlf_only_agrees(data, start, end):
    assert _scan.crlf_only(data, start, end) == _scan.py_crlf_only(data, start, end)
    assert _scan.crlf_only(data) == _scan.py_crlf_only(data)


# Lines near the 998-octet limit, "From " at and off line starts, 8-bit and NUL bytes.
_ENTITY_PIECES = [b"\r\n", b"\r", b"\n", b"From ", b"Fro", b"m ", b"\x00", b"\x80", b"\xff", b"A", b"x" * 16,
                  b"y" * 17, b"z" * 981, b"w" * 982, b"v" * 997, b"u" * 998, b"t" * 999]
_ENTITY = st.lists(st.sampled_from(_ENTITY_PIECES), max_size=12).map(b"".join)


@given(data=_ENTITY, start=st.integers(0, 1200))
@settings(max_examples=1500, deadline=None)
def test_clean_7bit_agrees(data, start):
    assert _scan.clean_7bit(data, start) == _scan.py_clean_7bit(data, start)
    assert _scan.clean_7bit(data) == _scan.py_clean_7bit(data)


@pytest.mark.parametrize("line, clean", [(998, True), (999, False)])
def test_clean_7bit_line_limit(line, clean):
    for data in (b"a" * line, b"a" * line + b"\r\n", b"ok\r\n" + b"a" * line + b"\r\nok"):
        assert _scan.clean_7bit(data) is _scan.py_clean_7bit(data) is clean


@given(data=_DATA, start=st.integers(0, 90))
@settings(max_examples=800, deadline=None)
def test_strip_whitespace_agrees(data, start):
    assert _scan.strip_whitespace(data, start) == _scan.py_strip_whitespace(data, start)
    assert _scan.strip_whitespace(data) == _scan.py_strip_whitespace(data)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
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
    assert _raised(_scan.clean_7bit, b"a", -1) is _raised(_scan.py_clean_7bit, b"a", -1) is ValueError
    with pytest.raises(TypeError):
        _scan.clean_7bit("text")


def _outcome(fn, *args):
    try:
        return fn(*args)
    except ValueError as e:
        return ("ValueError", str(e))


# TLV headers: short and long lengths, high tags, indefinite lengths, truncations.
_TLV_BYTES = st.lists(st.sampled_from([b"\x30", b"\x04", b"\x1f", b"\xa0", b"\x80", b"\x81", b"\x82", b"\x88",
                                       b"\x89", b"\x00", b"\x01", b"\x05", b"\x7f", b"\xff", b"abc"]),
                      max_size=14).map(b"".join) | st.binary(max_size=24)


@given(data=_TLV_BYTES, pos=st.integers(-2, 26), limit=st.integers(-2, 26), tag=st.sampled_from([0x04, 0x30, 0xA0]))
@settings(max_examples=1500, deadline=None)
def test_read_tlv_and_expect_agree(data, pos, limit, tag):
    assert _outcome(der.read_tlv, data, pos, limit) == _outcome(der.py_read_tlv, data, pos, limit)
    assert _outcome(der.expect, data, pos, limit, tag) == _outcome(der.py_expect, data, pos, limit, tag)


def test_read_tlv_long_lengths():
    data = b"\x04\x82\x01\x00" + bytes(256)
    for wrap in (bytes, memoryview, bytearray):
        assert der.read_tlv(wrap(data), 0, len(data)) == der.py_read_tlv(data, 0, len(data)) == (4, 4, 260)
    huge = b"\x04\x88" + b"\xff" * 8
    assert _outcome(der.read_tlv, huge, 0, 10) == _outcome(der.py_read_tlv, huge, 0, 10) == (
        "ValueError", "value overruns its container")


_HEADER_PIECES = st.sampled_from([b"From: a@b", b"Subject:  x ", b"  folded", b"\tfolded", b"X-Y:", b"no colon",
                                  b" Name : v", b"CONTENT-Type: text/plain", b"\r\n", b"\n", b"\r", b"\r\n\r\n",
                                  b"\n\n", b"\n\r\n", b"body", b":", b"\x0b"])


@given(raw=st.lists(_HEADER_PIECES, max_size=16).map(b"".join) | st.binary(max_size=40))
@settings(max_examples=1500, deadline=None)
def test_split_header_agrees(raw):
    assert _outcome(_scan.split_header, raw) == _outcome(_scan.py_split_header, raw)


def _raised(fn, *args):
    try:
        return fn(*args)
    except (ValueError, TypeError) as e:
        return type(e)


@given(tag=st.integers(-2, 300), n=st.integers(-2, 2**63 - 1) | st.integers(0, 70000),
       parts=st.lists(st.binary(max_size=300), max_size=12))
@settings(max_examples=1000, deadline=None)
def test_der_writers_agree(tag, n, parts):
    assert _raised(der.length, n) == _raised(der.py_length, n)
    assert _raised(der.header, tag, n) == _raised(der.py_header, tag, n)
    assert _raised(der.tlv, tag, *parts) == _raised(der.py_tlv, tag, *parts)
    views = [memoryview(p) for p in parts]
    assert _raised(der.tlv, tag, *views) == _raised(der.py_tlv, tag, *parts)


def test_der_writer_refuses_text():
    assert _raised(der.tlv, 4, "text") is _raised(der.py_tlv, 4, "text") is TypeError


def test_the_portable_build_agrees_too(tmp_path):
    """The scans without SSE2 (as on ARM) are other code: build them that way and compare."""
    import importlib.util
    import random
    import shutil
    import subprocess
    import sysconfig
    from pathlib import Path

    if shutil.which("gcc") is None and not os.environ.get("CI"):
        pytest.skip("no gcc")
    source = Path(_scan.__file__).with_name("_speedups.c")
    built = tmp_path / ("_speedups" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-DAUTOSMIME_NO_SIMD",
                    f"-I{sysconfig.get_paths()['include']}", str(source), "-o", str(built)], check=True)
    spec = importlib.util.spec_from_file_location("autosmime.smime._speedups", built)
    portable = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(portable)
    rnd = random.Random(2026)
    pieces = [b"\r", b"\n", b"\r\n", b" ", b"\t", b"A", b"x" * 17]
    for _ in range(20000):
        data = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 30)))
        start, end = rnd.randint(0, len(data) + 2), rnd.choice([None, rnd.randint(0, len(data) + 2)])
        assert portable.crlf_only(data, start, end) == _scan.py_crlf_only(data, start, end), (data, start, end)
        assert portable.strip_whitespace(data, start) == _scan.py_strip_whitespace(data, start)
    for _ in range(20000):
        data = b"".join(rnd.choice(_ENTITY_PIECES) for _ in range(rnd.randint(0, 12)))
        start = rnd.choice([0, rnd.randint(0, len(data) + 2)])
        assert portable.clean_7bit(data, start) == _scan.py_clean_7bit(data, start), (data, start)


_MULTIPART = st.lists(st.sampled_from([b"--b", b"--b--", b"--bb", b"-", b"b", b"\r\n", b"\n", b"\r", b" ", b"\t",
                                       b"x", b"--"]), max_size=24).map(b"".join)


@given(body=_MULTIPART, boundary=st.sampled_from([b"b", b"bb", b"", b"-"]), origin=st.integers(0, 40))
@settings(max_examples=2000, deadline=None)
def test_find_delimiters_agrees(body, boundary, origin):
    assert _scan.find_delimiters(body, boundary, origin) == _scan.py_find_delimiters(body, boundary, origin)


@given(data=st.binary(max_size=400), width=st.integers(-1, 90))
@settings(max_examples=800, deadline=None)
def test_wrap_lines_agrees(data, width):
    assert _raised(_scan.wrap_lines, data, width) == _raised(_scan.py_wrap_lines, data, width)
    assert _raised(_scan.wrap_lines, memoryview(data), width) == _raised(_scan.py_wrap_lines, data, width)
