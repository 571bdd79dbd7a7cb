"""``autosmime send`` end to end on the embedded stack (Dovecot + Postfix + the CA + the directory).

A recipient with a published certificate gets encrypted, signed mail and the sender's Sent copy is readable
by the sender; a recipient without a certificate gets signed mail (with --require-encryption: nothing sent,
one line naming them); a recipient whose certificate was revoked (`autosmime revoke`) is not encrypted to;
SMTP down: one line, the message kept in the outbox and sent by the next `send`; APPEND down after SMTP
worked: a warning, the Sent copy kept and stored by the next `send`; Bcc never in a header.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from autosmime.mailbox.account import ACCOUNT_FILE, load_account
from tests.autopilot.conftest import Stack, User, run_cli, set_up_user


def _box(home: Path):  # type: ignore[no-untyped-def]
    from autosmime.mailbox.credentials import get_password
    from autosmime.mailbox.imap import ImapMailbox

    account = load_account(home)
    return ImapMailbox.connect(account, get_password(account, home))


def _box_for(stack: Stack, address: str):  # type: ignore[no-untyped-def]
    """The mailbox of a provisioned address that has no autosmime home."""
    from autosmime.mailbox.account import Account
    from autosmime.mailbox.imap import ImapMailbox

    host, port = stack.env["IMAP"].rsplit(":", 1)
    smtp_host, smtp_port = stack.env["SMTP"].rsplit(":", 1)
    account = Account(address, host, int(port), smtp_host, int(smtp_port), security=stack.env["SECURITY"],
                      ca_file=stack.env["MAIL_CA_FILE"])
    return ImapMailbox.connect(account, stack.password(address))


def _send(stack: Stack, user: User, subject: str, *args: str, body: str = "Hello there\n"):  # type: ignore[no-untyped-def]
    return run_cli(*user.args("send", "--subject", subject, *args), input=body, env=stack.client_env())


def _one_line(stderr: str) -> str:
    assert stderr.startswith("autosmime: ") and len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    return stderr


def _subject() -> str:
    return f"test {secrets.token_hex(4)}"


def _arrived(home_or_box, folder: str, subject: str, timeout: float = 30) -> dict[int, bytes]:  # type: ignore[no-untyped-def]
    box = _box(home_or_box) if isinstance(home_or_box, Path) else home_or_box
    with box:
        uids = box.wait_for(folder, "Subject", subject, timeout=timeout)
        return box.fetch(folder, uids)


def _count(box, folder: str, subject: str) -> int:  # type: ignore[no-untyped-def]
    with box:
        if not box.folder_exists(folder):
            return 0
        return len(box.search_header(folder, "Subject", subject))


def _outbox(home: Path) -> list[Path]:
    return sorted((home / "outbox").glob("*.json")) if (home / "outbox").is_dir() else []


def test_encrypted_to_a_published_recipient_and_the_sent_copy_reads(stack: Stack,
                                                                   correspondents: tuple[User, User]) -> None:
    alice, bob = correspondents
    subject = _subject()
    r = _send(stack, alice, subject, "--to", bob.address, "--json", body="Hello Bob,\nencrypted.\n")
    assert r.returncode == 0, r.stderr
    assert f"sent to {bob.address} (encrypted and signed); copy in Sent" in r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["encrypted"] is True and outcome["signed"] is True and outcome["own_copy"] is True
    [rcpt] = outcome["recipients"]
    assert rcpt["address"] == bob.address and rcpt["sha256"] and rcpt["source"] in ("directory", "contacts")
    assert outcome["sent_folder"] == "Sent" and outcome["queued"] is None and outcome["warnings"] == []
    assert _outbox(alice.home) == []

    # What bob received is an S/MIME envelope: the body is nowhere in clear.
    [(uid, raw)] = _arrived(bob.home, "INBOX", subject).items()
    assert b"application/pkcs7-mime" in raw and b"encrypted." not in raw
    # Alice's Sent copy is the same envelope, which she can read (encrypted to her too).
    [(sent_uid, sent)] = _arrived(alice.home, "Sent", subject).items()
    assert sent_uid == outcome["sent_uid"] and b"application/pkcs7-mime" in sent
    r = run_cli(*alice.args("read", str(sent_uid), "--folder", "Sent", "--json"), env=stack.client_env())
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["uid"] == sent_uid and doc["folder"] == "Sent" and doc["verdict"] == "good"
    assert [layer["kind"] for layer in doc["layers"]] == ["enveloped", "clear-signed", "plain"]
    assert "Hello Bob,\r\nencrypted." in doc["content"]


def test_bcc_is_never_in_a_header(stack: Stack, correspondents: tuple[User, User]) -> None:
    alice, bob = correspondents
    subject = _subject()
    hidden = stack.take_address()
    r = _send(stack, alice, subject, "--to", bob.address, "--bcc", hidden)
    assert r.returncode == 0, r.stderr
    assert "signed, not encrypted" in r.stderr     # the Bcc recipient has no certificate
    [(_, raw)] = _arrived(_box_for(stack, hidden), "INBOX", subject).items()
    [(_, bobs)] = _arrived(bob.home, "INBOX", subject).items()
    assert hidden.encode() not in bobs                # the server's Delivered-To names them in their own copy only
    for message in (raw, bobs):
        assert b"\nBcc:" not in message and b"\nbcc:" not in message.lower()


def test_a_recipient_without_a_certificate_gets_signed_mail(stack: Stack, correspondents: tuple[User, User]) -> None:
    alice, _bob = correspondents
    nobody = stack.take_address()     # provisioned, never set up: no certificate anywhere
    subject = _subject()
    r = _send(stack, alice, subject, "--to", nobody, "--json", body="Signed only.\n")
    assert r.returncode == 0, r.stderr
    assert f"warning: not encrypted: no usable certificate for {nobody}" in r.stderr
    # The reason is said once, and it is the lookup's own (not the headline repeated in brackets).
    assert r.stderr.count("no usable certificate") == 1 and "nothing published" in r.stderr, r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["encrypted"] is False and outcome["recipients"][0]["sha256"] is None
    [(_, raw)] = _arrived(_box_for(stack, nobody), "INBOX", subject).items()
    assert b"multipart/signed" in raw and b"Signed only." in raw

    # It verifies (with the CA as trust): the recipient learns alice's certificate from it.
    r = run_cli("verify", "--trust", stack.env["CA_TRUST"], input=raw.decode(), env=stack.client_env())
    assert r.returncode == 0, r.stderr
    assert f"good signature from {alice.address}" in r.stderr and "Signed only." in r.stdout


def test_an_ldap_server_down_leaves_the_recipient_unencrypted_and_the_mail_goes_signed(
        stack: Stack, correspondents: tuple[User, User]) -> None:
    import socket

    alice, _bob = correspondents
    nobody = stack.take_address()
    with socket.socket() as s:          # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subject = _subject()
    r = run_cli(*alice.args("send", "--subject", subject, "--to", nobody, "--json"), input="Signed only.\n",
                env={**stack.client_env(), "AUTOSMIME_LDAP": f"ldap://127.0.0.1:{port}"})
    assert r.returncode == 0, r.stderr
    assert f"not encrypted: no usable certificate for {nobody}" in r.stderr and "could not be reached" in r.stderr, \
        r.stderr
    assert "Traceback" not in r.stderr
    assert json.loads(r.stdout)["encrypted"] is False
    [(_, raw)] = _arrived(_box_for(stack, nobody), "INBOX", subject).items()
    assert b"multipart/signed" in raw and b"Signed only." in raw


def test_require_encryption_sends_nothing(stack: Stack, correspondents: tuple[User, User]) -> None:
    alice, bob = correspondents
    nobody = stack.take_address()
    subject = _subject()
    r = _send(stack, alice, subject, "--to", bob.address, "--cc", nobody, "--require-encryption")
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert "no usable certificate for" in line and nobody in line and bob.address not in line
    assert _count(_box_for(stack, nobody), "INBOX", subject) == 0
    assert _count(_box(bob.home), "INBOX", subject) == 0
    assert _count(_box(alice.home), "Sent", subject) == 0
    assert _outbox(alice.home) == []


def test_a_revoked_certificate_is_not_used(stack: Stack, correspondents: tuple[User, User],
                                           tmp_path: Path) -> None:
    alice, _bob = correspondents
    carol = set_up_user(stack, tmp_path)
    subject = _subject()
    # Before the revocation, carol's published certificate is used.
    r = _send(stack, alice, subject, "--to", carol.address)
    assert r.returncode == 0 and "encrypted and signed" in r.stderr, r.stderr
    r = run_cli(*carol.args("revoke", "--reason", "keyCompromise"), env=stack.client_env())
    assert r.returncode == 0, r.stderr
    r = _send(stack, alice, subject + " again", "--to", carol.address, "--json")
    assert r.returncode == 0, r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["encrypted"] is False
    assert "revoked" in outcome["recipients"][0]["reason"]
    r = _send(stack, alice, subject + " third", "--to", carol.address, "--require-encryption")
    assert r.returncode == 1 and carol.address in _one_line(r.stderr)
    # carol gets a new certificate (setup again: enrol, back up, publish): alice's next mail is encrypted to it,
    # although alice's cached directory answer (within its TTL) names only the revoked one
    r = run_cli(*carol.args("setup", carol.address), env=stack.client_env())
    assert r.returncode == 0 and "certificate (new)" in r.stderr, r.stderr
    r = _send(stack, alice, subject + " fourth", "--to", carol.address, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["encrypted"] is True, r.stdout


@pytest.fixture
def broken_account(correspondents: tuple[User, User]) -> Iterator[tuple[User, dict]]:
    """Alice's account file, to point a server at a closed port; put back afterwards."""
    alice, _ = correspondents
    path = alice.home / ACCOUNT_FILE
    before = path.read_bytes()
    try:
        yield alice, json.loads(before)
    finally:
        path.write_bytes(before)


