"""``autosmime inbox`` and ``read UID`` end to end on the embedded stack.

Bob's inbox shows alice's mail decrypted and signed good, in plain words and as --json records; read UID
prints the content and the engine's summary (--json: ReadResult.to_json() plus uid and folder); reading
harvests alice's certificate, so bob's reply is encrypted from his contacts; a tampered signature, a plain
message and mail encrypted to someone else each show their state; bob's second device (set up from the
backup with the recovery code) reads the old mail; bad input is one line.
"""

from __future__ import annotations

import email.utils
import json
import secrets
from pathlib import Path

import pytest

from autosmime.mailbox.account import load_account
from tests.autopilot.conftest import Stack, User, run_cli, set_up, set_up_user


def _box(home: Path):  # type: ignore[no-untyped-def]
    from autosmime.mailbox.credentials import get_password
    from autosmime.mailbox.imap import ImapMailbox

    account = load_account(home)
    return ImapMailbox.connect(account, get_password(account, home))


def _one_line(stderr: str) -> str:
    assert stderr.startswith("autosmime: ") and len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    return stderr


def _wait(home: Path, folder: str, subject: str) -> int:
    with _box(home) as box:
        [uid] = box.wait_for(folder, "Subject", subject, timeout=30)
    return uid


@pytest.fixture(scope="module")
def delivered(stack: Stack, correspondents: tuple[User, User]) -> tuple[str, int]:
    """Alice's encrypted, signed mail in bob's INBOX: (subject, uid)."""
    alice, bob = correspondents
    subject = f"inbox {secrets.token_hex(4)}"
    r = run_cli(*alice.args("send", "--to", bob.address, "--subject", subject), input="Dear Bob,\nthe plan.\n",
                env=stack.client_env())
    assert r.returncode == 0 and "encrypted and signed" in r.stderr, r.stderr
    return subject, _wait(bob.home, "INBOX", subject)


def test_inbox_shows_the_mail_decrypted_and_signed_good(stack: Stack, correspondents: tuple[User, User],
                                                        delivered: tuple[str, int]) -> None:
    alice, bob = correspondents
    subject, uid = delivered
    r = run_cli(*bob.args("inbox", "--json"), env=stack.client_env())
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)
    assert [m["uid"] for m in records] == sorted((m["uid"] for m in records), reverse=True)   # newest first
    [record] = [m for m in records if m["uid"] == uid]
    assert record["subject"] == subject and alice.address in record["from"]
    assert record["encrypted"] is True and record["verdict"] == "good" and record["signer"] == alice.address
    assert record["summary"] == f"encrypted; signed by {alice.address} (good)"
    assert [(x["kind"], x["verdict"]) for x in record["layers"]] == [("enveloped", "good"), ("clear-signed", "good"),
                                                                      ("plain", None)]
    assert record["date"] and record["date"][:4].isdigit()

    r = run_cli(*bob.args("inbox", "--limit", "1"), env=stack.client_env())
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].split()[0] == str(records[0]["uid"])
    r = run_cli(*bob.args("inbox"), env=stack.client_env())
    [line] = [x for x in r.stdout.splitlines() if subject in x]
    assert line.split()[0] == str(uid) and f"encrypted; signed by {alice.address} (good)" in line


def test_read_uid_prints_the_content_and_the_summary(stack: Stack, correspondents: tuple[User, User],
                                                     delivered: tuple[str, int]) -> None:
    alice, bob = correspondents
    subject, uid = delivered
    r = run_cli(*bob.args("read", str(uid)), env=stack.client_env())
    assert r.returncode == 0, r.stderr
    assert "Dear Bob,\r\nthe plan." in r.stdout or "Dear Bob,\nthe plan." in r.stdout
    assert f"Subject: {subject}" in r.stdout and f"From:    {alice.address}" in r.stdout
    assert "Content-Type" not in r.stdout          # a person's view: headers and text, not MIME
    assert r.stderr == f"autosmime: encrypted; signed by {alice.address} (good)\n"
    raw = run_cli(*bob.args("read", str(uid), "--raw"), env=stack.client_env())
    assert raw.returncode == 0 and "Content-Type: text/plain" in raw.stdout and f"Subject: {subject}" in raw.stdout
    r = run_cli(*bob.args("read", str(uid), "--json"), env=stack.client_env())
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["uid"] == uid and doc["folder"] == "INBOX" and doc["verdict"] == "good" and doc["exit"] == 0
    assert doc["layers"][1]["signer"]["address"] == alice.address and "the plan." in doc["content"]
    assert set(doc) >= {"verdict", "exit", "decided_by", "summary", "layers", "content", "content_encoding"}


