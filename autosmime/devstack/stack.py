"""The embedded stack: mail (Dovecot + DKIM-signing SMTP), a DNS zone file and the CA, on loopback.

    >>> from autosmime.devstack.stack import up, down
    >>> env = up(Path("/tmp/stack"), users=["alice", "bob"])   # doctest: +SKIP
    >>> env["CA_URL"]                                          # doctest: +SKIP
    'http://127.0.0.1:40123/acme/directory'
    >>> down(Path("/tmp/stack"))                               # doctest: +SKIP

Layout of DIR: ``mail/`` (the :class:`MailStack`, with its own state file),
``dns.zone`` (the mail domain's and the CA's DKIM keys, absolute names),
``passwords/<address>`` (0600), ``ca/`` (``ca init``'s directory, SQLite
database, log), ``directory/`` (the key directory's SQLite database and log key) and ``devstack.json`` (every PID started, with a marker that
must still be in its command line before it is signalled, and the printed
environment).

Services: each entry of :data:`SERVICES` is a :class:`Service` whose
``routes`` (optional) names mail domains the SMTP server must hand to it and
whose ``start`` launches it with :meth:`DevStack.launch` and returns the
``KEY=VALUE`` lines it adds. Adding a server (e.g. the key directory) is one
more Service in that list.

``up`` on a DIR whose stack is running is an error (nothing is changed);
``down`` stops everything ``up`` started, services first, then mail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autosmime.devstack import _procs
from autosmime.devstack.mailserver import MailStack, MailStackError, _check_traversable

STATE_FILE = "devstack.json"
CA_DOMAIN = "ca.example.test"
DEFAULT_USERS = ("alice", "bob")


class DevStackError(MailStackError):
    """The embedded stack could not be started, found or stopped."""


@dataclass
class Service:
    """One server of the stack besides mail."""

    name: str
    start: Callable[[DevStack], dict[str, str]]
    routes: Callable[[DevStack], dict[str, int]] = lambda stack: {}


@dataclass
class DevStack:
    base: Path
    mail: MailStack | None = None
    pids: dict[int, str] = field(default_factory=dict)       # pid -> marker in its command line
    env: dict[str, str] = field(default_factory=dict)
    ca_db: str | None = None          # the CA's SQLAlchemy URL (default: SQLite in DIR/ca)
    _ports: dict[str, int] = field(default_factory=dict)

    def port(self, name: str) -> int:
        """A free loopback port reserved under ``name`` (the same one on every call)."""
        if name not in self._ports:
            taken = set(self._ports.values())
            self._ports[name] = next(p for p in _procs.free_ports(4) if p not in taken)
        return self._ports[name]

    def launch(self, name: str, argv: Sequence[str], *, ready_port: int, marker: str,
               ready_line: bytes | None = None, timeout: float = 30) -> int:
        """Start ``argv`` as a daemon (own session, log in DIR/<name>.log) and wait until
        127.0.0.1:ready_port accepts; records the PID for ``down``."""
        log = open(self.base / f"{name}.log", "ab")
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=self.base, env=self._env_for_children())
        log.close()
        self.pids[proc.pid] = marker
        deadline = time.monotonic() + timeout
        while not _procs.banner(ready_port, ready_line):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {proc.returncode}" if proc.returncode is not None else "did not answer"
                raise DevStackError(f"{name} {why}\n{_procs.log_tail(self.base / f'{name}.log')}")
            time.sleep(0.05)
        return proc.pid

    def python(self, *args: str) -> list[str]:
        """argv running this autosmime's CLI (the same interpreter and source tree)."""
        return [sys.executable, "-m", "autosmime", *args]

    def _env_for_children(self) -> dict[str, str]:
        root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH", "")
        return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


# --- the CA ---------------------------------------------------------------------------------


def _ca_routes(stack: DevStack) -> dict[str, int]:
    return {CA_DOMAIN: stack.port("ca-inbound")}


def _ca_start(stack: DevStack) -> dict[str, str]:
    assert stack.mail is not None
    ca_dir = stack.base / "ca"
    init = subprocess.run(stack.python("ca", "init", "--dir", str(ca_dir), "--name", "autosmime devstack CA",
                                       "--domain", CA_DOMAIN),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120, env=stack._env_for_children())
    if init.returncode != 0:
        raise DevStackError(f"ca init failed: {init.stderr.decode(errors='replace').strip()}")
    # One zone for everything: the stack's mail domain and the CA's challenge-mail domain.
    zone = stack.base / "dns.zone"
    with open(zone, "a") as out:
        out.write((ca_dir / "dns.zone").read_text())
    http = stack.port("ca-http")
    db = stack.ca_db or f"sqlite:///{ca_dir / 'ca.sqlite'}"
    argv = stack.python("ca", "serve", "--dir", str(ca_dir), "--db", db,
                        "--listen", f"127.0.0.1:{http}", "--smtp", f"127.0.0.1:{stack.mail._ports.relay}",
                        "--inbound-smtp", f"127.0.0.1:{stack.port('ca-inbound')}", "--dns-zone", str(zone))
    stack.launch("ca", argv, ready_port=http, marker=str(ca_dir))
    deadline = time.monotonic() + 30
    while not _procs.banner(stack.port("ca-inbound"), b"220"):
        if time.monotonic() > deadline:
            raise DevStackError(f"the CA's inbound SMTP did not answer\n{_procs.log_tail(stack.base / 'ca.log')}")
        time.sleep(0.05)
    return {"CA_URL": f"http://127.0.0.1:{http}/acme/directory", "CA_TRUST": str(ca_dir / "ca.pem")}