def _closed_port() -> int:
    from autosmime.devstack._procs import free_ports

    return free_ports(1)[0]


def test_smtp_down_keeps_the_message_and_the_next_send_delivers_it(
        stack: Stack, correspondents: tuple[User, User], broken_account: tuple[User, dict]) -> None:
    alice, data = broken_account
    _, bob = correspondents
    good = (alice.home / ACCOUNT_FILE).read_bytes()
    (alice.home / ACCOUNT_FILE).write_text(json.dumps({**data, "smtp_port": _closed_port()}))
    first = _subject()
    r = _send(stack, alice, first, "--to", bob.address, body="queued while down\n")
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert line.startswith("autosmime: error: not sent: SMTP server") and "connection refused" in line
    assert "kept in the outbox" in line
    [queued] = _outbox(alice.home)
    assert json.loads(queued.read_text())["stage"] == "smtp"
    assert (queued.stat().st_mode & 0o777) == 0o600 and (queued.with_suffix(".eml").stat().st_mode & 0o777) == 0o600

    (alice.home / ACCOUNT_FILE).write_bytes(good)
    second = _subject()
    r = _send(stack, alice, second, "--to", bob.address)
    assert r.returncode == 0, r.stderr
    assert f"({first!r}) sent" in r.stderr
    assert _outbox(alice.home) == []
    for subject in (first, second):
        assert len(_arrived(bob.home, "INBOX", subject)) == 1
        assert len(_arrived(alice.home, "Sent", subject)) == 1
    [(uid, _)] = _arrived(bob.home, "INBOX", first).items()
    r = run_cli(*bob.args("read", str(uid)), env=stack.client_env())
    assert r.returncode == 0 and "queued while down" in r.stdout, r.stderr


