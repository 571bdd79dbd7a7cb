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
from autosmime.vault.backup import KEEP
from autosmime.vault.recovery import load_code, save_code
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
    outcome = support.back_up(vault, recovery_code_out=out)
    assert outcome.stored and outcome.seq == 1 and outcome.keys == 2
    assert outcome.code_created and outcome.code_file == out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    code = out.read_text().strip()
    assert code == load_code(vault.home)
    assert code not in repr(outcome)
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
    support.back_up(vault)
    code = load_code(vault.home)
    vault.add(*support.new_pair(account.email))
    assert support.back_up_or_raise(vault) == 2
    newest = max(folder_messages(account, password).items())[1]
    backup = fmt.verify_message(newest, code=code, address=account.email)
    assert {fmt.fingerprint(p.cert) for p in backup.keys} == support.fingerprints(vault)
    assert len(backup.keys) == 3


def test_pruning_keeps_exactly_the_last_three_valid_and_leaves_foreign_messages(device):
    vault, account, password = device
    support.back_up(vault)
    code = load_code(vault.home)
    # A message this device cannot authenticate (e.g. a backup under an older code) is never deleted.
    with ImapMailbox.connect(account, password) as box:
        box.append(account.backup_folder, b"X-Autosmime-Backup: v1\r\nSubject: x\r\n\r\nnot a backup\r\n")
    for expected in range(2, 7):
        assert support.back_up_or_raise(vault) == expected
        seqs = valid_seqs(account, password, code)
        assert seqs == list(range(max(1, expected - KEEP + 1), expected + 1))
    assert KEEP == 3 and valid_seqs(account, password, code) == [4, 5, 6]
    assert len(folder_messages(account, password)) == 4  # 3 valid + the untouchable one


def test_sequence_continues_after_the_highest_in_the_folder_and_keys_merge(mailstack, mail_user, tmp_path):
    """A second device sharing the mailbox never reuses a number the first one wrote, and its backup
    holds the first device's keys too (it takes them in before writing)."""
    email, password = mail_user
    first = support.make_device(tmp_path, "first", mailstack.account(email), password, keys=1)
    support.back_up(first)
    support.back_up_or_raise(first)
    code = load_code(first.home)
    second = support.make_device(tmp_path, "second", mailstack.account(email), password, keys=1)
    save_code(second.home, code)
    assert support.back_up_or_raise(second) == 3
    newest = max(folder_messages(mailstack.account(email), password).items())[1]
    backup = fmt.verify_message(newest, code=code, address=email)
    both = support.fingerprints(first) | support.fingerprints(Vault.open(second.home))
    assert len(both) == 2 and {fmt.fingerprint(p.cert) for p in backup.keys} == both
    assert support.fingerprints(Vault.open(second.home)) == both  # the second device holds both now


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
    outcome = support.back_up(vault, recovery_code_out=out)
    assert outcome.pending and outcome.reason
    # No code before the folder was seen: it may already hold backups under the account's code.
    assert not out.exists() and load_code(vault.home) is None and not outcome.code_created
    state = vault.state
    assert state["backup_pending"] is True and state["backup_pending_reason"]
    assert "backup_seq_seen" not in state
    assert support.retry(vault).pending  # still down: still queued
    # the server comes back (the account now points at the real port)
    support.make_device(tmp_path, "device", mailstack.account(email), password)
    retried = support.retry(vault)
    assert retried.stored and retried.was_pending and retried.seq == 1 and retried.code_created
    assert not vault.state.get("backup_pending")
    assert vault.state.get("recovery_code_unseen") is True  # nobody saw it yet: `status` warns
    assert valid_seqs(mailstack.account(email), password, load_code(vault.home)) == [1]
    assert support.retry(vault) is None  # nothing pending: quick no-op


def test_wrong_imap_password_queues_with_a_clear_reason(mailstack, mail_user, tmp_path):
    email, _ = mail_user
    vault = support.make_device(tmp_path, "device", mailstack.account(email), "not-the-password", keys=1)
    outcome = support.back_up(vault)
    assert outcome.pending and "rejected the login" in outcome.reason
    assert "not-the-password" not in repr(outcome)