# --- the key directory ------------------------------------------------------------------------


def _directory_start(stack: DevStack) -> dict[str, str]:
    """The key directory on SQLite, trusting the stack's CA; its fresh certificates skip the mail round trip."""
    assert stack.mail is not None
    ca_dir, directory = stack.base / "ca", stack.base / "directory"
    directory.mkdir(mode=0o700, exist_ok=True)
    http = stack.port("directory-http")
    url = f"http://127.0.0.1:{http}"
    argv = stack.python("directory", "serve", "--db", f"sqlite:///{directory / 'directory.sqlite'}",
                        "--listen", f"127.0.0.1:{http}", "--trust", str(ca_dir / "ca.pem"),
                        "--fast-path-ca", str(ca_dir / "issuing.pem"), "--smtp", f"127.0.0.1:{stack.mail._ports.relay}",
                        "--log-key", str(directory / "log.key"), "--public-url", url,
                        "--mail-from", f"keys@{stack.mail.domain}")
    stack.launch("directory", argv, ready_port=http, marker=str(directory))
    return {"DIRECTORY_URL": url}


#: Everything besides mail, in start order.
SERVICES: list[Service] = [Service("ca", _ca_start, _ca_routes), Service("directory", _directory_start)]


# --- up / down --------------------------------------------------------------------------------


def _load(base: Path) -> dict | None:
    try:
        return json.loads((base / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise DevStackError(f"unreadable devstack state in {base}: {e}") from None


def _running(state: dict) -> list[int]:
    return [int(pid) for pid, marker in state.get("pids", {}).items()
            if _procs.alive(int(pid)) and marker in _procs.cmdline(int(pid))]


def up(base: Path, users: Sequence[str] = DEFAULT_USERS, *, ca_db: str | None = None) -> dict[str, str]:
    """Start the whole stack in ``base``; returns the environment it printed. Daemons keep running.

    ``ca_db``: the CA's database URL (e.g. PostgreSQL for the tests); SQLite by default.
    """
    base = Path(base).absolute()
    if not users:
        raise DevStackError("--users: at least one user")
    state = _load(base)
    if state is not None:
        raise DevStackError(f"a devstack was already started in {base} (run `autosmime devstack down --dir "
                            f"{base}` first)")
    if base.exists() and any(base.iterdir()):
        raise DevStackError(f"{base} is not empty")
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    _check_traversable(base)
    stack = DevStack(base, ca_db=ca_db)
    try:
        routes: dict[str, int] = {}
        for service in SERVICES:
            routes.update(service.routes(stack))
        stack.mail = MailStack.start(base / "mail", names=list(users), pool=0, dkim=True, routes=routes)
        stack.mail.detach()
        _write_state(stack)          # from here on, `down` can clean up even if a service fails
        mail = stack.mail
        (base / "dns.zone").write_text("; DKIM keys of the devstack's domains (absolute names)\n$ORIGIN .\n"
                                       + mail.dkim_record())
        passwords = base / "passwords"
        passwords.mkdir(mode=0o700)
        addresses = []
        for name in mail._named:
            address, password = mail.user(name)
            (passwords / address).touch(mode=0o600)
            (passwords / address).write_text(password + "\n")
            addresses.append(address)
        stack.env = {
            "IMAP": f"127.0.0.1:{mail.imap_port}",
            "SMTP": f"127.0.0.1:{mail.smtp_port}",
            "SECURITY": "starttls",
            "MAIL_CA_FILE": mail.ca_file,
            "DOMAIN": mail.domain,
            "USERS": " ".join(addresses),
            "PASSWORDS_DIR": str(passwords),
            "DNS_ZONE": str(base / "dns.zone"),
        }
        for service in SERVICES:
            stack.env.update(service.start(stack))
            _write_state(stack)
    except BaseException as e:
        _stop(stack.pids, base / "mail" if stack.mail is not None else None)
        (base / STATE_FILE).unlink(missing_ok=True)
        if isinstance(e, MailStackError):
            raise DevStackError(str(e)) from None
        if isinstance(e, (OSError, subprocess.SubprocessError)):
            raise DevStackError(f"devstack failed to start: {e}") from None
        raise
    return dict(stack.env)


def _write_state(stack: DevStack) -> None:
    state = {"pids": {str(pid): marker for pid, marker in stack.pids.items()}, "env": stack.env,
             "ports": stack._ports}
    path = stack.base / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def _stop(pids: dict[int, str], mail_dir: Path | None) -> None:
    _procs.terminate(pids)
    if mail_dir is not None and (mail_dir / "mailstack.json").exists():
        MailStack.attach(mail_dir).stop()


def down(base: Path) -> None:
    """Stop everything ``up`` started in ``base`` (by recorded PID); the files stay for inspection."""
    base = Path(base).absolute()
    state = _load(base)
    if state is None:
        raise DevStackError(f"no devstack state in {base}; nothing to stop")
    _stop({int(pid): marker for pid, marker in state.get("pids", {}).items()}, base / "mail")
    (base / STATE_FILE).unlink(missing_ok=True)


def remove(base: Path) -> None:
    """Delete a stopped stack's directory."""
    shutil.rmtree(base, ignore_errors=True)
