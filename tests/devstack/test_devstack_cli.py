"""``autosmime devstack up|down`` through the CLI: eval the output, enrol with the CLI, nothing left running."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autosmime.devstack import _procs
from autosmime.devstack.mailserver import dovecot_available

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("IMAP", "SMTP", "SECURITY", "MAIL_CA_FILE", "DOMAIN", "USERS", "PASSWORDS_DIR", "CA_URL", "CA_TRUST")


def _cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _autosmime(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autosmime", *args], capture_output=True, text=True,
                          timeout=timeout, env=_cli_env(**env), stdin=subprocess.DEVNULL)


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    if not dovecot_available():
        pytest.skip("dovecot is not installed")
    try:
        import autosmime.servers.ca.server  # noqa: F401
    except ImportError:
        pytest.skip("the CA server is not there yet")
    base = Path(tempfile.mkdtemp(prefix="autosmime-devstack-cli-"))
    os.chmod(base, 0o755)
    try:
        yield base / "stack"
    finally:
        if (base / "stack" / "devstack.json").exists():      # a failed test must not leave servers behind
            _autosmime("devstack", "down", "--dir", str(base / "stack"))
        shutil.rmtree(base, ignore_errors=True)


def _all_pids(stack: Path) -> set[int]:
    """Every process the stack started: the recorded services, the mail masters and all their children."""
    state = json.loads((stack / "devstack.json").read_text())
    mail = json.loads((stack / "mail" / "mailstack.json").read_text())
    roots = {int(p) for p in state["pids"]} | {int(p) for p in mail["pids"]}
    found = {p for p in roots if _procs.alive(p)}
    for pid in list(found):
        found |= _procs.descendants(pid)
    return found


@pytest.mark.parametrize("smtp_kind", ["postfix", "relay"])
def test_up_eval_enroll_down(stack_dir: Path, tmp_path: Path, smtp_kind: str) -> None:
    if smtp_kind == "postfix" and os.geteuid() != 0:
        pytest.skip("Postfix runs only as root; the relay is the rootless SMTP")
    up = _autosmime("devstack", "up", "--dir", str(stack_dir), "--users", "alice,bob",
                    AUTOSMIME_MAILSTACK_SMTP=smtp_kind)
    assert up.returncode == 0, up.stderr
    keys = [line.split("=", 1)[0] for line in up.stdout.splitlines()]
    assert set(KEYS) <= set(keys)
    pids = _all_pids(stack_dir)
    assert len(pids) >= 3          # dovecot, the CA, postfix + the DKIM signer or the signing relay (+ children)

    # A second `up` on the same DIR is an error and changes nothing.
    again = _autosmime("devstack", "up", "--dir", str(stack_dir))
    assert again.returncode == 1 and "already started" in again.stderr and again.stdout == ""
    assert _all_pids(stack_dir) == pids

    # What a user does: eval the assignments, add the account, enrol.
    home = tmp_path / "home"
    script = """
set -eu
eval "$1"
test "$USERS" = "alice@$DOMAIN bob@$DOMAIN"
addr="alice@$DOMAIN"
"$2" -m autosmime --home "$3" account add --email "$addr" --imap "$IMAP" --smtp "$SMTP" \\
    --security "$SECURITY" --ca-file "$MAIL_CA_FILE" --password-file "$PASSWORDS_DIR/$addr" >/dev/null
AUTOSMIME_DNS_ZONE="$DNS_ZONE" "$2" -m autosmime --home "$3" enroll --ca "$CA_URL"
openssl verify -partial_chain -CAfile "$CA_TRUST" "$CA_TRUST" >/dev/null
"""
    run = subprocess.run(["sh", "-c", script, "sh", up.stdout, sys.executable, str(home)], capture_output=True,
                         text=True, timeout=180, env=_cli_env(), stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("enrolled alice@example.test: issued by ")

    down = _autosmime("devstack", "down", "--dir", str(stack_dir))
    assert down.returncode == 0, down.stderr
    assert not [p for p in pids if _procs.alive(p)]
    assert not (stack_dir / "devstack.json").exists()

    # down again: nothing to stop is an error, said in one line.
    again = _autosmime("devstack", "down", "--dir", str(stack_dir))
    assert again.returncode == 1 and again.stderr.startswith("autosmime: error: no devstack state")


def test_up_refuses_a_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("mine")
    r = _autosmime("devstack", "up", "--dir", str(tmp_path))
    assert r.returncode == 1 and "is not empty" in r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["x"]


def test_up_rejects_bad_user_names(stack_dir: Path) -> None:
    r = _autosmime("devstack", "up", "--dir", str(stack_dir), "--users", "al ice")
    assert r.returncode == 1 and "bad user name" in r.stderr
    assert not (stack_dir / "devstack.json").exists()