def test_sent_but_append_down_keeps_the_sent_copy(stack: Stack, correspondents: tuple[User, User],
                                                  broken_account: tuple[User, dict]) -> None:
    alice, data = broken_account
    _, bob = correspondents
    good = (alice.home / ACCOUNT_FILE).read_bytes()
    (alice.home / ACCOUNT_FILE).write_text(json.dumps({**data, "imap_port": _closed_port()}))
    first = _subject()
    r = _send(stack, alice, first, "--to", bob.address, "--json")
    assert r.returncode == 0, r.stderr
    assert "warning: sent, but the Sent copy could not be stored" in r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["queued"] and outcome["sent_folder"] is None
    [queued] = _outbox(alice.home)
    assert json.loads(queued.read_text())["stage"] == "sent-copy"
    assert len(_arrived(bob.home, "INBOX", first)) == 1          # the mail went out once

    (alice.home / ACCOUNT_FILE).write_bytes(good)
    second = _subject()
    r = _send(stack, alice, second, "--to", bob.address)
    assert r.returncode == 0, r.stderr
    assert _outbox(alice.home) == []
    assert len(_arrived(alice.home, "Sent", first)) == 1
    assert len(_arrived(bob.home, "INBOX", first)) == 1          # not sent a second time


def test_bad_input_is_one_line(stack: Stack, correspondents: tuple[User, User]) -> None:
    alice, _ = correspondents
    r = _send(stack, alice, "x")
    assert r.returncode == 2 and "no recipient" in _one_line(r.stderr)
    r = _send(stack, alice, "x", "--to", "not an address")
    assert r.returncode == 2 and "not an e-mail address" in _one_line(r.stderr)
    r = _send(stack, alice, "x", "--to", f"someone@{stack.domain}", "--attach", "/nonexistent/file")
    assert r.returncode == 2 and "attachment" in _one_line(r.stderr)


