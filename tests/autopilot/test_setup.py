"""``autosmime setup`` end to end on the embedded stack (Dovecot + Postfix with DKIM + the CA + the directory).

A new user (enrols, backs up, publishes when the stack has a directory, hands the recovery code out once);
setup again (harmless: nothing changes); a second device for the same address (restores with the code and
reads mail encrypted to the first device's certificate); the refusals (no code: exit 4; a code but no
backup: exit 3; a wrong security mode: fails fast with the hint, nothing saved); a run that stopped resumes;
and at a terminal (a pty): the password asked with no echo and kept in a 0600 file (no keyring here), the
new recovery code shown exactly once. Discovery from a bundled provider entry is tested at unit level.
"""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from autosmime.errors import DiscoveryError
from autosmime.mailbox.account import load_account
from autosmime.mailbox.autoconfig import discover
from autosmime.vault.store import VAULT_FILE
from tests.autopilot.conftest import ROOT, Stack, run_cli

# --- discovery (unit level) ------------------------------------------------------------------


def _bundled(address: str):  # type: ignore[no-untyped-def]
    return discover(address, sources=("bundled",))


def test_settings_from_a_bundled_provider_entry() -> None:
    from autosmime.agent.setup import ServerGiven, resolve_account

    account, source = resolve_account("someone@gmx.net", ServerGiven(), _bundled)
    assert source == "bundled"
    assert (account.imap_host, account.imap_port, account.imap_security) == ("imap.gmx.net", 993, "tls")
    assert (account.smtp_host, account.smtp_port, account.smtp_security) == ("mail.gmx.net", 587, "starttls")
    assert account.security == "imap=tls,smtp=starttls" and account.username == "someone@gmx.net"
    account, _ = resolve_account("someone@gmail.com", ServerGiven(), _bundled)
    assert (account.smtp_host, account.smtp_port, account.security) == ("smtp.gmail.com", 465, "tls")


def test_given_settings_win_over_discovered_ones() -> None:
    from autosmime.agent.setup import ServerGiven, resolve_account

    account, source = resolve_account("someone@gmx.net", ServerGiven(imap=("imap.example.org", 143)), _bundled)
    assert source == "bundled"   # SMTP still from the entry
    assert (account.imap_host, account.imap_port, account.imap_security) == ("imap.example.org", 143, "starttls")
    assert (account.smtp_host, account.smtp_security) == ("mail.gmx.net", "starttls")
    account, source = resolve_account("me@example.test", ServerGiven(imap=("h", 993), smtp=("h", 465)), _bundled)
    assert (source, account.security) == ("given", "tls")
    account, _ = resolve_account("me@example.test", ServerGiven(imap=("h", 993), smtp=("h", 587),
                                                                 security="starttls"), _bundled)
    assert account.security == "starttls"


def test_nothing_discovered_says_what_to_give() -> None:
    from autosmime.agent.setup import ServerGiven, resolve_account

    with pytest.raises(DiscoveryError, match="give --imap, --smtp and --security"):
        resolve_account("me@nowhere.example", ServerGiven(), _bundled)


# --- end to end ------------------------------------------------------------------------------


def _setup_args(stack: Stack, home: Path, address: str, *extra: str, password: bool = True,
                directory: bool = True) -> list[str]:
    args = ["--home", str(home), "setup", address, "--imap", stack.env["IMAP"], "--smtp", stack.env["SMTP"],
            "--security", stack.env["SECURITY"], "--ca-file", stack.env["MAIL_CA_FILE"], "--ca", stack.env["CA_URL"]]
    if directory and stack.directory_url:
        args += ["--directory", stack.directory_url]
    if password:
        args += ["--password-file", str(stack.password_file(address))]
    return [*args, *extra]


def _setup(stack: Stack, home: Path, address: str, *extra: str, **kw: bool) -> subprocess.CompletedProcess[str]:
    return run_cli(*_setup_args(stack, home, address, *extra, **kw), env=stack.client_env())


