"""``autosmime watch``, the background agent, on the embedded stack.

Unit level (in process, :class:`Watcher` with an injected clock): a certificate that is due is renewed
(the renewal answers its own ACME challenge from INBOX), the old backup record is re-checked, the new
certificate is published, and the decision is recorded so the next tick does not renew again.
As a subprocess, as systemd runs it: it stops on SIGTERM with exit 0; it retries a queued backup once the
mailbox is back, and survives the mailbox refusing connections meanwhile; it survives a mailbox that
accepts and never answers, and SIGTERM still stops it at once; a home with no account is a fatal
configuration error (exit 1, one line). The only time bounds are generous ones for "stops".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autosmime.mailbox.account import load_account, save_account
from tests.autopilot.conftest import ROOT, Stack, run_cli
from tests.autopilot.test_status import setup_device, status_json

STOP_BOUND = 30.0     # "within a few seconds", generously


@pytest.fixture
def device(stack: Stack, fresh_address: str, tmp_path: Path) -> tuple[str, Path, Path]:
    home, code = tmp_path / "home", tmp_path / "code.txt"
    setup_device(stack, home, fresh_address, code)
    return fresh_address, home, code


def _start(stack: Stack, home: Path, **env: str) -> subprocess.Popen[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **stack.client_env(), **env}
    full.pop("AUTOSMIME_HOME", None)
    return subprocess.Popen([sys.executable, "-m", "autosmime", "--home", str(home), "watch"], env=full,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(ROOT))


@pytest.fixture
def watches() -> Iterator[list[subprocess.Popen[str]]]:
    """Watch processes a test started; any still running at the end are killed."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=30)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=STOP_BOUND)
    return proc.returncode, err