def test_reading_harvests_the_sender_so_the_reply_is_encrypted_from_contacts(
        stack: Stack, correspondents: tuple[User, User], delivered: tuple[str, int]) -> None:
    alice, bob = correspondents
    _subject, uid = delivered
    r = run_cli(*bob.args("read", str(uid)), env=stack.client_env())
    assert r.returncode == 0, r.stderr
    from autosmime.exchange.contacts import Contacts

    assert Contacts(bob.home).certificates(alice.address)
    r = run_cli(*bob.args("send", "--to", alice.address, "--subject", "re", "--json"), input="ok\n",
                env=stack.client_env())
    assert r.returncode == 0, r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["encrypted"] is True and outcome["recipients"][0]["source"] == "contacts"


def test_each_state_in_plain_words(stack: Stack, correspondents: tuple[User, User], tmp_path: Path) -> None:
    """A tampered signature, a plain message and mail for someone else, in a folder of their own."""
    from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
    from autosmime.smime import encrypt, sign
    from autosmime.vault.store import Vault

    alice, bob = correspondents
    folder = f"states-{secrets.token_hex(3)}"
    pair = Vault.open(alice.home, create=False).signing_pair()
    date = f"Date: {email.utils.formatdate()}\r\n"
    head = f"From: {alice.address}\r\nTo: {bob.address}\r\n{date}"
    signed = sign(f"{head}Subject: tampered\r\n\r\nPay 10 EUR\r\n".encode(), pair.key, pair.cert, pair.chain)
    tampered = signed.replace(b"Pay 10 EUR", b"Pay 99 EUR")
    plain = f"{head}Subject: plain\r\n\r\nno S/MIME here\r\n".encode()
    ca_key, ca = make_ca("Other CA", new_key("ec"))
    stranger = make_mailbox_cert(f"stranger@{stack.domain}", new_key("ec").public_key(), ca_key, ca)
    other = encrypt(f"{head}Subject: not for bob\r\n\r\nsecret\r\n".encode(), [stranger])
    with _box(bob.home) as box:
        box.ensure_folder(folder)
        uids = [box.append(folder, m) for m in (tampered, plain, other)]
    r = run_cli(*bob.args("inbox", "--folder", folder, "--json"), env=stack.client_env())
    assert r.returncode == 0, r.stderr
    by_uid = {m["uid"]: m for m in json.loads(r.stdout)}
    t, p, o = (by_uid[u] for u in uids)
    assert (t["verdict"], t["encrypted"], t["subject"]) == ("bad-digest", False, "tampered")
    assert t["summary"] == f"signed by {alice.address} (bad-digest)"
    assert (p["verdict"], p["signer"], p["summary"]) == (None, None, "no S/MIME signature")
    assert (o["verdict"], o["encrypted"], o["subject"]) == ("not-for-me", True, "not for bob")
    assert o["summary"].startswith("encrypted (not-for-me)")

    r = run_cli(*bob.args("read", str(uids[0]), "--folder", folder), env=stack.client_env())
    assert r.returncode == 1 and "Pay 99 EUR" in r.stdout and "bad-digest" in r.stderr
    r = run_cli(*bob.args("read", str(uids[2]), "--folder", folder), env=stack.client_env())
    assert r.returncode == 1 and r.stdout == "" and "not-for-me" in r.stderr


