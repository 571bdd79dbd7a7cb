"""``backup`` and ``restore`` with ``--json`` and ``--recovery-code-out -``, against the real Dovecot."""

from __future__ import annotations

import json

import pytest

from autosmime.vault.recovery import load_code
from tests.cli.support import run
from tests.vault import backup_support as support

pytestmark = pytest.mark.mailserver


def test_backup_code_to_stdout_then_restore_json(mailstack, mail_user, tmp_path):
    email, password = mail_user
    account = mailstack.account(email)
    old = support.make_device(tmp_path, "old", account, password, keys=2)
    r = run(old.home, "backup", "--recovery-code-out", "-")
    code = load_code(old.home)
    assert r.returncode == 0, r.stderr
    assert r.stdout == code + "\n" and code not in r.stderr  # alone on stdout, for a script to keep
    assert r.stderr == "autosmime: key backup 1 stored (2 keys)\n"
    assert not (tmp_path / "-").exists()

    r = run(old.home, "backup", "--json", "--recovery-code-out", "-")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["state"] == "stored" and doc["seq"] == 2 and doc["keys"] == 2
    assert doc["recovery_code"] == code and doc["code_created"] is False and doc["unauthentic"] == 0
    r = run(old.home, "backup", "--json")
    assert "recovery_code" not in json.loads(r.stdout)

    new = support.make_device(tmp_path, "new", account, password)
    (tmp_path / "code").write_text(code + "\n")
    r = run(new.home, "restore", "--recovery-code-file", str(tmp_path / "code"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc == {"seq": 3, "created": doc["created"], "keys": 2, "added": 2, "skipped": 0, "unauthentic": 0}
    assert r.stderr == ""
