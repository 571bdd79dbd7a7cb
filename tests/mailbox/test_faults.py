"""Connections cut mid-operation surface as MailboxError, never a raw socket/imaplib exception."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from autosmime.devstack.faultproxy import CuttingProxy
from autosmime.errors import MailboxError
from autosmime.mailbox.imap import ImapMailbox
from autosmime.mailbox.smtp import send

pytestmark = pytest.mark.mailserver

BIG = b"Subject: big\r\nX-Test-Id: big\r\n\r\n" + b"0123456789abcdef" * 4096 + b"\r\n"


@pytest.fixture
def imap_proxy(mailstack):
    with CuttingProxy("127.0.0.1", mailstack.imap_port) as proxy:
        yield proxy


def test_cut_during_append(mailstack, mail_user, imap_proxy):
    email, password = mail_user
    account = dataclasses.replace(mailstack.account(email, "plain"), imap_port=imap_proxy.port)
    with ImapMailbox.connect(account, password) as box:      # limit not yet set: whole session passes
        box.ensure_folder("cut")
    imap_proxy.cut_after(5000)                               # after login, inside the 64 KiB literal
    box = ImapMailbox.connect(account, password)
    with pytest.raises(MailboxError, match="connection lost"):
        box.append("cut", BIG)
    box.close()
    assert imap_proxy.cuts == 1
    imap_proxy.cut_after(None)
    with ImapMailbox.connect(account, password) as box:
        assert box.search_header("cut", "X-Test-Id", "big") == []   # nothing half-written
        uid = box.append("cut", BIG)
        assert box.fetch("cut", [uid]) == {uid: BIG}


@pytest.mark.parametrize("security", ["starttls", "plain"])
def test_cut_at_every_early_offset(mailstack, mail_user, imap_proxy, security):
    # Any cut from the greeting through LOGIN and SELECT/SEARCH: always a MailboxError subclass.
    email, password = mail_user
    account = dataclasses.replace(mailstack.account(email, security), imap_port=imap_proxy.port)
    failed = []
    for offset in [0, 1, 5, 12, 30, 60, 100, 200, 300, 500, 700, 900]:
        imap_proxy.cut_after(offset)
        try:
            with ImapMailbox.connect(account, password, timeout=5) as box:
                box.search_header("INBOX", "Subject", "x")
                box.append("INBOX", b"Subject: x\r\n\r\nx\r\n")
        except MailboxError:
            failed.append(offset)
    # LOGIN alone is longer than 60 bytes, so every cut up to there must have failed.
    assert failed[:6] == [0, 1, 5, 12, 30, 60]


def test_cut_during_fetch_reply(mailstack, mail_user, imap_proxy):
    # The client has sent everything; the proxy dies while the server streams a large reply.
    email, password = mail_user
    account = dataclasses.replace(mailstack.account(email, "plain"), imap_port=imap_proxy.port)
    with ImapMailbox.connect(account, password) as box:
        uid = box.append("INBOX", BIG)
    imap_proxy.cut_after(10_000_000)
    box = ImapMailbox.connect(account, password)
    imap_proxy.stop()                                         # resets every open connection
    with pytest.raises(MailboxError):
        box.fetch("INBOX", [uid])
    box.close()


def test_cut_during_smtp_data(mailstack, mail_user):
    email, password = mail_user
    with CuttingProxy("127.0.0.1", mailstack.smtp_port) as proxy:
        proxy.cut_after(2000)
        account = dataclasses.replace(mailstack.account(email, "plain"), smtp_port=proxy.port)
        with pytest.raises(MailboxError):
            send(account, password, BIG, email, [email])


def test_proxy_cuts_with_reset_after_exact_byte_count():
    # Proxy semantics on its own: an echo server behind it.
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            try:
                while data := conn.recv(4096):
                    received.extend(data)
                    conn.sendall(data)
            except ConnectionResetError:
                pass

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    with CuttingProxy("127.0.0.1", server.getsockname()[1]) as proxy:
        proxy.cut_after(10)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as c:
            c.sendall(b"12345")
            assert c.recv(100) == b"12345"
            c.sendall(b"6789ABCDEF")
            got = b""
            with pytest.raises(ConnectionResetError):
                while True:
                    chunk = c.recv(100)
                    if not chunk:
                        break
                    got += chunk
                raise ConnectionResetError("closed without reset")  # not expected: a FIN instead of RST
        thread.join(timeout=5)
        assert bytes(received) == b"123456789A"
        assert proxy.cuts == 1 and proxy.connections == 1
    server.close()
