"""The copy-free MIME paths give exactly what the straightforward code gives."""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autosmime.errors import MalformedMessage
from autosmime.smime import mime

_B64ISH = st.text(alphabet="ABCDab01+/=\r\n \t-*", max_size=80).map(str.encode)


@given(st.one_of(_B64ISH, st.binary(max_size=200).map(base64.encodebytes)), st.integers(1, 12))
@settings(max_examples=400)
def test_chunked_base64_decoding_has_the_verdicts_of_strict_b64decode(text, step):
    try:
        expected = base64.b64decode(text.translate(None, b" \t\r\n"), validate=True)
    except (binascii.Error, ValueError):
        expected = None
    try:
        got = b"".join(mime._b64_pieces(text, 0, step))
    except MalformedMessage:
        got = None
    assert got == expected


@given(st.binary(max_size=3000))
@settings(max_examples=100)
def test_b64_lines_are_76_column_crlf_base64(data):
    out = mime.b64_lines(data)
    assert out == base64.encodebytes(data).replace(b"\n", b"\r\n")
    assert len(out) == mime._b64_size(len(data))


@pytest.mark.parametrize("pieces", [[b"Content-Type: text/plain\r\n\r\nhi\r\n"],
                                    [b"Content-Type: text/plain\r\n\r\nh", b"i\r\n"],
                                    [b"Content-Type: text/plain\r", b"\n\r\nhi\n"],
                                    [b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nhi"],
                                    [b"just text", b" and more\n"], [b"\r\nbody"],
                                    [b"Content-Ty", b"pe: text/plain\r\nFrom x"]])
def test_rejoin_of_pieces_equals_rejoin_of_the_joined_entity(pieces):
    outer = [b"From: a@example.test\r\n"]
    try:
        expected = mime.rejoin(outer, b"".join(pieces))
    except MalformedMessage:
        with pytest.raises(MalformedMessage):
            mime.rejoin(outer, pieces)
        return
    assert mime.rejoin(outer, pieces) == expected