def test_read_uid_says_when_a_sender_s_new_certificate_is_held_back(
        stack: Stack, correspondents: tuple[User, User], tmp_path: Path) -> None:
    """As `read` of a file does: bob learns carol's certificate from her mail; after her renewal her next mail
    is signed with another one, which is kept but held back (replies still go to the one bob knows), and said."""
    _alice, bob = correspondents
    carol = set_up_user(stack, tmp_path)
    uids = []
    for n in (1, 2):
        if n == 2:
            r = run_cli(*carol.args("renew", "--force"), env=stack.client_env())
            assert r.returncode == 0, r.stderr
        subject = f"held {n} {secrets.token_hex(4)}"
        r = run_cli(*carol.args("send", "--to", bob.address, "--subject", subject), input="hi\n",
                    env=stack.client_env())
        assert r.returncode == 0, r.stderr
        uids.append(_wait(bob.home, "INBOX", subject))
    r = run_cli(*bob.args("read", str(uids[0])), env=stack.client_env())
    assert r.returncode == 0 and "held back" not in r.stderr, r.stderr
    r = run_cli(*bob.args("read", str(uids[1])), env=stack.client_env())
    assert r.returncode == 0 and f"autosmime: warning: {carol.address} signed with a certificate other than" \
        in r.stderr and "held back" in r.stderr, r.stderr


def test_a_second_device_reads_the_old_mail(stack: Stack, correspondents: tuple[User, User],
                                            delivered: tuple[str, int], tmp_path: Path) -> None:
    alice, bob = correspondents
    subject, uid = delivered
    second = tmp_path / "second"
    set_up(stack, second, bob.address, "--recovery-code-file", str(bob.code_file))
    r = run_cli("--home", str(second), "read", str(uid), "--json", env=stack.client_env())
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "good" and "the plan." in doc["content"]
    r = run_cli("--home", str(second), "inbox", "--json", env=stack.client_env())
    [record] = [m for m in json.loads(r.stdout) if m["uid"] == uid]
    assert record["subject"] == subject and record["verdict"] == "good"


def test_bad_input_is_one_line(stack: Stack, correspondents: tuple[User, User], tmp_path: Path) -> None:
    _alice, bob = correspondents
    r = run_cli(*bob.args("read", "999999"), env=stack.client_env())
    assert r.returncode == 2 and "no message with UID 999999 in INBOX" in _one_line(r.stderr)
    r = run_cli(*bob.args("read", "1", "--folder", "no-such-folder"), env=stack.client_env())
    assert r.returncode == 2 and "no folder" in _one_line(r.stderr)
    r = run_cli(*bob.args("inbox", "--folder", "no-such-folder"), env=stack.client_env())
    assert r.returncode == 2 and "no folder" in _one_line(r.stderr)
    # an empty name too (IMAP's LIST "" "" answers with the hierarchy delimiter, as if it existed)
    r = run_cli(*bob.args("inbox", "--folder", ""), env=stack.client_env())
    assert r.returncode == 2 and "no folder" in _one_line(r.stderr)
    r = run_cli(*bob.args("inbox", "--limit", "0"), env=stack.client_env())
    assert r.returncode == 2 and "--limit" in _one_line(r.stderr)
    # IMAP UIDs are 32-bit: one past the largest is no message, not the server's "Invalid uidset" (exit 1)
    r = run_cli(*bob.args("read", str(2 ** 32)), env=stack.client_env())
    assert r.returncode == 2 and "4294967296" in _one_line(r.stderr)
    r = run_cli(*bob.args("read", "--folder", "INBOX"), input="x", env=stack.client_env())
    assert r.returncode == 2 and "--folder goes with a UID" in _one_line(r.stderr)
    (tmp_path / "m.eml").write_bytes(b"Subject: x\r\n\r\nx\r\n")
    r = run_cli(*bob.args("read", "1", "--in", str(tmp_path / "m.eml")), env=stack.client_env())
    assert r.returncode == 2 and "either a UID or --in" in _one_line(r.stderr)
    r = run_cli(*bob.args("read", "0"), env=stack.client_env())
    assert r.returncode == 2
    # Without a UID, read still reads standard input (the engine command).
    r = run_cli(*bob.args("read"), input="Subject: plain\r\n\r\nhello\r\n", env=stack.client_env())
    assert r.returncode == 0 and "hello" in r.stdout and "no S/MIME signature" in r.stderr
