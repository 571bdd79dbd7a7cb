"""The embedded stack (Dovecot + Postfix with DKIM + zone file + the CA on SQLite) for the enrolment tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autosmime.devstack.mailserver import dovecot_available

ROOT = Path(__file__).resolve().parents[2]


def ca_available() -> bool:
    try:
        import autosmime.servers.ca.server  # noqa: F401
    except ImportError:
        return False
    return True


def _stack(ca_db: str | None = None) -> Iterator[dict[str, str]]:
    if not dovecot_available():
        pytest.skip("dovecot is not installed")
    if not ca_available():
        pytest.skip("the CA server (autosmime.servers.ca) is not there yet")
    from autosmime.devstack.stack import down, up

    # In the system temp dir, not pytest's 0700 tmp_path: Dovecot's unprivileged processes must reach it.
    base = Path(tempfile.mkdtemp(prefix="autosmime-devstack-"))
    os.chmod(base, 0o755)
    env = up(base / "stack", users=["alice", "bob", "carol", "dave", "erin", "frank"], ca_db=ca_db)
    try:
        yield {**env, "DIR": str(base / "stack")}
    finally:
        down(base / "stack")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def devstack() -> Iterator[dict[str, str]]:
    """The stack with the CA on SQLite."""
    yield from _stack()


@pytest.fixture(scope="session")
def devstack_pg(postgres_url: str) -> Iterator[dict[str, str]]:
    """The stack with the CA on PostgreSQL."""
    yield from _stack(postgres_url)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "autosmime", *args], capture_output=True, text=True,
                          timeout=timeout, env=full, stdin=subprocess.DEVNULL)


def add_account(home: Path, stack: dict[str, str], name: str) -> str:
    """``account add`` for NAME@DOMAIN on the stack; returns the address."""
    address = f"{name}@{stack['DOMAIN']}"
    r = run_cli("--home", str(home), "account", "add", "--email", address, "--imap", stack["IMAP"],
                "--smtp", stack["SMTP"], "--security", stack["SECURITY"], "--ca-file", stack["MAIL_CA_FILE"],
                "--password-file", str(Path(stack["PASSWORDS_DIR"]) / address))
    assert r.returncode == 0, r.stderr
    return address
