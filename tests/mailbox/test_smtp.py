"""SMTP send through the loopback Postfix (or relay) into a real INBOX."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from autosmime.devstack._procs import free_ports
from autosmime.errors import AccountError, AuthenticationFailed, ServerUnreachable, TLSFailure
from autosmime.mailbox.account import Account
from autosmime.mailbox.imap import ImapMailbox
from autosmime.mailbox.smtp import send

pytestmark = pytest.mark.mailserver


def raw_message(sender: str, rcpt: str, marker: str) -> bytes:
    # Bytes the email package would never produce unchanged: a leading "From ", a lone ".",
    # trailing whitespace, a long unfolded header, 8-bit text.
    headers = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: raw {marker}\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
               f"Message-ID: <{marker}@example.test>\r\nX-Marker: {marker}\r\nX-Long: {'x' * 200}\r\n"
               "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n\r\n")
    body = b"From the start\r\n.\r\n..two dots\r\ntrailing space   \r\nGr\xc3\xbc\xc3\x9fe\r\n"
    return headers.encode() + body


@pytest.mark.parametrize("security", ["starttls", "tls", "plain"])
def test_send_arrives_byte_identical(mailstack, security):
    sender, sender_pw = mailstack.fresh_user()
    rcpt, rcpt_pw = mailstack.fresh_user()
    marker = uuid.uuid4().hex
    raw = raw_message(sender, rcpt, marker)
    send(mailstack.account(sender, security), sender_pw, raw, sender, [rcpt])
    with ImapMailbox.connect(mailstack.account(rcpt), rcpt_pw) as box:
        uids = box.wait_for("INBOX", "X-Marker", marker, timeout=15)
        assert len(uids) == 1
        got = box.fetch("INBOX", uids)[uids[0]]
    head, _, body = got.partition(b"\r\n\r\n")
    assert body == raw.partition(b"\r\n\r\n")[2]
    # The MTA only prepends trace headers (Received, Return-Path, ...): the original is an exact suffix.
    assert got.endswith(raw)


def test_send_to_several_recipients(mailstack):
    sender, sender_pw = mailstack.fresh_user()
    rcpts = [mailstack.fresh_user() for _ in range(2)]
    marker = uuid.uuid4().hex
    raw = raw_message(sender, ", ".join(r for r, _ in rcpts), marker)
    send(mailstack.account(sender), sender_pw, raw, sender, [r for r, _ in rcpts])
    for rcpt, pw in rcpts:
        with ImapMailbox.connect(mailstack.account(rcpt), pw) as box:
            uids = box.wait_for("INBOX", "X-Marker", marker, timeout=15)
            assert box.fetch("INBOX", uids)[uids[0]].endswith(raw)


def test_send_wrong_password(mailstack, mail_user):
    email, password = mail_user
    with pytest.raises(AuthenticationFailed) as info:
        send(mailstack.account(email), password + "x", b"Subject: x\r\n\r\nx\r\n", email, [email])
    assert password not in str(info.value)


def test_send_unreachable(mailstack, mail_user):
    email, password = mail_user
    (port,) = free_ports(1)
    account = dataclasses.replace(mailstack.account(email), smtp_port=port)
    with pytest.raises(ServerUnreachable):
        send(account, password, b"Subject: x\r\n\r\nx\r\n", email, [email], timeout=5)


def test_send_verifies_certificate(mailstack, mail_user):
    email, password = mail_user
    for security in ("starttls", "tls"):
        account = dataclasses.replace(mailstack.account(email, security), ca_file=None)
        with pytest.raises(TLSFailure):
            send(account, password, b"Subject: x\r\n\r\nx\r\n", email, [email])


def test_send_plain_to_non_loopback_refused(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    account = Account("a@example.org", "192.0.2.1", 143, "192.0.2.1", 25, security="plain")
    with pytest.raises(AccountError, match="loopback"):
        send(account, "pw", b"Subject: x\r\n\r\nx\r\n", "a@example.org", ["b@example.org"])