def _until(check, what: str, timeout: float = 120.0, proc: subprocess.Popen[str] | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the watch exited ({proc.returncode}) before {what}: {proc.communicate()[1]}")
        time.sleep(0.5)
    pytest.fail(f"no {what} within {timeout:.0f} s")


# --- unit level: one tick with an injected clock ------------------------------------------------


def test_tick_renews_a_due_certificate_and_publishes_it(stack: Stack, device: tuple[str, Path, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from autosmime.agent import Agent
    from autosmime.agent.status import status
    from autosmime.agent.watch import Watcher

    monkeypatch.setenv("AUTOSMIME_DNS_ZONE", stack.env["DNS_ZONE"])
    address, home, _code = device
    agent = Agent(home)
    before = status(agent)
    assert before.certificate is not None
    old = before.certificate.fingerprint
    # past the end of the CA's ARI window (2/3 to 5/6 of a 365-day certificate: days 243-304), before expiry:
    # the renewal point the client draws inside the window is always behind us
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=320)
    events = Watcher(agent, clock=lambda: later).tick()
    kinds = [e.kind for e in events]
    assert "renewed" in kinds, [e.text for e in events]
    assert not any(k.endswith("-failed") for k in kinds), [e.text for e in events]
    assert "backup-verified" in kinds     # its last verification is 320 days old by that clock

    after = status(Agent(home), now=later)
    assert after.certificate is not None and after.certificate.fingerprint != old
    assert after.certificate.address == address and not after.backup.queued
    assert after.backup.last_verified is not None and after.backup.last_verified.ok
    assert after.watch_last_tick is not None
    if stack.directory_url:
        assert "published" in kinds
        assert after.publication.published == after.certificate.fingerprint
        assert after.publication.last_check is not None and after.publication.last_check.ok
    # the old key stays (retired), the new one is in the newest backup
    doc = status_json(home)
    assert doc["keys"].get("active") == 1 and sum(doc["keys"].values()) == 2
    assert doc["backup"]["last_verified"]["ok"] is True

    # at today's date the new certificate is not due: the CA is asked (ARI) and nothing is renewed
    events = Watcher(Agent(home)).tick()
    kinds = [e.kind for e in events]
    assert "renewed" not in kinds and not any(k.endswith("-failed") for k in kinds), [e.text for e in events]
    doc = status_json(home)
    assert doc["certificate"]["renewal_checked"] is not None and doc["certificate"]["renewal_is_due"] is False
    assert doc["certificate"]["fingerprint"] == after.certificate.fingerprint


def test_two_watching_devices_renew_once(stack: Stack, device: tuple[str, Path, Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Both devices of one account run watch; the second finds the first's renewal in the backups and takes it."""
    from autosmime.agent import Agent
    from autosmime.agent.status import status
    from autosmime.agent.watch import Watcher

    monkeypatch.setenv("AUTOSMIME_DNS_ZONE", stack.env["DNS_ZONE"])
    address, home_a, code = device
    home_b = tmp_path / "b"
    r = run_cli("--home", str(home_b), "setup", address, "--imap", stack.env["IMAP"], "--smtp", stack.env["SMTP"],
                "--security", stack.env["SECURITY"], "--ca-file", stack.env["MAIL_CA_FILE"], "--ca", stack.env["CA_URL"],
                "--password-file", str(stack.password_file(address)), "--recovery-code-file", str(code),
                env=stack.client_env())
    assert r.returncode == 0, r.stderr                                  # b restored a's key with the code
    old = status(Agent(home_b)).certificate.fingerprint
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=320)   # past the ARI window, before expiry
    kinds_a = [e.kind for e in Watcher(Agent(home_a), clock=lambda: later).tick()]
    assert "renewed" in kinds_a
    renewed = status(Agent(home_a), now=later).certificate.fingerprint
    events_b = Watcher(Agent(home_b), clock=lambda: later).tick()
    kinds_b = [e.kind for e in events_b]
    assert "renewed" not in kinds_b and "renewed-elsewhere" in kinds_b, [e.text for e in events_b]
    assert status(Agent(home_b), now=later).certificate.fingerprint == renewed != old
    assert status_json(home_b)["keys"] == status_json(home_a)["keys"] == {"active": 1, "retired": 1}


def test_a_certificate_published_for_me_by_someone_else_is_reported(stack: Stack, device: tuple[str, Path, Path],
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone with access to the mailbox (not one of my devices: no recovery code, so nothing of theirs
    reaches my backups) enrols and publishes a certificate for my address: the watch's directory check
    reports it, and status shows it."""
    from autosmime.agent import Agent
    from autosmime.agent.watch import Watcher

    if not stack.directory_url:
        pytest.skip("the stack has no key directory")
    monkeypatch.setenv("AUTOSMIME_DNS_ZONE", stack.env["DNS_ZONE"])
    address, home, _code = device
    intruder = tmp_path / "intruder"
    r = run_cli("--home", str(intruder), "account", "add", "--email", address, "--imap", stack.env["IMAP"],
                "--smtp", stack.env["SMTP"], "--security", stack.env["SECURITY"], "--ca-file",
                stack.env["MAIL_CA_FILE"], "--password-file", str(stack.password_file(address)))
    assert r.returncode == 0, r.stderr
    r = run_cli("--home", str(intruder), "enroll", "--ca", stack.env["CA_URL"], env=stack.client_env())
    assert r.returncode == 0, r.stderr
    r = run_cli("--home", str(intruder), "publish", "--directory", stack.directory_url, env=stack.client_env())
    assert r.returncode == 0, r.stderr
    theirs = json.loads(run_cli("--home", str(intruder), "status", "--json").stdout)["certificate"]["fingerprint"]

    watcher = Watcher(Agent(home))
    watcher._directory_now = True       # the 6-hourly check, now
    events = watcher.tick()
    swapped = [e for e in events if e.kind == "certificate-swapped"]
    assert swapped and theirs[:16] in swapped[0].text, [e.text for e in events]
    doc = status_json(home)
    check = doc["publication"]["last_check"]
    assert check["ok"] is False and check["foreign"] == [theirs] and "never held" in check["problem"]
    plain = run_cli("--home", str(home), "status").stdout
    assert "warning: the directory check of" in plain and "never held" in plain


def test_a_forked_log_is_reported_and_changes_nothing(stack: Stack, device: tuple[str, Path, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The directory's log no longer matches the checkpoint this device kept (a rewritten history): the watch
    reports it as an error, records it for status, publishes nothing and keeps its pinned view."""
    import base64

    from autosmime.agent import Agent
    from autosmime.agent.watch import Watcher

    if not stack.directory_url:
        pytest.skip("the stack has no key directory")
    monkeypatch.setenv("AUTOSMIME_DNS_ZONE", stack.env["DNS_ZONE"])
    _address, home, _code = device
    [witness] = (home / "directory").glob("*.json")
    state = json.loads(witness.read_text())
    assert state["size"] > 0
    # What a fork looks like from here: the same size, another root (our view is the one the server rewrote).
    state["root_b64"] = base64.b64encode(bytes(32)).decode()
    witness.write_text(json.dumps(state))
    before = witness.read_bytes()

    watcher = Watcher(Agent(home))
    watcher._directory_now = True
    events = watcher.tick()
    forked = [e for e in events if e.kind == "log-inconsistent"]
    assert forked and "history was rewritten" in forked[0].text, [e.text for e in events]
    assert "published" not in [e.kind for e in events]
    assert witness.read_bytes() == before          # the pinned view is not replaced by the server's
    check = status_json(home)["publication"]["last_check"]
    assert check["ok"] is False and "log" in check["problem"]
    assert "warning: the directory check of" in run_cli("--home", str(home), "status").stdout


def test_a_join_request_is_reported_and_not_approved(stack: Stack, device: tuple[str, Path, Path], tmp_path: Path,
                                                    watches: list[subprocess.Popen[str]]) -> None:
    from autosmime.agent import Agent
    from autosmime.agent.watch import Watcher

    address, home, _code = device
    new = tmp_path / "new-device"
    r = run_cli("--home", str(new), "account", "add", "--email", address, "--imap", stack.env["IMAP"],
                "--smtp", stack.env["SMTP"], "--security", stack.env["SECURITY"], "--ca-file",
                stack.env["MAIL_CA_FILE"], "--password-file", str(stack.password_file(address)))
    assert r.returncode == 0, r.stderr
    full = {**os.environ, "PYTHONPATH": str(ROOT)}
    full.pop("AUTOSMIME_HOME", None)
    args = ["--home", str(new), "restore", "--join", "--timeout", "120", "--confirm-file", str(tmp_path / "unwritten")]
    joining = subprocess.Popen([sys.executable, "-m", "autosmime", *args], env=full, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    watches.append(joining)
    watcher = Watcher(Agent(home))

    def noticed() -> list[str]:
        watcher._joins_at = None     # the 2-minute check, now
        return [e.text for e in watcher.tick() if e.kind == "join-request"]

    [text] = _until(noticed, "join request noticed", proc=joining)  # the new device waits meanwhile
    assert "autosmime approve" in text
    doc = status_json(home)
    assert len(doc["pending"]["join_requests"]) == 1 and doc["pending"]["join_checked"]
    assert "a join request from device" in run_cli("--home", str(home), "status").stdout
    assert noticed() == []           # reported once, not on every check
    assert joining.poll() is None    # still waiting: the watch approves nothing
    joining.terminate()
    joining.communicate(timeout=STOP_BOUND)
    assert status_json(new)["keys"] == {} and not status_json(new)["recovery_code_stored"]   # nothing came in


def test_idle_wait_ends_when_mail_arrives(stack: Stack, device: tuple[str, Path, Path]) -> None:
    import threading

    from autosmime.agent import Agent
    from autosmime.agent.watch import Watcher
    from autosmime.mailbox.imap import ImapMailbox

    address, home, _code = device
    watcher = Watcher(Agent(home))
    account = load_account(home)

    def deliver() -> None:
        time.sleep(1.0)
        with ImapMailbox.connect(account, stack.password(address)) as box:
            box.append("INBOX", f"From: {address}\r\nTo: {address}\r\nSubject: wake\r\n\r\nhi\r\n".encode())

    sender = threading.Thread(target=deliver)
    sender.start()
    try:
        assert watcher.wait(120) is True      # False would be the IDLE timing out
    finally:
        sender.join()
        watcher._drop_idle()
    assert watcher.wait(0.5) is False         # nothing new: the wait times out


def test_backoff_is_bounded_with_jitter() -> None:
    import random

    from autosmime.agent.watch import Intervals, Watcher

    w = Watcher.__new__(Watcher)
    w.intervals, w.rng = Intervals(backoff_min=5, backoff_max=900), random.Random(1)
    delays = [w.backoff(n) for n in range(1, 40)]
    assert all(2.5 <= d <= 900 for d in delays) and delays[0] <= 7.5 and max(delays) > 400
    assert len({round(d, 3) for d in delays[-10:]}) > 1       # jittered, not one fixed value


def test_systemd_unit_is_printed(tmp_path: Path) -> None:
    r = run_cli("--home", str(tmp_path / "h"), "watch", "--print-systemd-unit")
    assert r.returncode == 0, r.stderr
    assert f"--home {tmp_path / 'h'} watch" in r.stdout and "[Service]" in r.stdout
    assert "Restart=on-failure" in r.stdout and "WantedBy=default.target" in r.stdout


def test_no_account_is_a_fatal_configuration_error(tmp_path: Path) -> None:
    r = run_cli("--home", str(tmp_path / "h"), "watch", timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("autosmime: error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr


# --- as a subprocess --------------------------------------------------------------------------


def test_watch_works_then_stops_on_sigterm(stack: Stack, device: tuple[str, Path, Path],
                                           watches: list[subprocess.Popen[str]]) -> None:
    _address, home, code = device
    proc = _start(stack, home)
    watches.append(proc)
    _until(lambda: status_json(home)["watch"]["last_tick"], "round of work", proc=proc)
    doc = status_json(home)
    assert doc["pending"]["join_checked"] and doc["certificate"]["renewal_checked"]   # it asked the CA (ARI)
    started = time.monotonic()
    rc, err = _stop(proc)
    assert rc == 0, err
    assert time.monotonic() - started < STOP_BOUND
    assert "Traceback" not in err and "watching" in err and "stopped" in err
    assert code.read_text().strip() not in err and stack.password(_address) not in err


def test_queued_backup_is_retried_once_the_mailbox_is_back(stack: Stack, device: tuple[str, Path, Path],
                                                            watches: list[subprocess.Popen[str]]) -> None:
    from autosmime.devstack.faultproxy import CuttingProxy

    _address, home, _code = device
    account = load_account(home)
    with CuttingProxy(account.imap_host, account.imap_port) as proxy:
        save_account(home, dataclasses.replace(account, imap_port=proxy.port))
        proxy.cut_after(0)    # the mailbox is down: every connection is reset at once
        r = run_cli("--home", str(home), "backup")
        assert status_json(home)["backup"]["backup_pending"] is True, r.stderr
        proc = _start(stack, home, AUTOSMIME_TIMEOUT="3")
        watches.append(proc)
        _until(lambda: proxy.cuts >= 3, "three refused connections", proc=proc)
        assert proc.poll() is None     # server trouble is never fatal
        assert status_json(home)["backup"]["backup_pending"] is True
        proxy.cut_after(None)          # the mailbox is back
        _until(lambda: not status_json(home)["backup"]["backup_pending"], "retried backup", timeout=180, proc=proc)
        doc = status_json(home)
        assert doc["pending"]["backup_queued"] is False and doc["backup"]["last_verified"]["ok"] is True
        rc, err = _stop(proc)
    assert rc == 0, err
    assert "trying again in" in err and "the queued key backup was stored" in err, err
    assert "Traceback" not in err


def test_a_mailbox_that_never_answers_does_not_stop_it_and_sigterm_still_does(
        stack: Stack, device: tuple[str, Path, Path], watches: list[subprocess.Popen[str]]) -> None:
    from autosmime.devstack.faultproxy import SilentServer

    _address, home, _code = device
    account = load_account(home)
    with SilentServer() as silent:
        save_account(home, dataclasses.replace(account, imap_port=silent.port))
        proc = _start(stack, home, AUTOSMIME_TIMEOUT="2")
        watches.append(proc)
        _until(lambda: silent.connections >= 3, "three hung connections", proc=proc)
        assert proc.poll() is None
        rc, err = _stop(proc)       # most likely while it waits on the silent server
    assert rc == 0, err
    assert "timed out" in err and "Traceback" not in err, err
    assert json.loads(run_cli("--home", str(home), "status", "--json").stdout)["watch"]["last_tick"]


def test_the_watch_lets_in_a_device_that_joins_with_its_invitation(stack: Stack, device: tuple[str, Path, Path],
                                                                   tmp_path: Path,
                                                                   watches: list[subprocess.Popen[str]]) -> None:
    """`invite` on the old device, `watch` running there, `setup --invite` on the new one: no code compared,
    every key restored; the invitation is used up, so a third device with the same code gets nothing."""
    address, home, _code = device
    r = run_cli("--home", str(home), "invite", "--json")
    assert r.returncode == 0, r.stderr
    invitation = json.loads(r.stdout)
    assert set(invitation) == {"code", "id", "expires"}
    watch = _start(stack, home)
    watches.append(watch)

    def setup_with(target: Path, code: str, timeout: str) -> subprocess.CompletedProcess[str]:
        args = ["--home", str(target), "setup", address, "--imap", stack.env["IMAP"], "--smtp", stack.env["SMTP"],
                "--security", stack.env["SECURITY"], "--ca-file", stack.env["MAIL_CA_FILE"],
                "--password-file", str(stack.password_file(address)), "--invite", code, "--join-timeout", timeout,
                "--json"]
        return run_cli(*args, env=stack.client_env())

    new = tmp_path / "new-device"
    r = setup_with(new, invitation["code"].lower(), "120")
    assert r.returncode == 0, r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["keys"]["from"] == "restored" and outcome["restore"]["keys"] >= 1
    assert any("invitation" in note for note in outcome["notes"])
    assert status_json(new)["keys"] == status_json(home)["keys"]
    assert status_json(new)["recovery_code_stored"]
    listed = run_cli("--home", str(home), "invite", "--list", "--json")
    assert json.loads(listed.stdout) == {"invitations": []}          # used up

    third = tmp_path / "third-device"
    r = setup_with(third, invitation["code"], "6")
    assert r.returncode == 1 and "no approval within 6 s" in r.stderr, r.stderr
    assert r.stderr.count("\n") >= 1 and "Traceback" not in r.stderr
    assert not (third / "account.json").exists()                        # nothing saved on the refused device

    code, err = _stop(watch)
    assert code == 0, err
    assert err.count("joined this account with an invitation") == 1, err


def test_invite_command_contract(stack: Stack, device: tuple[str, Path, Path], tmp_path: Path) -> None:
    address, home, _code = device
    r = run_cli("--home", str(home), "invite", "--valid", "2")
    assert r.returncode == 0, r.stderr
    [code] = r.stdout.split()
    assert len(code) == 29 and f"setup {address} --invite CODE" in r.stderr and code not in r.stderr
    doc = json.loads(run_cli("--home", str(home), "invite", "--list", "--json").stdout)
    assert len(doc["invitations"]) == 1 and "secret" not in json.dumps(doc) and code not in json.dumps(doc)
    assert status_json(home)["pending"]["invitations"] == doc["invitations"]
    assert "an open invitation for a new device, until" in run_cli("--home", str(home), "status").stdout
    assert "valid until" in run_cli("--home", str(home), "invite", "--list").stderr
    r = run_cli("--home", str(home), "invite", "--cancel")
    assert r.returncode == 0 and "cancelled 1 open invitation" in r.stderr, r.stderr
    for bad in (["--valid", "200"], ["--list", "--cancel"]):
        r = run_cli("--home", str(home), "invite", *bad)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and r.stderr.startswith("autosmime:"), r.stderr
    r = run_cli("--home", str(tmp_path / "nothing"), "invite")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    # a mistyped code on the new device: exit 2 before anything is posted or saved
    typo = code[:-1] + ("0" if code[-1] != "0" else "1")
    new = tmp_path / "new"
    r = run_cli("--home", str(new), "setup", address, "--imap", stack.env["IMAP"], "--smtp", stack.env["SMTP"],
                "--security", stack.env["SECURITY"], "--ca-file", stack.env["MAIL_CA_FILE"],
                "--password-file", str(stack.password_file(address)), "--invite", typo, env=stack.client_env())
    assert r.returncode == 2 and "typo" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert not new.exists() or not (new / "account.json").exists()
