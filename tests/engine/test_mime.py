"""MIME canonicalisation and raw-byte splitting."""

import email
import email.policy

import pytest

from autosmime.errors import MalformedMessage
from autosmime.smime import mime


def test_entity_keeps_clean_bytes_and_moves_mail_headers_out(message):
    m = mime.Message.parse(message)
    assert m.entity() == b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob,\r\nthe numbers are attached.\r\n"
    names = [h.split(b":")[0] for h in m.outer_headers()]
    assert names == [b"From", b"To", b"Cc", b"Subject", b"Date", b"Message-ID"]


def test_lf_input_becomes_crlf():
    m = mime.Message.parse(b"From: a@x.test\nSubject: s\n\nline1\nline2\n")
    assert b"\n" not in m.entity().replace(b"\r\n", b"")
    assert m.entity().endswith(b"line1\r\nline2\r\n")


def test_8bit_text_is_reencoded_7bit_and_decodes_back():
    raw = "From: a@x.test\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße aus Köln\n".encode()
    entity = mime.Message.parse(raw).entity()
    assert entity.isascii()
    part = email.message_from_bytes(entity, policy=email.policy.default)
    assert part["content-transfer-encoding"] == "quoted-printable"
    assert part.get_content() == "Grüße aus Köln\r\n" or part.get_content() == "Grüße aus Köln\n"


def test_leading_from_line_is_protected():
    raw = b"From: a@x.test\n\nhello\nFrom the start\n"
    entity = mime.Message.parse(raw).entity()
    assert b"\r\nFrom " not in entity
    assert b"=46rom the start" in entity


def test_long_lines_are_reencoded():
    raw = b"From: a@x.test\n\n" + b"x" * 2000 + b"\n"
    entity = mime.Message.parse(raw).entity()
    assert max(len(line) for line in entity.split(b"\r\n")) <= 998


def test_split_signed_on_raw_bytes_keeps_exact_content():
    content = b"Content-Type: text/plain\r\n\r\nexact  bytes \t\r\nkept\r\n"
    signed = mime.multipart_signed([b"From: a@x.test\r\n"], content, b"\x30\x03\x02\x01\x00", "sha-256")
    parts = mime.split_signed(mime.Message.parse(signed))
    assert parts.content == content
    assert parts.signature == b"\x30\x03\x02\x01\x00"


def test_split_signed_handles_lf_transport():
    content = b"Content-Type: text/plain\r\n\r\nbody\r\n"
    signed = mime.multipart_signed([], content, b"\x30\x00", "sha-256").replace(b"\r\n", b"\n")
    parts = mime.split_signed(mime.Message.parse(signed))
    assert parts.content == content


@pytest.mark.parametrize("body", [b"", b"--nope\r\n", b"no boundaries at all"])
def test_split_signed_rejects_broken_structures(body):
    raw = b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="b"\r\n\r\n' + body
    with pytest.raises(MalformedMessage):
        mime.split_signed(mime.Message.parse(raw))


def test_rejoin_bare_content_gets_a_blank_line():
    out = mime.rejoin([b"From: a@x.test\r\n"], b"This is some sample content.")
    assert out == b"From: a@x.test\r\nMIME-Version: 1.0\r\n\r\nThis is some sample content."


def test_empty_message_is_malformed():
    with pytest.raises(MalformedMessage):
        mime.Message.parse(b"  \r\n")


def test_rejoin_does_not_duplicate_mime_version():
    entity = b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    out = mime.rejoin([b"From: a@x.test\r\n"], entity)
    assert out.count(b"MIME-Version") == 1
