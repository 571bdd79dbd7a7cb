"""One prefix on every stderr line, plurals, JSON objects on stdout, and progress only on a terminal."""

from __future__ import annotations

import io
import json

from autosmime.cli._output import Progress, plural, progress
from autosmime.vault.store import Vault
from tests.cli import support
from tests.cli.support import run

ALICE = "alice@example.test"


def test_plural():
    assert [plural(n, "key") for n in (0, 1, 2)] == ["0 keys", "1 key", "2 keys"]
    assert plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") == "3 entries"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_and_nothing_elsewhere():
    plain = io.StringIO()
    with progress("importing alice.p12 ...", plain) as p:
        p.update("backing up ...")
        assert not p.active
    assert plain.getvalue() == ""
    tty = _Terminal()
    with progress("importing alice.p12 ...", tty) as p:
        assert p.active
        asked = p.paused(lambda: "answer")()  # a prompt stops the spinner and gets its answer
    assert asked == "answer" and "importing alice.p12" in tty.getvalue()


def test_progress_on_a_closed_stream_is_silent():
    closed = io.StringIO()
    closed.close()
    assert not Progress("x", closed).active


def _assert_prefixed(stderr: str) -> None:
    lines = stderr.splitlines()
    assert lines and all(line.startswith("autosmime: ") for line in lines), stderr


def test_import_and_export_speak_with_one_prefix_and_json(tmp_path):
    home = tmp_path / "home"
    support.offline_account(home, ALICE)
    p12 = support.p12(tmp_path / "a.p12", support.ca_issued(ALICE))
    r = run(home, "import", str(p12), "--password-file", str(tmp_path / "pw"))
    assert r.returncode == 0 and r.stdout == ""
    _assert_prefixed(r.stderr)
    assert "autosmime: imported 1 new key: alice@example.test" in r.stderr
    assert "key backup pending" in r.stderr
    assert "autosmime: Next steps:" in r.stderr and f"autosmime --home {home} keys" in r.stderr

    again = run(home, "import", str(p12), "--password-file", str(tmp_path / "pw"), "--json")
    doc = json.loads(again.stdout)
    assert again.returncode == 0 and doc["new"] == [] and doc["backup"]["state"] == "pending"
    assert set(doc) == {"file", "new", "backup"} and "Next steps" not in again.stderr

    r = run(home, "export", "--out", str(tmp_path / "export"))
    assert r.returncode == 0 and r.stdout == ""
    _assert_prefixed(r.stderr)
    assert "autosmime: exported 1 key to " in r.stderr
    r = run(home, "export", "--out", str(tmp_path / "export2"), "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["keys"] == 1 and doc["legacy"] is False
    assert doc["password_file"] == str(tmp_path / "export2" / "export-password.txt")
    assert all((tmp_path / "export2").joinpath(p).exists() for p in doc["files"])


def test_json_import_of_a_kept_back_key_names_the_active_one(tmp_path):
    home = tmp_path / "home"
    ca = support.ca_issued(ALICE)
    Vault.open(home).add(*ca)
    stopgap = support.self_signed(ALICE)
    r = run(home, "import", str(support.p12(tmp_path / "s.p12", stopgap)), "--password-file", str(tmp_path / "pw"),
            "--json")
    assert r.returncode == 0, r.stderr
    (new,) = json.loads(r.stdout)["new"]
    from autosmime.pki.certs import fingerprint

    assert new["status"] == "retired" and new["kept_active"] == fingerprint(ca[1])


def test_import_on_a_terminal_shows_progress_on_stderr_only(tmp_path):
    import os
    import pty
    import select
    import subprocess
    import sys

    home = tmp_path / "home"
    support.offline_account(home, ALICE)
    p12 = support.p12(tmp_path / "a.p12", support.ca_issued(ALICE))
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "autosmime", "--home", str(home), "import", str(p12),
                             "--password-file", str(tmp_path / "pw")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    while select.select([master], [], [], 120)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == 0
    assert b"importing a.p12" in shown and b"imported 1 new key" in shown
    assert out == b""


def test_a_home_without_an_account_points_at_setup(tmp_path):
    """The one command that sets a device up is `setup`; `account add` alone gives no keys to send with."""
    for args in (("inbox",), ("send", "--to", "bob@example.test", "--subject", "x")):
        r = run(tmp_path / "home", *args, input="body\n")
        assert r.returncode == 1 and r.stdout == "", r
        _assert_prefixed(r.stderr)
        assert "autosmime setup ADDRESS" in r.stderr and len(r.stderr.splitlines()) == 1


def test_a_key_directory_that_cannot_be_reached_is_named_in_plain_words(tmp_path):
    """Not 'http://...: [Errno 111] Connection refused': which server it is, and what happened."""
    from autosmime.devstack._procs import free_ports

    closed = f"http://127.0.0.1:{free_ports(1)[0]}"
    r = run(tmp_path / "home", "lookup", "zed@example.test", "--directory", closed)
    assert r.returncode == 1 and r.stdout == "" and len(r.stderr.splitlines()) == 1, r
    assert r.stderr == f"autosmime: error: the key directory {closed} cannot be reached: connection refused\n"