def _backups(stack: Stack, home: Path) -> list[int]:
    from autosmime.mailbox.credentials import get_password
    from autosmime.mailbox.imap import ImapMailbox

    account = load_account(home)
    with ImapMailbox.connect(account, get_password(account, home)) as box:
        if not box.folder_exists(account.backup_folder):
            return []
        return box.search_header(account.backup_folder, "Subject", "")


def _fingerprints(home: Path) -> set[str]:
    from autosmime.vault.store import Vault

    return {e.fingerprint for e in Vault.open(home, create=False).entries()}


def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.stderr.startswith("autosmime: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


@pytest.fixture(scope="module")
def first_device(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path, dict]:
    """A new user set up on a first device: (address, home, recovery code file, setup --json outcome)."""
    address = stack.take_address()
    tmp = tmp_path_factory.mktemp("first")
    home, code_file = tmp / "home", tmp / "code.txt"
    r = _setup(stack, home, address, "--recovery-code-out", str(code_file), "--json")
    assert r.returncode == 0, r.stderr
    return address, home, code_file, json.loads(r.stdout)


def test_new_user_enrols_backs_up_publishes(stack: Stack, first_device: tuple[str, Path, Path, dict]) -> None:
    address, home, code_file, outcome = first_device
    assert outcome["address"] == address and outcome["changed"] is True
    assert outcome["account"] == {"saved_now": True, "settings_source": "given", "imap": stack.env["IMAP"],
                                  "smtp": stack.env["SMTP"], "security": stack.env["SECURITY"],
                                  "password_store": "password-file"}
    assert outcome["keys"]["from"] == "enrolled"
    sha = outcome["keys"]["certificate"]["sha256"]
    assert sha in _fingerprints(home)
    assert outcome["backup"]["state"] == "stored" and outcome["backup"]["seq"] == 1 and outcome["backup"]["keys"] == 1
    assert len(_backups(stack, home)) == 1
    if stack.directory_url:
        assert outcome["publication"] == {"state": "published", "directory": stack.directory_url, "sha256": sha}
        found = run_cli("--home", str(home), "lookup", address, "--trust", stack.env["CA_TRUST"], "--json",
                        env=stack.client_env())
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)["sha256"] == sha
    else:
        assert outcome["publication"]["state"] == "no-directory"
        assert any("not published" in n for n in outcome["notes"])
    # The code went to the file (0600) and nowhere else: no person at this terminal to show it to.
    code = code_file.read_text().strip()
    assert stat.S_IMODE(code_file.stat().st_mode) == 0o600
    assert outcome["recovery_code"] == {"shown": False, "file": str(code_file), "unseen": False}
    assert code and code not in json.dumps(outcome)
    assert load_account(home).password_file == str(stack.password_file(address))


def test_setup_again_changes_nothing(stack: Stack, first_device: tuple[str, Path, Path, dict]) -> None:
    address, home, code_file, first = first_device
    before = (_fingerprints(home), _backups(stack, home), (home / "account.json").read_bytes(),
              code_file.read_text())
    r = _setup(stack, home, address)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith(f"autosmime: {address} is already set up in {home}; nothing changed\n")
    assert "Next steps" not in r.stderr and r.stdout == ""
    r = _setup(stack, home, address, "--json")
    again = json.loads(r.stdout)
    assert again["changed"] is False and again["keys"]["from"] == "held" and again["backup"] is None
    assert again["account"]["saved_now"] is False and again["account"]["settings_source"] == "saved"
    assert again["keys"]["certificate"] == first["keys"]["certificate"]
    if stack.directory_url:
        assert again["publication"]["state"] == "held"
    after = (_fingerprints(home), _backups(stack, home), (home / "account.json").read_bytes(), code_file.read_text())
    assert after == before


