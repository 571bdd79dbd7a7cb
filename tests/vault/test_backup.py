"""Backup lifecycle against the real loopback Dovecot: append, verify, prune, queue, retry, CLI."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from autosmime.mailbox.imap import ImapMailbox
from autosmime.vault import format as fmt
from autosmime.vault.backup import KEEP, backup_after_change, backup_now, retry_pending
from autosmime.vault.recovery import load_code
from autosmime.vault.store import Vault
from tests.vault import backup_support as support

pytestmark = pytest.mark.mailserver




def folder_messages(account, password) -> dict[int, bytes]:
    with ImapMailbox.connect(account, password) as box:
        if not box.folder_exists(account.backup_folder):
            return {}
        return box.fetch(account.backup_folder, box.search_header(account.backup_folder, fmt.MARKER_HEADER, "v1"))


def valid_seqs(account, password, code) -> list[int]:
    out = []
    for raw in folder_messages(account, password).values():
        try:
            out.append(fmt.verify_message(raw, code=code, address=account.email).manifest.seq)
        except fmt.BackupRejected:
            pass
    return sorted(out)


@pytest.fixture
def device(mailstack, mail_user, tmp_path):
    email, password = mail_user
    vault = support.make_device(tmp_path, "device", mailstack.account(email), password, keys=2)
    return vault, mailstack.account(email), password


def test_first_backup_creates_code_folder_and_a_verified_message(device, tmp_path):
    vault, account, password = device
    out = tmp_path / "out" / "code.txt"
    status = backup_after_change(vault, recovery_code_out=out)
    assert status.startswith("key backup 1 stored")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    code = out.read_text().strip()
    assert code == load_code(vault.home)
    assert code not in status
    msgs = folder_messages(account, password)
    assert len(msgs) == 1
    backup = fmt.verify_message(next(iter(msgs.values())), code=code, address=account.email)
    assert {fmt.fingerprint(p.cert) for p in backup.keys} == support.fingerprints(vault)
    state = vault.state
    assert state["backup_seq_seen"] == 1 and "backup_last_ok" in state and not state.get("backup_pending")
    with ImapMailbox.connect(account, password) as box:  # APPENDed \Seen, nothing in INBOX
        box._select(account.backup_folder)
        flags = box._client.get_flags(list(msgs))
        assert all(b"\\Seen" in f for f in flags.values())
        assert box.search_header("INBOX", fmt.MARKER_HEADER, "v1") == []


def test_sequence_numbers_increase_and_new_keys_are_included(device):
    vault, account, password = device
    backup_after_change(vault)
    code = load_code(vault.home)
    vault.add(*support.new_pair(account.email))
    assert backup_now(vault) == 2
    newest = max(folder_messages(account, password).items())[1]
    backup = fmt.verify_message(newest, code=code, address=account.email)
    assert {fmt.fingerprint(p.cert) for p in backup.keys} == support.fingerprints(vault)
    assert len(backup.keys) == 3


def test_pruning_keeps_exactly_the_last_three_valid_and_leaves_foreign_messages(device):
    vault, account, password = device
    backup_after_change(vault)
    code = load_code(vault.home)
    # A message this device cannot authenticate (e.g. a backup under an older code) is never deleted.
    with ImapMailbox.connect(account, password) as box:
        box.append(account.backup_folder, b"X-Autosmime-Backup: v1\r\nSubject: x\r\n\r\nnot a backup\r\n")
    for expected in range(2, 7):
        assert backup_now(vault) == expected
        seqs = valid_seqs(account, password, code)
        assert seqs == list(range(max(1, expected - KEEP + 1), expected + 1))
    assert KEEP == 3 and valid_seqs(account, password, code) == [4, 5, 6]
    assert len(folder_messages(account, password)) == 4  # 3 valid + the untouchable one


def test_sequence_continues_after_the_highest_in_the_folder(mailstack, mail_user, tmp_path):
    """A second device sharing the mailbox never reuses a number the first one wrote."""
    email, password = mail_user
    first = support.make_device(tmp_path, "first", mailstack.account(email), password, keys=1)
    backup_after_change(first)
    backup_now(first)
    code = load_code(first.home)
    second = support.make_device(tmp_path, "second", mailstack.account(email), password, keys=1)
    assert backup_now(second, code=code) == 3


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_server_down_queues_then_retry_stores(mailstack, mail_user, tmp_path):
    email, password = mail_user
    down = mailstack.account(email, imap_port=_closed_port())
    vault = support.make_device(tmp_path, "device", down, password, keys=1)
    out = tmp_path / "code.txt"
    status = backup_after_change(vault, recovery_code_out=out)
    assert status.startswith("key backup pending")
    assert out.exists()  # the user has the code even though the server was down
    state = vault.state
    assert state["backup_pending"] is True and state["backup_pending_reason"]
    assert "backup_seq_seen" not in state
    assert retry_pending(vault).startswith("key backup pending")  # still down: still queued
    # the server comes back (the account now points at the real port)
    support.make_device(tmp_path, "device", mailstack.account(email), password)
    assert retry_pending(vault) == "pending key backup stored as backup 1"
    assert not vault.state.get("backup_pending")
    assert valid_seqs(mailstack.account(email), password, out.read_text().strip()) == [1]
    assert retry_pending(vault) is None  # nothing pending: quick no-op


def test_wrong_imap_password_queues_with_a_clear_reason(mailstack, mail_user, tmp_path):
    email, _ = mail_user
    vault = support.make_device(tmp_path, "device", mailstack.account(email), "not-the-password", keys=1)
    status = backup_after_change(vault)
    assert status.startswith("key backup pending") and "rejected the login" in status
    assert "not-the-password" not in status


def _cli(home: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), *args], capture_output=True,
                          timeout=120, env=env)


def test_cli_next_command_retries_a_queued_backup(mailstack, mail_user, tmp_path):
    email, password = mail_user
    vault = support.make_device(tmp_path, "device", mailstack.account(email, imap_port=_closed_port()),
                                password, keys=1)
    home = vault.home
    out = tmp_path / "code.txt"
    r = _cli(home, "backup", "--recovery-code-out", str(out))
    assert r.returncode == 1 and r.stdout == b""
    assert len(r.stderr.splitlines()) == 1 and b"pending" in r.stderr and b"retried" in r.stderr
    assert out.exists()  # the user has the code even though the server is down
    r = _cli(home, "keys", "--json")
    assert r.returncode == 0 and b"pending" in r.stderr  # still down: still queued, said once
    assert json.loads(r.stdout)["backup"]["backup_pending"] is True
    support.make_device(tmp_path, "device", mailstack.account(email), password)  # the server is back
    r = _cli(home, "keys")
    assert r.returncode == 0, r.stderr
    assert b"pending key backup stored as backup 1" in r.stderr
    assert not Vault.open(home, create=False).state.get("backup_pending")
    assert valid_seqs(mailstack.account(email), password, out.read_text().strip()) == [1]


def test_cli_backup_writes_the_code_only_to_the_file(device, tmp_path):
    vault, account, password = device
    out = tmp_path / "code.txt"
    result = _cli(vault.home, "backup", "--recovery-code-out", str(out))
    assert result.returncode == 0, result.stderr.decode()
    code = out.read_text().strip()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert result.stdout == b""
    assert code.encode() not in result.stderr and b"key backup 1 stored" in result.stderr
    # a second run reuses the code and writes backup 2
    again = _cli(vault.home, "backup", "--recovery-code-out", str(out))
    assert again.returncode == 0 and out.read_text().strip() == code
    assert valid_seqs(account, password, code) == [1, 2]


def test_cli_backup_with_the_server_down_fails_but_keeps_the_code(mailstack, mail_user, tmp_path):
    email, password = mail_user
    vault = support.make_device(tmp_path, "device", mailstack.account(email, imap_port=_closed_port()), password,
                                keys=1)
    out = tmp_path / "code.txt"
    result = _cli(vault.home, "backup", "--recovery-code-out", str(out))
    assert result.returncode == 1
    assert b"pending" in result.stderr and out.exists()
    assert vault.state["backup_pending"] is True
