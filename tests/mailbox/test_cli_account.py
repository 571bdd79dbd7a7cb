"""`autosmime account add/show` as a user runs it: a subprocess against the loopback stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.mailserver


def run(home, *args, env_extra=None):
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=60, env=env)


def add_args(mailstack, email, pwfile, *extra):
    return ["account", "add", "--email", email, "--imap", f"127.0.0.1:{mailstack.imap_port}",
            "--smtp", f"127.0.0.1:{mailstack.smtp_port}", "--password-file", str(pwfile),
            "--ca-file", mailstack.ca_file, *extra]


def test_add_then_show(mailstack, mail_user, tmp_path):
    email, password = mail_user
    pwfile = tmp_path / "pw"
    pwfile.write_text(password + "\n")
    home = tmp_path / "home"
    result = run(home, *add_args(mailstack, email, pwfile))
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    shown = run(home, "account", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["email"] == email and data["imap_port"] == mailstack.imap_port
    assert data["security"] == "starttls" and data["password_file"] == str(pwfile)
    assert password not in (home / "account.json").read_text()
    # The saved account works for the library.
    from autosmime.mailbox import ImapMailbox, get_password, load_account

    acct = load_account(home)
    with ImapMailbox.connect(acct, get_password(acct, home)) as box:
        assert "INBOX" in box.list_folders()
    human = run(home, "account", "show")
    assert human.returncode == 0 and email in human.stdout


def test_add_tls_mode(mailstack, mail_user, tmp_path):
    email, password = mail_user
    pwfile = tmp_path / "pw"
    pwfile.write_text(password)
    result = run(tmp_path / "home", "account", "add", "--email", email, "--imap", f"127.0.0.1:{mailstack.imaps_port}",
                 "--smtp", f"127.0.0.1:{mailstack.smtps_port}", "--password-file", str(pwfile),
                 "--security", "tls", "--ca-file", mailstack.ca_file)
    assert result.returncode == 0, result.stderr


def test_wrong_password_saves_nothing(mailstack, mail_user, tmp_path):
    email, password = mail_user
    pwfile = tmp_path / "pw"
    pwfile.write_text("not-" + password)
    home = tmp_path / "home"
    result = run(home, *add_args(mailstack, email, pwfile))
    assert result.returncode == 1
    assert "rejected the login" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not-" + password not in result.stderr
    assert not (home / "account.json").exists()
    assert run(home, "account", "show").returncode == 1


def test_unreachable_and_untrusted_save_nothing(mailstack, mail_user, tmp_path):
    from autosmime.devstack._procs import free_ports

    email, password = mail_user
    pwfile = tmp_path / "pw"
    pwfile.write_text(password)
    home = tmp_path / "home"
    (port,) = free_ports(1)
    result = run(home, "account", "add", "--email", email, "--imap", f"127.0.0.1:{port}", "--smtp", "127.0.0.1:25",
                 "--password-file", str(pwfile))
    assert result.returncode == 1 and "refused" in result.stderr
    result = run(home, *add_args(mailstack, email, pwfile)[:-2])          # no --ca-file: system roots
    assert result.returncode == 1 and "certificate" in result.stderr
    assert not home.exists() or not (home / "account.json").exists()


def test_usage_errors(mailstack, tmp_path):
    home = tmp_path / "home"
    no_pw = run(home, "account", "add", "--email", "a@example.test", "--imap", "127.0.0.1:143",
                "--smtp", "127.0.0.1:25")
    assert no_pw.returncode == 2 and "password-file" in no_pw.stderr
    pwfile = tmp_path / "pw"
    pwfile.write_text("x")
    bad_port = run(home, "account", "add", "--email", "a@example.test", "--imap", "127.0.0.1:http",
                   "--smtp", "127.0.0.1:25", "--password-file", str(pwfile))
    assert bad_port.returncode == 2
    for value in ("127.0.0.1:38465:99999", "mail example:143", "[mail.example.test]:143", "127.0.0.1:0"):
        bad_host = run(home, "account", "add", "--email", "a@example.test", "--imap", value,
                       "--smtp", "127.0.0.1:25", "--password-file", str(pwfile))
        assert bad_host.returncode == 2 and bad_host.stderr.startswith("autosmime: error: --imap: "), bad_host
        assert len(bad_host.stderr.splitlines()) == 1
    bad_security = run(home, *add_args(mailstack, "a@example.test", pwfile, "--security", "ssl"))
    assert bad_security.returncode == 2
    remote_plain = run(home, "account", "add", "--email", "a@example.org", "--imap", "192.0.2.1:143",
                       "--smtp", "192.0.2.1:25", "--password-file", str(pwfile), "--security", "plain")
    assert remote_plain.returncode == 1 and "loopback" in remote_plain.stderr
    assert not home.exists() or not (home / "account.json").exists()


def test_a_wrong_smtp_server_saves_nothing(mailstack, mail_user, tmp_path):
    """IMAP works but --smtp points at a closed port: caught at setup, not at the first send."""
    import socket

    email, password = mail_user
    pwfile = tmp_path / "pw"
    pwfile.write_text(password + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    args = add_args(mailstack, email, pwfile)
    args[args.index("--smtp") + 1] = f"127.0.0.1:{closed}"
    home = tmp_path / "home"
    result = run(home, *args)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "SMTP" in result.stderr
    assert not (home / "account.json").exists()
