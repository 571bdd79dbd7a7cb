"""One recovery code per account, from the command line: shown once on a terminal, exit 4 on a second device,
`recovery-code show`, the `status` warning, `recovery-code rotate` (real processes, real Dovecot)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from autosmime.pki.pkcs12 import build_pfx
from autosmime.vault.recovery import load_code
from tests.vault import backup_support as support

pytestmark = pytest.mark.mailserver


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def _on_a_terminal(home: Path, *args: str) -> tuple[int, str]:
    """Run with stdin and stderr on a pseudo-terminal (a person at the keyboard); returns (exit code, what it showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "autosmime", "--home", str(home), *args], stdin=slave,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(timeout=120), shown.decode(errors="replace")


def _p12(tmp_path: Path, email: str, name: str) -> Path:
    key, cert, chain = support.new_pair(email)
    path = tmp_path / f"{name}.p12"
    path.write_bytes(build_pfx([(key, cert, chain)], b"pw", iterations=1000))
    return path


@pytest.fixture
def two_devices(mailstack, mail_user, tmp_path):
    email, password = mail_user
    (tmp_path / "pw").write_text("pw\n")
    a = support.make_device(tmp_path, "a", mailstack.account(email), password)
    b = support.make_device(tmp_path, "b", mailstack.account(email), password)
    return a.home, b.home, email, (tmp_path, mailstack.account(email), password)


def test_the_new_code_is_shown_once_on_a_terminal_and_a_second_device_gets_exit_4(two_devices, tmp_path):
    a, b, email, _ = two_devices
    status, shown = _on_a_terminal(a, "import", str(_p12(tmp_path, email, "k1")), "--password-file",
                                   str(tmp_path / "pw"))
    code = load_code(a)
    assert status == 0 and code in shown and "key backup 1 stored" in shown
    status, shown = _on_a_terminal(a, "import", str(_p12(tmp_path, email, "k2")), "--password-file",
                                   str(tmp_path / "pw"))
    assert status == 0 and code not in shown  # once only
    assert "warning" not in _cli(a, "status").stdout

    r = _cli(b, "import", str(_p12(tmp_path, email, "k3")), "--password-file", str(tmp_path / "pw"))
    assert r.returncode == 4 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "restore" in r.stderr
    assert load_code(b) is None and _cli(b, "keys", "--json").stdout.count('"fingerprint"') == 0
    r = _cli(b, "restore", "--recovery-code-file", str(_write(tmp_path / "code", code)))
    assert r.returncode == 0, r.stderr
    r = _cli(b, "import", str(_p12(tmp_path, email, "k3")), "--password-file", str(tmp_path / "pw"))
    assert r.returncode == 0 and "key backup 3 stored (3 keys)" in r.stderr, r.stderr


def _write(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    return path


def test_status_warns_until_the_code_is_shown_and_rotate_replaces_it(two_devices, tmp_path):
    a, b, email, (root, account, password) = two_devices
    r = _cli(a, "import", str(_p12(tmp_path, email, "k1")), "--password-file", str(tmp_path / "pw"))
    assert r.returncode == 0 and "key backup 1 stored" in r.stderr
    code = load_code(a)
    assert code not in r.stderr + r.stdout  # nobody at a terminal: not printed
    assert "warning: the recovery code was never shown" in _cli(a, "status").stdout
    shown = _cli(a, "recovery-code", "show")
    assert shown.returncode == 0 and shown.stdout.strip() == code
    assert "warning" not in _cli(a, "status").stdout

    r = _cli(b, "restore", "--recovery-code-file", str(_write(tmp_path / "old", code)))
    assert r.returncode == 0, r.stderr
    r = _cli(a, "recovery-code", "rotate", "--recovery-code-out", str(tmp_path / "new"))
    assert r.returncode == 0, r.stderr
    new = (tmp_path / "new").read_text().strip()
    assert new == load_code(a) != code and new not in r.stderr
    r = _cli(b, "backup")
    assert r.returncode == 4 and "do not open with this device's recovery code" in r.stderr
    # b's code is stale: `show` checks it against the mailbox and does not hand it out as if it worked.
    stale = _cli(b, "recovery-code", "show")
    assert stale.returncode == 1 and stale.stdout == "" and "rotated on another device" in stale.stderr
    assert len(stale.stderr.splitlines()) == 1
    offline = _cli(b, "recovery-code", "show", "--offline")
    assert offline.returncode == 0 and offline.stdout.strip() == code
    current = json.loads(_cli(a, "recovery-code", "show", "--json").stdout)
    assert current == {"recovery_code": new, "opens_backups": True, "backups": 1, "detail": None}
    fresh = support.make_device(root, "fresh", account, password).home
    r = _cli(fresh, "restore", "--recovery-code-file", str(tmp_path / "old"))
    assert r.returncode == 1 and "recovery code does not open" in r.stderr
    r = _cli(fresh, "restore", "--recovery-code-file", str(tmp_path / "new"))
    assert r.returncode == 0 and "1 key (" in r.stderr, r.stderr
    # rotate --json (as backup --json), the new code in it with --recovery-code-out -
    r = _cli(a, "recovery-code", "rotate", "--recovery-code-out", "-", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["state"] == "stored" and doc["code_created"] and doc["recovery_code"] == load_code(a) != new