def _cli(home: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), *args], capture_output=True,
                          timeout=120, env=env)


def test_cli_queued_backup_is_retried_by_backup_not_by_commands_without_network(mailstack, mail_user, tmp_path):
    email, password = mail_user
    vault = support.make_device(tmp_path, "device", mailstack.account(email, imap_port=_closed_port()),
                                password, keys=1)
    home = vault.home
    out = tmp_path / "code.txt"
    r = _cli(home, "backup", "--recovery-code-out", str(out))
    assert r.returncode == 1 and r.stdout == b""
    assert len(r.stderr.splitlines()) == 1 and b"pending" in r.stderr and b"retried" in r.stderr
    r = _cli(home, "keys", "--json")
    assert r.returncode == 0 and r.stderr == b""  # no retry, no network: nothing to say
    assert json.loads(r.stdout)["backup"]["backup_pending"] is True
    support.make_device(tmp_path, "device", mailstack.account(email), password)  # the server is back
    r = _cli(home, "keys")
    assert r.returncode == 0 and r.stderr == b"" and Vault.open(home, create=False).state["backup_pending"]
    r = _cli(home, "backup", "--recovery-code-out", str(out))
    assert r.returncode == 0, r.stderr
    assert b"pending key backup stored as backup 1" in r.stderr
    assert not Vault.open(home, create=False).state.get("backup_pending")
    assert valid_seqs(mailstack.account(email), password, out.read_text().strip()) == [1]


def test_commands_without_network_never_connect_even_with_a_backup_pending(mailstack, mail_user, tmp_path):
    """keys, status, account show, sign, verify, encrypt, decrypt: no connection, whatever is queued."""
    email, password = mail_user
    trap = socket.socket()
    trap.bind(("127.0.0.1", 0))
    trap.listen(16)  # accepts connections into the backlog; we only look whether any came
    trap.setblocking(False)
    try:
        port = trap.getsockname()[1]
        vault = support.make_device(tmp_path, "device", mailstack.account(email, imap_port=port), password, keys=1)
        vault.update_state(backup_pending=True, backup_pending_reason="queued")
        home = vault.home
        cert = tmp_path / "cert.pem"
        from cryptography.hazmat.primitives import serialization
        cert.write_bytes(vault.entries()[0].cert.public_bytes(serialization.Encoding.PEM))
        msg = f"From: {email}\r\nTo: {email}\r\nSubject: t\r\n\r\nhello\r\n".encode()
        for args in (("keys",), ("keys", "--json"), ("status",), ("status", "--json"), ("account", "show")):
            assert _cli(home, *args).returncode == 0, args
        signed = subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), "sign"], input=msg,
                                capture_output=True, timeout=120)
        assert signed.returncode == 0, signed.stderr
        enc = subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), "encrypt", "--to", str(cert)],
                             input=msg, capture_output=True, timeout=120)
        assert enc.returncode == 0, enc.stderr
        dec = subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), "decrypt"], input=enc.stdout,
                             capture_output=True, timeout=120)
        assert dec.returncode == 0 and b"hello" in dec.stdout, dec.stderr
        with pytest.raises(BlockingIOError):
            trap.accept()  # nobody ever connected
        assert Vault.open(home, create=False).state["backup_pending"] is True
    finally:
        trap.close()


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


def test_cli_backup_with_the_server_down_fails_and_queues(mailstack, mail_user, tmp_path):
    email, password = mail_user
    vault = support.make_device(tmp_path, "device", mailstack.account(email, imap_port=_closed_port()), password,
                                keys=1)
    out = tmp_path / "code.txt"
    result = _cli(vault.home, "backup", "--recovery-code-out", str(out))
    assert result.returncode == 1
    # no code yet: the folder could not be checked for backups under the account's code
    assert b"pending" in result.stderr and not out.exists()
    assert vault.state["backup_pending"] is True