def test_setup_again_with_other_settings_is_refused(stack: Stack, first_device: tuple[str, Path, Path, dict],
                                                    tmp_path: Path) -> None:
    address, home, _code, _ = first_device
    before = (home / "account.json").read_bytes()
    r = run_cli("--home", str(home), "setup", address, "--imap", "127.0.0.1:1", "--password-file",
                str(stack.password_file(address)), env=stack.client_env())
    assert r.returncode == 2 and "--imap" in _one_line(r)
    r = run_cli("--home", str(home), "setup", f"someone.else@{stack.domain}", env=stack.client_env())
    assert r.returncode == 2 and f"set up for {address}" in _one_line(r)
    assert (home / "account.json").read_bytes() == before


def test_second_device_restores_with_the_code_and_reads(stack: Stack, first_device: tuple[str, Path, Path, dict],
                                                        tmp_path: Path) -> None:
    from autosmime.smime.decrypt import decrypt
    from autosmime.smime.encrypt import encrypt
    from autosmime.vault.store import Vault

    address, home, code_file, first = first_device
    second = tmp_path / "second"
    backups_before = _backups(stack, home)

    # Without the code and with nobody at the terminal: exit 4, saying how to join instead.
    r = _setup(stack, second, address)
    assert r.returncode == 4, r.stderr
    assert "--recovery-code-file" in _one_line(r) and "restore --join" in r.stderr
    assert not (second / "account.json").exists() and not (second / VAULT_FILE).exists()   # nothing saved

    r = _setup(stack, second, address, "--recovery-code-file", str(code_file), "--json")
    assert r.returncode == 0, r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["keys"]["from"] == "restored"
    assert outcome["keys"]["certificate"] == first["keys"]["certificate"]
    assert outcome["restore"]["keys"] == 1 and outcome["restore"]["added"] == 1
    assert outcome["backup"] is None                       # the backup it read holds every key: none written
    if stack.directory_url:   # the first device published it: the log shows it, nothing is posted again
        assert outcome["publication"] == first["publication"] | {"state": "held"}
    assert _fingerprints(second) == _fingerprints(home)
    assert _backups(stack, home) == backups_before
    assert Vault.open(second, create=False).state.get("acme_default_ca") == stack.env["CA_URL"]   # renews there

    # Mail encrypted to the first device's certificate is read on the second.
    [cert] = [e.cert for e in Vault.open(home, create=False).entries()]
    plain = f"From: x@{stack.domain}\r\nTo: {address}\r\nSubject: hi\r\n\r\nfor both devices\r\n".encode()
    assert b"for both devices" in decrypt(encrypt(plain, [cert]), Vault.open(second).decryption_keys()).message

    # And on the second device too, setup again changes nothing.
    r = _setup(stack, second, address, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["changed"] is False


def test_a_code_but_no_backup_is_exit_3(stack: Stack, fresh_address: str, tmp_path: Path) -> None:
    code = tmp_path / "code.txt"
    code.write_text("AAAA-BBBB-CCCC-DDDD\n")
    r = _setup(stack, tmp_path / "home", fresh_address, "--recovery-code-file", str(code))
    assert r.returncode == 3, r.stderr
    assert "no key backup" in _one_line(r)
    assert not (tmp_path / "home" / "account.json").exists()


def test_wrong_security_mode_fails_fast_and_saves_nothing(stack: Stack, fresh_address: str, tmp_path: Path) -> None:
    mail = stack.mail
    home = tmp_path / "home"
    r = run_cli("--home", str(home), "setup", fresh_address, "--imap", f"127.0.0.1:{mail.imaps_port}",  # type: ignore[attr-defined]
                "--smtp", stack.env["SMTP"], "--security", "starttls", "--ca-file", stack.env["MAIL_CA_FILE"],
                "--ca", stack.env["CA_URL"], "--password-file", str(stack.password_file(fresh_address)),
                env={**stack.client_env(), "AUTOSMIME_TIMEOUT": "60"})
    assert r.returncode == 1
    assert "no plain-text greeting within 3 s" in _one_line(r) and "try --security tls (or imap=tls)" in r.stderr
    assert not (home / "account.json").exists()


def test_a_stopped_run_resumes(stack: Stack, fresh_address: str, tmp_path: Path) -> None:
    """The CA is down the first time: the account is saved, nothing else; the next run enrols."""
    from autosmime.devstack._procs import free_ports

    home = tmp_path / "home"
    args = _setup_args(stack, home, fresh_address, "--json")
    dead = args.copy()
    dead[dead.index("--ca") + 1] = f"http://127.0.0.1:{free_ports(1)[0]}/acme/directory"
    r = run_cli(*dead, env=stack.client_env())
    assert r.returncode == 1 and "cannot be reached" in _one_line(r)
    assert load_account(home).email == fresh_address
    r = run_cli(*args, "--recovery-code-out", str(tmp_path / "code.txt"), env=stack.client_env())
    assert r.returncode == 0, r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["account"]["saved_now"] is False and outcome["keys"]["from"] == "enrolled"
    assert outcome["backup"]["state"] == "stored"


def test_a_directory_down_leaves_the_publication_to_do_where_status_and_watch_see_it(
        stack: Stack, fresh_address: str, tmp_path: Path) -> None:
    """Keys and backup are done, the directory cannot be reached: one line naming the key directory, and the
    directory is remembered, so status shows the publication as pending work, watch (or setup again) does it."""
    from autosmime.devstack._procs import free_ports

    home = tmp_path / "home"
    closed = f"http://127.0.0.1:{free_ports(1)[0]}"
    r = _setup(stack, home, fresh_address, "--directory", closed, "--recovery-code-out", str(tmp_path / "code"))
    assert r.returncode == 1 and "key directory" in _one_line(r) and "Errno" not in r.stderr
    r = run_cli("--home", str(home), "status", "--json", env=stack.client_env())
    doc = json.loads(r.stdout)
    assert doc["publication"]["directory"] == closed and doc["pending"]["publish_needed"] is True, doc
    assert doc["backup"]["backup_last_ok"] is not None and (tmp_path / "code").exists()


def test_recovery_code_to_stdout(stack: Stack, fresh_address: str, tmp_path: Path) -> None:
    r = _setup(stack, tmp_path / "home", fresh_address, "--recovery-code-out", "-")
    assert r.returncode == 0, r.stderr
    [code] = r.stdout.splitlines()
    assert len(code.replace("-", "").replace(" ", "")) >= 16 and code not in r.stderr
    assert "Next steps:" in r.stderr


# --- at a terminal -----------------------------------------------------------------------------


def _run_in_pty(args: list[str], env: dict[str, str], answers: list[tuple[bytes, Any]],
                timeout: float = 180) -> tuple[int, bytes]:
    """Run with stdin/stdout/stderr on a pty; type each answer once its prompt appeared. (exit code, output).

    An answer may be a function of the output so far (it may act elsewhere first), returning what to type.
    """
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child
        try:
            os.execve(sys.executable, [sys.executable, "-m", "autosmime", *args],
                      {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **env})
        finally:
            os._exit(127)
    out = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:       # EIO: the child closed the pty
                break
            if not chunk:
                break
            out += chunk
        while pending and pending[0][0] in out:
            answer = pending.pop(0)[1]
            os.write(fd, answer(out) if callable(answer) else answer)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def test_at_a_terminal_password_asked_without_echo_and_code_shown_once(stack: Stack, fresh_address: str,
                                                                       tmp_path: Path) -> None:
    from autosmime.mailbox.credentials import keyring_available

    home = tmp_path / "home"
    password = stack.password(fresh_address)
    code, out = _run_in_pty(_setup_args(stack, home, fresh_address, password=False), stack.client_env(),
                            [(b"Password for ", password.encode() + b"\n")])
    text = out.decode(errors="replace")
    assert code == 0, text
    assert password not in text                                  # no echo
    from autosmime.vault.recovery import load_code

    recovery = load_code(home)
    assert recovery and text.count(recovery) == 1, text         # shown exactly once
    assert "Next steps:" in text
    if not keyring_available():                                  # kept in a 0600 file in the home
        saved = home / "mail-password"
        assert saved.read_text().strip() == password and stat.S_IMODE(saved.stat().st_mode) == 0o600
        assert load_account(home).password_file == str(saved)

    # Again at the terminal: nothing asked (the password is kept), the code not shown again.
    code, out = _run_in_pty(_setup_args(stack, home, fresh_address, password=False), stack.client_env(), [])
    text = out.decode(errors="replace")
    assert code == 0, text
    assert "nothing changed" in text and recovery not in text and "Password" not in text


def test_account_add_at_a_terminal_without_keyring_keeps_a_0600_file(stack: Stack, fresh_address: str,
                                                                    tmp_path: Path) -> None:
    """`account add` with no --password-file: asked with no echo, kept where setup keeps it."""
    from autosmime.mailbox.credentials import get_password, keyring_available

    if keyring_available():
        pytest.skip("this machine has an OS keyring: the password goes there")
    home = tmp_path / "home"
    password = stack.password(fresh_address)
    code, out = _run_in_pty(["--home", str(home), "account", "add", "--email", fresh_address, "--imap", stack.env["IMAP"],
                             "--smtp", stack.env["SMTP"], "--ca-file", stack.env["MAIL_CA_FILE"]], {},
                            [(b"Password for ", password.encode() + b"\n")])
    text = out.decode(errors="replace")
    assert code == 0, text
    assert password not in text and "(0600; there is no OS keyring)" in text
    saved = home / "mail-password"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    account = load_account(home)
    assert account.password_file == str(saved) and get_password(account, home) == password
    r = run_cli("--home", str(tmp_path / "other"), "account", "add", "--email", fresh_address, "--imap",
                stack.env["IMAP"], "--smtp", stack.env["SMTP"])
    assert r.returncode == 2 and "pass --password-file" in _one_line(r)


def test_set_up_helper_makes_a_ready_device(stack: Stack, tmp_path: Path) -> None:
    """The conftest helper other autopilot tests start from: a device with an active certificate."""
    from autosmime.vault.store import Vault
    from tests.autopilot.conftest import set_up

    home = tmp_path / "dev"
    address = set_up(stack, home)
    assert Vault.open(home, create=False).encryption_pair(address).cert
    assert (tmp_path / "dev-recovery-code").read_text().strip()


def test_at_a_terminal_enter_instead_of_the_code_joins_from_the_other_device(
        stack: Stack, first_device: tuple[str, Path, Path, dict], tmp_path: Path) -> None:
    """Enter at the recovery-code prompt: the new device asks the first one, the person compares both codes."""
    import re

    address, home, _code_file, _ = first_device
    second = tmp_path / "joined"
    approved: list[str] = []

    def approve_there(out: bytes) -> bytes:
        c1 = re.search(rb"check it shows: (\d{4} \d{4} \d{4})", out)
        assert c1 is not None, out
        r = run_cli("--home", str(home), "approve", "--confirm", c1.group(1).decode(), env=stack.client_env())
        assert r.returncode == 0, r.stderr
        approved.append(r.stdout.strip())      # C2, as the first device shows it
        return b""

    code, out = _run_in_pty(_setup_args(stack, second, address, "--join-timeout", "120"), stack.client_env(),
                            [(b"press Enter", b"\n"), (b"waiting up to", approve_there),
                             (b"Does it show exactly this code?", b"y\n")])
    text = out.decode(errors="replace")
    assert code == 0, text
    assert approved and f"should now show: {approved[0]}" in text
    assert "the recovery code came from your other device" in text
    from autosmime.vault.recovery import load_code

    assert load_code(second) == load_code(home)


def test_a_recovery_code_out_that_cannot_be_written_is_refused_before_anything_happens(
        stack: Stack, fresh_address: str, tmp_path: Path) -> None:
    """Before: setup enrolled and backed up, then failed writing the code (exit 1), the new code marked seen."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for bad in (tmp_path, blocker / "code.txt"):
        home = tmp_path / f"home-{len(str(bad))}"
        r = _setup(stack, home, fresh_address, "--recovery-code-out", str(bad))
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "--recovery-code-out" in r.stderr and "Traceback" not in r.stderr
        assert not (home / "account.json").exists() and not (home / VAULT_FILE).exists()
