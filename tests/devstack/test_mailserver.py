"""The loopback mail stack itself: start, users, delivery, stop without leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autosmime.devstack import _procs
from autosmime.devstack.mailserver import MailStack, MailStackError, dovecot_available
from autosmime.mailbox.imap import ImapMailbox

pytestmark = [pytest.mark.mailserver,
              pytest.mark.skipif(not dovecot_available(), reason="dovecot is not installed")]

REPO = Path(__file__).resolve().parents[2]


def stack_processes(marker: str) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and marker in _procs.cmdline(int(p))]


def test_start_stop_leaves_no_process_behind():
    stack = MailStack.start(users=2, pool=5)
    base = stack.base
    pids = stack.pids()
    assert len(pids) >= 4            # dovecot master + children, postfix/relay
    named = stack_processes(base.name)
    assert named                     # dovecot titles its children with the instance name
    email, password = stack.user("alice")
    with ImapMailbox.connect(stack.account(email), password) as box:
        assert "INBOX" in box.list_folders()
        stack.stop()
    assert not [pid for pid in pids if _procs.alive(pid)]
    assert not stack_processes(base.name)
    assert not base.exists()
    stack.stop()                     # idempotent


def test_users_are_distinct_and_stable(mailstack):
    seen = {mailstack.fresh_user()[0] for _ in range(5)}
    assert len(seen) == 5
    assert mailstack.user("alice") == mailstack.user("alice")
    assert mailstack.user("alice")[0] == "alice@example.test"
    assert mailstack.user("bob") != mailstack.user("alice")


def test_unknown_named_user_is_added_at_run_time(mailstack):
    email, password = mailstack.user("zoe")
    assert email == "zoe@example.test"
    with ImapMailbox.connect(mailstack.account(email), password) as box:
        assert box.list_folders()


def test_deliver_lands_byte_exact(mailstack, mail_user):
    email, password = mail_user
    raw = b"Subject: delivered\r\nX-Id: d1\r\n\r\nbody\r\n"
    mailstack.deliver(email, raw)
    with ImapMailbox.connect(mailstack.account(email), password) as box:
        uids = box.search_header("INBOX", "X-Id", "d1")
        assert box.fetch("INBOX", uids) == {uids[0]: raw}


def test_deliver_to_unknown_user_fails(mailstack):
    with pytest.raises(MailStackError):
        mailstack.deliver("nobody-here@example.test", b"Subject: x\r\n\r\nx\r\n")


def test_start_in_non_empty_dir_refused(tmp_path):
    (tmp_path / "something").write_text("x")
    with pytest.raises(MailStackError, match="not empty"):
        MailStack.start(tmp_path)


def test_unreachable_dir_refused_clearly(tmp_path):
    # pytest's tmp_path lives under a 0700 dir: Dovecot's users could not reach it.
    if os.geteuid() != 0:
        pytest.skip("only root drops privileges")
    with pytest.raises(MailStackError, match="world-searchable"):
        MailStack.start(tmp_path / "stack")


def test_script_start_attach_stop():
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="autosmime-script-")) / "stack"
    os.chmod(base.parent, 0o755)
    script = REPO / "scripts" / "mailstack"
    env = {**os.environ, "PYTHON": sys.executable}
    try:
        started = subprocess.run([str(script), "start", str(base)], capture_output=True, text=True, timeout=60,
                                 env=env)
        assert started.returncode == 0, started.stderr
        env_file = Path(started.stdout.splitlines()[0])
        settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        # The servers outlive the starting process; another process can attach and use them.
        stack = MailStack.attach(base)
        assert int(settings["MAILSTACK_IMAP_PORT"]) == stack.imap_port
        pids = stack.pids()
        assert pids
        email, password = stack.user("alice")
        with ImapMailbox.connect(stack.account(email, "tls"), password) as box:
            assert "INBOX" in box.list_folders()
        stopped = subprocess.run([str(script), "stop", str(base)], capture_output=True, text=True, timeout=60,
                                 env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert not [pid for pid in pids if _procs.alive(pid)]
        assert base.exists()         # a caller-chosen dir (and its logs) is kept
    finally:
        if (base / "mailstack.json").exists():
            MailStack.attach(base).stop()
        import shutil

        shutil.rmtree(base.parent, ignore_errors=True)


def test_relay_fallback_delivers(monkeypatch):
    # The aiosmtpd relay stands in for Postfix when not root; exercise it even when root.
    from autosmime.errors import AuthenticationFailed, MailboxError
    from autosmime.mailbox.smtp import send

    monkeypatch.setenv("AUTOSMIME_MAILSTACK_SMTP", "relay")
    with MailStack.start(users=2, pool=0) as stack:
        assert stack.smtp_kind == "relay"
        (a, a_pw), (b, b_pw) = stack.user("alice"), stack.user("bob")
        raw = b"From: alice@example.test\r\nSubject: via relay\r\nX-Id: r1\r\n\r\n.\r\nFrom here\r\n"
        for security in ("starttls", "tls"):
            send(stack.account(a, security), a_pw, raw, a, [b])
        with ImapMailbox.connect(stack.account(b), b_pw) as box:
            uids = box.wait_for("INBOX", "X-Id", "r1")
            while len(uids) < 2:
                uids = box.wait_for("INBOX", "X-Id", "r1")
            assert all(m.endswith(raw) for m in box.fetch("INBOX", uids).values())
        with pytest.raises(AuthenticationFailed):
            send(stack.account(a), a_pw + "x", raw, a, [b])
        with pytest.raises(MailboxError, match="550"):
            send(stack.account(a), a_pw, raw, a, ["nobody@example.test"])
        pids = stack.pids()
    assert not [pid for pid in pids if _procs.alive(pid)]
