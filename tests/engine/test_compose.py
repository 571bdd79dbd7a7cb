"""New messages: what send signs and encrypts."""

from __future__ import annotations

import email
from email import policy

import pytest

from autosmime.errors import UsageError
from autosmime.smime import mime, read, sign
from autosmime.smime.compose import compose


def test_text_and_attachment_survive_sign_and_read(tmp_path, pki):
    key, cert, ca = pki.users["alice"].key, pki.users["alice"].cert, pki.ca_cert
    (tmp_path / "report.pdf").write_bytes(bytes(range(256)) * 10)
    raw = compose("alice@example.test", ["bob@example.test"], "Grüße", "Hallo Bob,\nschöne Grüße.\n",
                  cc=["carol@example.test"], attachments=[tmp_path / "report.pdf"])
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"") and raw.isascii()
    opened = read(sign(raw, key, cert), trust_roots=[ca])
    parsed = email.message_from_bytes(opened.message, policy=policy.default)
    assert parsed["Subject"] == "Grüße" and parsed["Cc"] == "carol@example.test"
    body, attachment = [p for p in parsed.iter_parts()]
    assert body.get_content().replace("\r\n", "\n") == "Hallo Bob,\nschöne Grüße.\n"
    assert attachment.get_filename() == "report.pdf" and attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == bytes(range(256)) * 10
    assert mime.Message.parse(raw).entity()  # clean for signing as it is


@pytest.mark.parametrize("bad", ["x\r\nBcc: eve@evil.test", "x\nX: y"])
def test_header_injection_is_refused(bad):
    with pytest.raises(UsageError):
        compose("alice@example.test", ["bob@example.test"], bad, "body")
    with pytest.raises(UsageError):
        compose("alice@example.test", [bad], "s", "body")


def test_no_recipient_and_missing_attachment_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="recipient"):
        compose("alice@example.test", [], "s", "b")
    with pytest.raises(UsageError, match="cannot read attachment"):
        compose("alice@example.test", ["b@x.test"], "s", "b", attachments=[tmp_path / "missing"])
