"""Round 3's faster MIME scans give exactly the verdicts of the straightforward code."""

from __future__ import annotations

import base64
import binascii
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autosmime.errors import MalformedMessage
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.pki.validate import cert_addresses
from autosmime.smime import _scan, decrypt, encrypt, mime

_B64ISH = st.text(alphabet="ABCDab01+/=\r\n \t-*\x0b\xe9", max_size=80).map(lambda t: t.encode("latin-1"))


def _strict(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(text.translate(None, b" \t\r\n"), validate=True)
    except (binascii.Error, ValueError):
        return None


@given(st.one_of(_B64ISH, st.binary(max_size=300).map(base64.encodebytes),
                 st.binary(max_size=300).map(lambda b: base64.encodebytes(b).replace(b"\n", b"\r\n"))),
       st.binary(max_size=4))
@settings(max_examples=600)
def test_one_pass_base64_has_the_verdicts_of_strict_b64decode(text, prefix):
    try:
        got = mime._b64_decode(prefix + text, len(prefix))
    except MalformedMessage:
        got = None
    assert got == _strict(text)


@pytest.mark.parametrize("text", [b"QUJD\r\n", b"QUI=\r\n", b"QQ==\r\n", b"QQ=\r\n=\r\n", b"QUJD=", b"QQ===",
                                  b"=QUJD", b"QU=JD", b"QUJD\r\nQQ==\r\nQUJD", b"QUJ*", b"QU\x00JD", b"\r\n \t",
                                  b"", b"QUJDQQ==QQ=="])
def test_base64_edge_cases(text):
    try:
        got = mime._b64_decode(text, 0)
    except MalformedMessage:
        got = None
    assert got == _strict(text)


def test_large_base64_takes_the_chunked_path_with_the_same_result():
    raw = bytes(range(256)) * 1500  # over _B64_IN_STEP once encoded
    text = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    assert len(text) > mime._B64_IN_STEP
    assert mime._b64_decode(b"xx" + text, 2) == raw
    with pytest.raises(MalformedMessage):
        mime._b64_decode(text[:1000] + b"*" + text[1000:], 0)


def _crlf_by_counts(data: bytes) -> bool:
    return data.count(b"\r\n") == data.count(b"\n") == data.count(b"\r")


@given(st.text(alphabet="ab\r\n", max_size=60).map(str.encode), st.integers(0, 70), st.integers(0, 70))
@settings(max_examples=600)
def test_crlf_only_agrees_with_counting(data, start, end):
    assert mime.crlf_only(data, start, end) == _crlf_by_counts(data[start:end])
    assert mime.crlf_only(data) == _crlf_by_counts(data)


@pytest.mark.parametrize("tail", [b"\r\nxyz\r\n", b"\nxyz\r\n", b"\r\rxyz\r\n", b"\r\n\r", b"\r"])
def test_crlf_only_on_large_data(tail):
    data = b"a" * (64 * 1024 - 1) + tail
    assert mime.crlf_only(data) == _crlf_by_counts(data)
    assert mime.to_crlf(data) == data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


@given(st.lists(st.integers(0, 1100), max_size=30), st.booleans(), st.integers(0, 5))
@settings(max_examples=400)
def test_lines_fit_agrees_with_splitting(lengths, closed, start):
    data = b"\r\n".join(b"x" * n for n in lengths) + (b"\r\n" if closed else b"")
    start = min(start, len(data))
    expected = max(map(len, data[start:].split(b"\r\n"))) <= 998
    assert mime.lines_fit(data, start) == expected


@given(st.text(alphabet="a:\r\n", max_size=40).map(str.encode))
@settings(max_examples=600)
def test_blank_line_finds_what_the_regex_finds(raw):
    m = re.search(rb"\r?\n\r?\n", raw)  # the header block's end, as the regex it replaced defines it
    assert _scan._blank_line(raw) == (None if m is None else (m.start(), m.end()))


@pytest.mark.parametrize("size", [0, 1, 56, 57, 58, 57 * 76, 57 * 1024 - 1, 57 * 1024, 57 * 1024 * 2 + 5])
def test_base64_lines_across_blocks(size):
    data = bytes(i * 7 % 256 for i in range(size))
    assert mime.b64_lines(data) == base64.encodebytes(data).replace(b"\n", b"\r\n")
    out = mime.pkcs7_mime([b"From: a@example.test\r\n"], [data[:size // 3], data[size // 3:]], "enveloped-data", size)
    assert out.endswith(mime.b64_lines(data))


def test_entity_params_follow_changed_fields_and_hand_out_copies():
    msg = mime.Message.parse(b"From: a@example.test\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nhi\r\n")
    ct = msg.content_type
    ct.params["charset"] = "changed"
    assert msg.content_type.params == {"charset": "us-ascii"}
    msg.fields = [b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n",
                  b"Content-Transfer-Encoding: base64\r\n"]
    assert msg.content_type.value == "application/pkcs7-mime"
    assert msg.transfer_encoding == "base64"
    assert isinstance(msg.fields, tuple)  # changed only by assignment, which the caches follow
    msg.fields = (b"Content-Type: text/plain\r\n", *msg.fields)
    assert mime.kind(msg) == "plain" and msg.outer_headers() == []


def test_cert_addresses_are_a_fresh_list_each_time():
    ca_key, ca = make_ca("Perf3 CA", new_key("ec"))
    cert = make_mailbox_cert("Alice@Example.test", new_key("ec").public_key(), ca_key, ca)
    first = cert_addresses(cert)
    first.append("mallory@example.test")
    assert cert_addresses(cert) == ["alice@example.test"]


def test_garbage_base64_in_an_encrypted_message_is_a_typed_error():
    ca_key, ca = make_ca("Perf3 CA", new_key("rsa"))
    key = new_key("rsa")
    cert = make_mailbox_cert("bob@example.test", key.public_key(), ca_key, ca)
    out = encrypt(b"From: a@example.test\r\nSubject: x\r\n\r\nhello\r\n", [cert])
    head, _, body = out.partition(b"\r\n\r\n")
    assert decrypt(out, [(key, cert)]).message.endswith(b"hello\r\n")
    for bad in (body[:40] + b"!" + body[41:], body[:40] + b"=" + body[41:], body + b"QQ==", body[:-3] + b"\xe9\r\n"):
        with pytest.raises(MalformedMessage):
            decrypt(head + b"\r\n\r\n" + bad, [(key, cert)])


_FIELD_NAMES = st.sampled_from(["MIME-Version", "mime-version", "MIME-Version ", "Mime-Versions", "X-MIME-Version",
                                "Content-Type", " MIME-Version", "\tmime-version", "MIME-VERSION\t \t",
                                "MIME-Version-", "mime-version \r\n "])


@given(st.lists(st.tuples(_FIELD_NAMES, st.text(alphabet="1.0 ab", max_size=5)), max_size=5))
@settings(max_examples=600)
def test_mime_version_search_matches_the_parsed_field_names(fields):
    head = b"".join(f"{name}:{value}\r\n".encode() for name, value in fields) + b"\r\n"
    try:
        parsed = b"mime-version" in mime._split_header(head)[1]
    except MalformedMessage:
        return  # a continuation line first: not a header block rejoin ever sees
    assert mime._has_mime_version(head) == parsed
    assert mime._has_mime_version(memoryview(head)) == parsed


def test_a_message_made_of_our_own_signed_messages_signs_and_verifies():
    """The boundary is drawn fresh, not searched for: content full of autosmime boundaries is no problem."""
    from autosmime.smime import sign, verify

    ca_key, ca = make_ca("Boundary CA")
    key = new_key("ec")
    cert = make_mailbox_cert("a@example.test", key.public_key(), ca_key, ca)
    inner = sign(b"From: a@example.test\r\nSubject: inner\r\n\r\nhello\r\n", key, cert)
    outer = sign(b"From: a@example.test\r\nSubject: outer\r\nContent-Type: message/rfc822\r\n\r\n" + inner, key, cert)
    inner_boundary = mime.Message.parse(inner).content_param("boundary")
    outer_boundary = mime.Message.parse(outer).content_param("boundary")
    assert inner_boundary != outer_boundary and inner_boundary.startswith(mime._BOUNDARY_PREFIX)
    assert verify(outer, [ca]).message.endswith(inner)
    assert len({mime._boundary() for _ in range(1000)}) == 1000
