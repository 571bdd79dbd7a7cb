"""``autosmime status``: what this device has recorded, with no network, on the embedded stack.

A fresh home (every key present, all empty); a home after `setup` (enrolled, backed up, published: the
certificate's dates and renewal date, the backup stored and verified, the directory's log state); a home
whose backup is queued (pending work), and that ``status`` opened no connection to get any of it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import socket
from pathlib import Path

import pytest

from autosmime.mailbox.account import load_account, save_account
from tests.autopilot.conftest import Stack, run_cli

TOP_KEYS = {"home", "account", "keys", "signing", "encryption", "backup", "recovery_code_stored",
            "recovery_code_unseen", "checked_at", "certificate", "publication", "pending", "watch"}
BACKUP_KEYS = {"backup_pending", "backup_pending_reason", "backup_last_ok", "backup_seq_seen", "last_verified"}
CERT_KEYS = {"address", "fingerprint", "issuer", "not_before", "not_after", "days_left", "expired", "renewal_due",
             "renewal_is_due", "renewal_source", "renewal_checked"}
PUBLICATION_KEYS = {"directory", "published", "leaf_index", "checkpoint_size", "checkpoint_seen", "last_check"}
PENDING_KEYS = {"backup_queued", "renewal_due", "join_requests", "join_checked", "publish_needed", "outbox",
                "invitations"}


def setup_device(stack: Stack, home: Path, address: str, code_file: Path) -> None:
    """`autosmime setup` for ``address`` (enrol, back up, publish when the stack has a directory)."""
    args = ["--home", str(home), "setup", address, "--imap", stack.env["IMAP"], "--smtp", stack.env["SMTP"],
            "--security", stack.env["SECURITY"], "--ca-file", stack.env["MAIL_CA_FILE"], "--ca", stack.env["CA_URL"],
            "--password-file", str(stack.password_file(address)), "--recovery-code-out", str(code_file)]
    if stack.directory_url:
        args += ["--directory", stack.directory_url]
    r = run_cli(*args, env=stack.client_env())
    assert r.returncode == 0, r.stderr


def status_json(home: Path, env: dict[str, str] | None = None) -> dict:
    r = run_cli("--home", str(home), "status", "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == TOP_KEYS and set(doc["backup"]) == BACKUP_KEYS
    assert set(doc["publication"]) == PUBLICATION_KEYS and set(doc["pending"]) == PENDING_KEYS
    return doc


@pytest.fixture(scope="module")
def device(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    address = stack.take_address()
    tmp = tmp_path_factory.mktemp("status")
    home, code = tmp / "home", tmp / "code.txt"
    setup_device(stack, home, address, code)
    return address, home, code


def test_fresh_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    doc = status_json(home)
    assert doc["account"] is None and doc["certificate"] is None and doc["keys"] == {}
    assert doc["backup"] == {"backup_pending": False, "backup_pending_reason": None, "backup_last_ok": None,
                             "backup_seq_seen": None, "last_verified": None}
    assert doc["publication"]["directory"] is None and doc["publication"]["published"] is None
    assert doc["pending"] == {"backup_queued": False, "renewal_due": False, "join_requests": [],
                              "join_checked": None, "publish_needed": False, "outbox": 0,
                              "invitations": []}
    assert doc["watch"] == {"last_tick": None}
    r = run_cli("--home", str(home), "status")
    assert r.returncode == 0 and r.stderr == ""
    for line in ("certificate: none active", "no backup made yet", "backup last verified: never",
                 "directory: none in use", "pending: nothing", "watch: never ran here"):
        assert line in r.stdout, r.stdout


def test_after_setup(stack: Stack, device: tuple[str, Path, Path]) -> None:
    address, home, code = device
    doc = status_json(home)
    cert = doc["certificate"]
    assert set(cert) == CERT_KEYS and cert["address"] == address
    assert cert["fingerprint"] == doc["encryption"]["fingerprint"] == doc["signing"]["fingerprint"]
    nb, na = dt.datetime.fromisoformat(cert["not_before"]), dt.datetime.fromisoformat(cert["not_after"])
    due = dt.datetime.fromisoformat(cert["renewal_due"])
    assert nb < due < na and not cert["expired"] and not cert["renewal_is_due"]
    assert 0 < cert["days_left"] <= (na - nb).days
    # no watch has asked the CA yet: the date is decide_renewal's rule without ARI, 2/3 of the lifetime
    assert cert["renewal_source"] == "2/3 of the lifetime" and cert["renewal_checked"] is None
    assert abs((due - (nb + (na - nb) * 2 / 3)).total_seconds()) < 1
    backup = doc["backup"]
    assert backup["backup_pending"] is False and backup["backup_last_ok"]
    verified = backup["last_verified"]
    assert verified["ok"] is True and verified["by"] == "backup" and verified["seq"] == backup["backup_seq_seen"]
    assert verified["at"] == backup["backup_last_ok"]
    assert doc["pending"]["backup_queued"] is False and doc["pending"]["renewal_due"] is False
    if stack.directory_url:
        pub = doc["publication"]
        assert pub["directory"] == stack.directory_url.rstrip("/")
        assert pub["published"] == cert["fingerprint"] and isinstance(pub["leaf_index"], int)
        assert pub["checkpoint_size"] and pub["checkpoint_size"] > pub["leaf_index"] and pub["checkpoint_seen"]
        assert doc["pending"]["publish_needed"] is False
    r = run_cli("--home", str(home), "status")
    assert r.returncode == 0, r.stderr
    assert f"for {address}, valid until {cert['not_after'][:10]}" in r.stdout and "days left)" in r.stdout
    assert "renewal: due from" in r.stdout and "(2/3 of the lifetime)" in r.stdout
    assert "backup last verified:" in r.stdout and "read back right after it was stored" in r.stdout
    assert "pending: nothing" in r.stdout
    if stack.directory_url:
        assert "published (log entry" in r.stdout and "directory log: size" in r.stdout
    assert code.read_text().strip() not in r.stdout


def test_queued_backup_is_pending_work_and_status_stays_offline(stack: Stack, device: tuple[str, Path, Path],
                                                                 tmp_path: Path) -> None:
    """A copy of the device whose mailbox is a socket nobody answers: `backup` queues, `status` says so,
    and `status` never connects (the socket sees no new connection)."""
    import shutil

    _address, original, _code = device
    home = tmp_path / "copy"
    shutil.copytree(original, home)
    trap = socket.create_server(("127.0.0.1", 0))
    trap.setblocking(False)
    try:
        account = load_account(home)
        save_account(home, dataclasses.replace(account, imap_port=trap.getsockname()[1]))
        r = run_cli("--home", str(home), "backup", env={"AUTOSMIME_TIMEOUT": "2"})
        assert "queued" in (r.stdout + r.stderr).lower() or "pending" in (r.stdout + r.stderr).lower(), r.stderr
        while True:   # the backup's attempts
            try:
                trap.accept()[0].close()
            except BlockingIOError:
                break
        doc = status_json(home)
        assert doc["backup"]["backup_pending"] is True and doc["pending"]["backup_queued"] is True
        assert doc["backup"]["backup_pending_reason"]
        plain = run_cli("--home", str(home), "status")
        assert plain.returncode == 0 and "pending: a queued backup" in plain.stdout, plain.stdout
        with pytest.raises(BlockingIOError):
            trap.accept()   # status connected to nothing
    finally:
        trap.close()
