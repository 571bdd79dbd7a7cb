"""The embedded stack for the autopilot tests (issue 13): `autosmime devstack up` once per session, `down` at the end.

``stack`` (session): a :class:`Stack`: the printed environment (``stack.env``: IMAP, SMTP, SECURITY,
MAIL_CA_FILE, DOMAIN, USERS, PASSWORDS_DIR, DNS_ZONE, CA_URL, CA_TRUST, and DIRECTORY_URL once the
stack has a directory), the mail servers attached (``stack.mail``, for the implicit-TLS ports), and
a pool of provisioned users.
``fresh_address`` (function): an address no test has used yet: an empty mailbox, no backup, no
certificate. Its password file is ``stack.password_file(address)``.

``set_up(stack, home)`` runs ``autosmime setup`` for a fresh address in ``home`` (enrolled, backed up,
published when the stack has a directory) and returns the address: a ready device for send/read tests.

``run_cli(*args)`` runs ``python -m autosmime`` as a user would (no terminal on stdin unless
``input`` is given), with the stack's DNS zone for DKIM checks.

The stack is started through the real command (`autosmime devstack up --dir ...`, output evaluated
as KEY=VALUE lines), so these tests drive exactly what a user's shell does.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: provisioned at start: the demo's two, then a pool for one-address-per-test
NAMED_USERS = ("alice", "bob")
POOL_SIZE = 30


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``autosmime ARGS`` in a subprocess; stdin is empty (not a terminal) unless ``input`` is given."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full.pop("AUTOSMIME_HOME", None)
    return subprocess.run([sys.executable, "-m", "autosmime", *args], capture_output=True, text=True,
                          timeout=timeout, env=full, input=input if input is not None else "",
                          cwd=str(ROOT))


@dataclass
class Stack:
    dir: Path
    env: dict[str, str]
    mail: object                           # autosmime.devstack.mailserver.MailStack, attached
    _pool: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def domain(self) -> str:
        return self.env["DOMAIN"]

    @property
    def directory_url(self) -> str | None:
        return self.env.get("DIRECTORY_URL")

    def client_env(self) -> dict[str, str]:
        """What a client on this stack needs in its environment: the zone file answering DKIM look-ups."""
        return {"AUTOSMIME_DNS_ZONE": self.env["DNS_ZONE"]}

    def password_file(self, address: str) -> Path:
        return Path(self.env["PASSWORDS_DIR"]) / address

    def password(self, address: str) -> str:
        return self.password_file(address).read_text().strip()

    def take_address(self) -> str:
        """A provisioned address no test has had yet."""
        with self._lock:
            if not self._pool:
                pytest.fail(f"the autopilot stack's pool of {POOL_SIZE} users is used up; raise POOL_SIZE")
            return self._pool.pop(0)


def _up(base: Path, users: list[str]) -> dict[str, str]:
    r = run_cli("devstack", "up", "--dir", str(base), "--users", ",".join(users), timeout=240)
    if r.returncode != 0:
        raise RuntimeError(f"devstack up failed ({r.returncode}): {r.stderr.strip()}")
    env: dict[str, str] = {}
    for line in r.stdout.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            [env[key]] = shlex.split(value) or [""]
    return env


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The whole embedded stack (mail with DKIM, zone file, CA, and the directory when it has one)."""
    from autosmime.devstack.mailserver import MailStack, dovecot_available

    if not dovecot_available():
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd; .ci/run does this)")
    # In the system temp dir, not pytest's 0700 tmp_path: Dovecot's unprivileged processes must reach it.
    tmp = Path(tempfile.mkdtemp(prefix="autosmime-autopilot-"))
    os.chmod(tmp, 0o755)
    base = tmp / "stack"
    pool = [f"user{i:02d}" for i in range(1, POOL_SIZE + 1)]
    try:
        env = _up(base, [*NAMED_USERS, *pool])
        try:
            yield Stack(base, env, MailStack.attach(base / "mail"),
                        [f"{name}@{env['DOMAIN']}" for name in pool])
        finally:
            r = run_cli("devstack", "down", "--dir", str(base), timeout=120)
            assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def fresh_address(stack: Stack) -> str:
    return stack.take_address()


def set_up(stack: Stack, home: Path, address: str | None = None, *extra: str) -> str:
    """``autosmime --home HOME setup`` for ``address`` (a fresh one by default) on the stack; returns the address.

    The recovery code goes to ``HOME.parent / (HOME.name + "-recovery-code")`` (0600).
    """
    address = address or stack.take_address()
    args = ["--home", str(home), "setup", address, "--imap", stack.env["IMAP"], "--smtp", stack.env["SMTP"],
            "--security", stack.env["SECURITY"], "--ca-file", stack.env["MAIL_CA_FILE"], "--ca", stack.env["CA_URL"],
            "--password-file", str(stack.password_file(address)),
            "--recovery-code-out", str(home.parent / f"{home.name}-recovery-code")]
    if stack.directory_url:
        args += ["--directory", stack.directory_url]
    r = run_cli(*args, *extra, env=stack.client_env())
    assert r.returncode == 0, r.stderr
    return address


# --- set-up users, for the send / inbox / read tests (appended by the 'mail' helper) ---------------


@dataclass
class User:
    """A user set up with :func:`set_up` (enrolled, backed up, published when the stack has a directory)."""

    address: str
    home: Path

    @property
    def code_file(self) -> Path:
        return self.home.parent / f"{self.home.name}-recovery-code"

    def args(self, *more: str) -> list[str]:
        return ["--home", str(self.home), *more]


def set_up_user(stack: Stack, base: Path) -> User:
    """A fresh address set up on a new device in ``base / "home"``."""
    home = base / "home"
    return User(set_up(stack, home), home)


@pytest.fixture(scope="session")
def correspondents(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[User, User]:
    """Two users set up on the stack (each enrolled, backed up and published): (alice-like, bob-like)."""
    return (set_up_user(stack, tmp_path_factory.mktemp("sender")),
            set_up_user(stack, tmp_path_factory.mktemp("recipient")))
