"""``autosmime restore --join`` and ``autosmime approve`` as a script would drive them: two real processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autosmime.mailbox.imap import ImapMailbox
from autosmime.vault import join as jn
from autosmime.vault.recovery import load_code
from tests.vault import backup_support as support

pytestmark = pytest.mark.mailserver

_SAS = re.compile(r"\b(\d{4} \d{4} \d{4})\b")




def _cmd(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "autosmime", "--home", str(home), *args]


def _run(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(home, *args), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def _start_joiner(home: Path, *args: str) -> tuple[subprocess.Popen, str, list[str]]:
    """Start ``restore --join``; returns the process, C1 read from its stderr, and the lines read."""
    proc = subprocess.Popen(_cmd(home, "restore", "--join", *args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        found = _SAS.search(line)
        if found:
            return proc, found.group(1), lines
    proc.wait(timeout=30)
    pytest.fail("the joiner never showed a code: " + "".join(lines))


def test_cli_join_end_to_end_with_confirm_and_confirm_file(devices, tmp_path):
    old, new, account, password = devices
    confirm_file = tmp_path / "c2.txt"
    joiner, c1, lines = _start_joiner(new.home, "--timeout", "60", "--confirm-file", str(confirm_file))
    assert "autosmime approve" in lines[-1]

    approved = _run(old.home, "approve", "--confirm", c1.replace(" ", "-"))
    assert approved.returncode == 0, approved.stderr
    c2 = approved.stdout.strip()
    assert _SAS.fullmatch(c2) and c2 != c1 and c2 in approved.stderr
    time.sleep(0.5)  # the joiner is already polling for the file: it must wait, not fail
    confirm_file.write_text(c2 + "\n")

    out, err = joiner.communicate(timeout=90)
    assert joiner.returncode == 0, "".join(lines) + err
    assert "restored backup 1" in err and "2 keys" in err and out == ""
    code = load_code(old.home)
    assert load_code(new.home) == code
    assert all(code not in text for text in (out, err, "".join(lines), approved.stdout, approved.stderr))
    assert support.fingerprints(new) == support.fingerprints(old)
    with ImapMailbox.connect(account, password) as box:
        assert box.search_header(account.backup_folder, jn.JOIN_HEADER, "-v1") == []


def test_cli_approve_with_a_wrong_code_refuses_and_the_joiner_times_out(devices, tmp_path):
    old, new, account, password = devices
    snap = support.snapshot(new.home)
    joiner, c1, lines = _start_joiner(new.home, "--timeout", "4", "--confirm-file", str(tmp_path / "c2"))
    wrong = f"{(int(c1.replace(' ', '')) + 1) % 10**12:012d}"
    refused = _run(old.home, "approve", "--confirm", wrong)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip().splitlines()[-1].startswith("autosmime: error:")
    assert "nothing was sent" in refused.stderr
    with ImapMailbox.connect(account, password) as box:
        assert box.search_header(account.backup_folder, jn.JOIN_HEADER, jn.ANSWER_VALUE) == []

    out, err = joiner.communicate(timeout=60)
    assert joiner.returncode == 1 and out == ""
    assert err.strip().splitlines()[-1].startswith("autosmime: error:") and "withdrawn" in err
    assert support.snapshot(new.home) == snap
    none = _run(old.home, "approve", "--confirm", c1)  # the request is gone
    assert none.returncode == 1 and "no pending join request" in none.stderr


def test_cli_usage_errors(devices, tmp_path):
    old, new, _, _ = devices
    r = _run(old.home, "approve")  # no terminal, no --confirm
    assert r.returncode == 2 and "--confirm" in r.stderr
    r = _run(new.home, "restore", "--join")  # no terminal, no --confirm-file
    assert r.returncode == 2 and "--confirm-file" in r.stderr
    r = _run(new.home, "restore", "--join", "--recovery-code-file", str(tmp_path / "x"))
    assert r.returncode == 2
    r = _run(new.home, "restore", "--timeout", "5", "--recovery-code-file", str(tmp_path / "x"))
    assert r.returncode == 2 and "--join" in r.stderr
    unconfigured = tmp_path / "bare"
    os.makedirs(unconfigured)
    r = _run(unconfigured, "restore", "--join", "--confirm-file", str(tmp_path / "x"))
    assert r.returncode == 1 and "autosmime: error:" in r.stderr