def test_watch_sends_what_is_queued(stack: Stack, correspondents: tuple[User, User],
                                    broken_account: tuple[User, dict]) -> None:
    from autosmime.agent.context import Agent
    from autosmime.agent.watch import Watcher

    alice, data = broken_account
    _, bob = correspondents
    good = (alice.home / ACCOUNT_FILE).read_bytes()
    (alice.home / ACCOUNT_FILE).write_text(json.dumps({**data, "smtp_port": _closed_port()}))
    subject = _subject()
    r = _send(stack, alice, subject, "--to", bob.address)
    assert r.returncode == 1 and len(_outbox(alice.home)) == 1
    watcher = Watcher(Agent(alice.home))
    events = [e for e in watcher.tick() if e.kind.startswith("outbox")]
    assert [e.kind for e in events] == ["outbox-failed"] and "still waiting" in events[0].text
    assert len(_outbox(alice.home)) == 1

    (alice.home / ACCOUNT_FILE).write_bytes(good)
    events = [e for e in Watcher(Agent(alice.home)).tick() if e.kind.startswith("outbox")]
    assert [e.kind for e in events] == ["outbox-sent"] and subject in events[0].text
    assert _outbox(alice.home) == []
    assert len(_arrived(bob.home, "INBOX", subject)) == 1 and len(_arrived(alice.home, "Sent", subject)) == 1


def test_a_silent_smtp_server_times_out_and_keeps_the_message(
        stack: Stack, correspondents: tuple[User, User], broken_account: tuple[User, dict]) -> None:
    """A server that greets and then never answers: one line after the timeout, the message kept."""
    from autosmime.devstack.faultproxy import SilentServer

    alice, data = broken_account
    _, bob = correspondents
    good = (alice.home / ACCOUNT_FILE).read_bytes()
    subject = _subject()
    with SilentServer(b"220 silent ESMTP\r\n") as silent:
        (alice.home / ACCOUNT_FILE).write_text(json.dumps({**data, "smtp_port": silent.port, "security": "plain"}))
        r = run_cli(*alice.args("send", "--to", bob.address, "--subject", subject), input="hung\n",
                    env={**stack.client_env(), "AUTOSMIME_TIMEOUT": "2"})
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert "not sent" in line and "timed out" in line and "kept in the outbox" in line
    assert len(_outbox(alice.home)) == 1
    (alice.home / ACCOUNT_FILE).write_bytes(good)
    r = _send(stack, alice, _subject(), "--to", bob.address)
    assert r.returncode == 0 and f"({subject!r}) sent" in r.stderr, r.stderr
    assert _outbox(alice.home) == [] and len(_arrived(bob.home, "INBOX", subject)) == 1


def test_a_message_the_server_refuses_for_good_is_not_promised_to_go_out(tmp_path: Path) -> None:
    """A 5xx (here 552, too big) is no outage: the next `send` will not get it through either. One line that says
    so; the message is still kept in the outbox (nothing lost)."""
    import dataclasses

    from aiosmtpd.controller import Controller

    from autosmime.devstack._procs import free_ports
    from autosmime.mailbox.account import save_account
    from autosmime.vault.store import Vault
    from tests.cli import support

    class Refuse:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            return "552 5.3.4 Message size exceeds fixed limit"

    home = tmp_path / "home"
    support.offline_account(home, "alice@example.test")
    port = free_ports(1)[0]
    save_account(home, dataclasses.replace(load_account(home), smtp_port=port))
    Vault.open(home).add(*support.ca_issued("alice@example.test"))
    server = Controller(Refuse(), hostname="127.0.0.1", port=port)
    server.start()
    try:
        r = run_cli("--home", str(home), "send", "--to", "bob@example.test", "--subject", "big", input="x\n")
    finally:
        server.stop()
    line = _one_line(r.stderr)
    assert r.returncode == 1 and "552" in line and "goes out with the next" not in line, line
    assert "refuse" in line and len(_outbox(home)) == 1
