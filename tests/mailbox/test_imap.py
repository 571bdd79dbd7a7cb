"""ImapMailbox against the real loopback Dovecot."""

from __future__ import annotations

import dataclasses
import socket
import time
import uuid

import pytest

from autosmime.devstack._procs import free_ports
from autosmime.devstack._tls import make_ca
from autosmime.errors import (
    AccountError,
    AuthenticationFailed,
    FolderError,
    MailboxError,
    ServerUnreachable,
    TLSFailure,
)
from autosmime.mailbox.account import Account
from autosmime.mailbox.imap import ImapMailbox

pytestmark = pytest.mark.mailserver


def message(subject: str, body: bytes = b"hello\r\n") -> bytes:
    return (f"From: a@example.test\r\nTo: b@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@example.test>\r\nX-Test-Id: {subject}\r\n\r\n").encode() + body


@pytest.mark.parametrize("security", ["starttls", "tls", "plain"])
def test_login_each_security_mode(mailstack, mail_user, security):
    email, password = mail_user
    with ImapMailbox.connect(mailstack.account(email, security), password) as box:
        assert "INBOX" in box.list_folders()


def test_wrong_password_is_authentication_failed(mailstack, mail_user):
    email, password = mail_user
    with pytest.raises(AuthenticationFailed) as info:
        ImapMailbox.connect(mailstack.account(email), password + "x")
    assert password not in str(info.value)
    assert "\n" not in str(info.value)


def test_unreachable_port(mailstack, mail_user):
    email, password = mail_user
    (port,) = free_ports(1)
    with pytest.raises(ServerUnreachable, match="refused"):
        ImapMailbox.connect(mailstack.account(email, imap_port=port), password, timeout=5)


def test_wrong_ca_is_tls_failure(mailstack, mail_user, tmp_path):
    from cryptography.hazmat.primitives.serialization import Encoding

    email, password = mail_user
    _, other_ca = make_ca("some other CA")
    pem = tmp_path / "other-ca.pem"
    pem.write_bytes(other_ca.public_bytes(Encoding.PEM))
    for security in ("starttls", "tls"):
        account = dataclasses.replace(mailstack.account(email, security), ca_file=str(pem))
        with pytest.raises(TLSFailure, match="not trusted"):
            ImapMailbox.connect(account, password)


def test_system_roots_do_not_trust_the_test_ca(mailstack, mail_user):
    # ca_file=None must mean "system roots", not "no verification".
    email, password = mail_user
    account = dataclasses.replace(mailstack.account(email, "tls"), ca_file=None)
    with pytest.raises(TLSFailure):
        ImapMailbox.connect(account, password)


def test_plain_to_non_loopback_refused_without_connecting(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    for host in ("192.0.2.1", "mail.example.org", "::2"):
        account = Account("a@example.org", host, 143, host, 25, security="plain")
        with pytest.raises(AccountError, match="loopback"):
            ImapMailbox.connect(account, "secret")


def test_folder_append_search_fetch_delete_round_trip(mailstack, mail_user):
    email, password = mail_user
    folder = "autosmime-keys"
    # CRLF everywhere, a line starting with ".", trailing spaces, 8-bit bytes: all must survive.
    raw = message("round-trip", b"line one \r\n.dot line\r\n\xc3\xa4\xff binary-ish\r\n\r\n")
    other = message("other")
    with ImapMailbox.connect(mailstack.account(email), password) as box:
        assert not box.folder_exists(folder)
        box.ensure_folder(folder)
        box.ensure_folder(folder)                         # idempotent
        assert box.folder_exists(folder) and folder in box.list_folders()
        uid = box.append(folder, raw)
        uid2 = box.append(folder, other, flags=())
        assert isinstance(uid, int) and uid2 == uid + 1
        assert box.search_header(folder, "X-Test-Id", "round-trip") == [uid]
        assert box.search_header(folder, "X-Test-Id", "no-such-value") == []
        fetched = box.fetch(folder, [uid, uid2, uid2 + 100])
        assert fetched == {uid: raw, uid2: other}
        box.delete(folder, [uid])
        assert box.search_header(folder, "X-Test-Id", "round-trip") == []
        assert box.fetch(folder, [uid2]) == {uid2: other}
    # A second connection sees the same state.
    with ImapMailbox.connect(mailstack.account(email), password) as box:
        assert box.search_header(folder, "X-Test-Id", "other") == [uid2]


def test_fetch_does_not_mark_seen(mailstack, mail_user):
    email, password = mail_user
    with ImapMailbox.connect(mailstack.account(email), password) as box:
        uid = box.append("INBOX", message("unseen"), flags=())
        box.fetch("INBOX", [uid])
        flags = box._client.get_flags([uid])[uid]
        assert b"\\Seen" not in flags


def test_missing_folder_is_folder_error(mailstack, mail_user):
    email, password = mail_user
    with ImapMailbox.connect(mailstack.account(email), password) as box:
        with pytest.raises(FolderError):
            box.search_header("does-not-exist", "Subject", "x")
        with pytest.raises(FolderError):
            box.append("does-not-exist", message("x"))
        # The connection stays usable after a folder error.
        assert "INBOX" in box.list_folders()


def test_wait_for_sees_a_later_delivery(mailstack, mail_user):
    import threading

    email, password = mail_user
    raw = message("delayed")
    timer = threading.Timer(0.4, mailstack.deliver, args=(email, raw))
    with ImapMailbox.connect(mailstack.account(email), password) as box:
        assert box.search_header("INBOX", "X-Test-Id", "delayed") == []
        timer.start()
        uids = box.wait_for("INBOX", "X-Test-Id", "delayed", timeout=10)
        assert len(uids) == 1
        assert box.fetch("INBOX", uids)[uids[0]] == raw
        started = time.monotonic()
        assert box.wait_for("INBOX", "X-Test-Id", "never", timeout=0.5) == []
        assert time.monotonic() - started >= 0.5
    timer.join()


def test_use_after_close_is_mailbox_error(mailstack, mail_user):
    email, password = mail_user
    box = ImapMailbox.connect(mailstack.account(email), password)
    box.close()
    box.close()
    with pytest.raises(MailboxError):
        box.list_folders()
