"""A private loopback mail stack (Dovecot IMAP/LMTP + Postfix SMTP) for tests and the demo.

    >>> from autosmime.devstack.mailserver import MailStack
    >>> stack = MailStack.start()                          # doctest: +SKIP
    >>> email, password = stack.fresh_user()               # doctest: +SKIP
    >>> account = stack.account(email)                     # doctest: +SKIP
    >>> stack.stop()                                       # doctest: +SKIP

Everything (config, TLS CA, users, maildirs, queues, logs) lives in one
directory; every listener is on 127.0.0.1. As root, Postfix provides SMTP
AUTH and delivers over LMTP; without root or without Postfix a small
aiosmtpd relay does the same job. Settings and traps:
shared/research/mail-test-servers.md.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autosmime.devstack import _dkim, _dovecot, _postfix, _procs
from autosmime.devstack._tls import make_server_tls
from autosmime.errors import MailboxError
from autosmime.mailbox.account import Account

DOVECOT = _dovecot.DOVECOT
DOVEADM = "/usr/bin/doveadm"
STATE_FILE = "mailstack.json"
ENV_FILE = "mailstack.env"
NAMED_USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")


class MailStackError(MailboxError):
    """The loopback mail stack could not be started or used."""


def dovecot_available() -> bool:
    return os.path.exists(DOVECOT) and os.path.exists("/usr/lib/dovecot/imap") and os.path.exists(
        "/usr/lib/dovecot/lmtp"
    )


@dataclass
class _Ports:
    imap: int
    imaps: int
    lmtp: int
    auth: int
    smtp: int
    smtps: int
    relay: int
    submission: int | None
    dkim_filter: int | None = None     # Postfix's content filter that DKIM-signs (devstack)
    reinject: int | None = None        # Postfix's filter-free port the signer re-injects into


class MailStack:
    """A running Dovecot + Postfix (or relay) pair. Use :meth:`start`, then :meth:`stop`."""

    domain = "example.test"

    def __init__(self, base: Path, ports: _Ports, smtp_kind: str, owns_dir: bool,
                 routes: dict[str, int] | None = None, dkim: bool = False) -> None:
        self.base = base
        self._ports = ports
        self.imap_port = ports.imap
        self.imaps_port = ports.imaps
        self.lmtp_port = ports.lmtp
        self.smtp_port = ports.smtp
        self.smtps_port = ports.smtps
        self.submission_port = ports.submission
        self.smtp_kind = smtp_kind             # "postfix" or "relay"
        self.ca_file = str(base / "tls" / "ca.pem")
        self.conf = str(base / "dovecot.conf")
        self._owns_dir = owns_dir
        self._users: dict[str, str] = {}       # local part -> password
        self._named: list[str] = []
        self._pool: list[str] = []
        self._lock = threading.Lock()
        self._pids: dict[int, str] = {}        # pid -> marker expected in its command line
        self._children: list[subprocess.Popen] = []
        self._stopped = False
        self.routes = dict(routes or {})       # other domains -> loopback SMTP port (e.g. the CA's inbound)
        self.dkim = dkim                       # outgoing mail From our domain is DKIM-signed
        self.dkim_selector = _dkim.SELECTOR
        self.dkim_key = str(base / "dkim" / "key.pem")

    # --- lifecycle -----------------------------------------------------------------

    @classmethod
    def start(cls, base_dir: Path | None = None, users: int = 3, pool: int = 200, *,
              names: Sequence[str] | None = None, dkim: bool = False,
              routes: dict[str, int] | None = None) -> MailStack:
        """Start the stack in ``base_dir`` (default: a new dir in the system temp dir).

        ``names`` replaces the default named users; ``dkim`` signs outgoing mail From
        the stack's domain (key in ``base/dkim/key.pem``, record :meth:`dkim_record`);
        ``routes`` sends mail for other domains to loopback SMTP ports.

        Retries up to three times: the free ports are picked before the
        servers bind them, so another process can take one in between.
        """
        if not dovecot_available():
            raise MailStackError("dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)")
        last: Exception | None = None
        for _ in range(3):
            owns = base_dir is None
            base = Path(tempfile.mkdtemp(prefix="autosmime-mail-")) if base_dir is None else Path(base_dir)
            if not owns:
                base.mkdir(parents=True, exist_ok=True)
                if any(base.iterdir()):
                    raise MailStackError(f"{base} is not empty")
                _check_traversable(base)
            try:
                stack = cls._start_once(base, users, pool, owns, names=names, dkim=dkim, routes=routes)
            except MailStackError as e:
                last = e
                if owns:
                    shutil.rmtree(base, ignore_errors=True)
                else:
                    for child in base.iterdir():
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
                continue
            _RUNNING.add(stack)
            return stack
        assert last is not None
        raise last

    @classmethod
    def _start_once(cls, base: Path, users: int, pool: int, owns: bool, *, names: Sequence[str] | None = None,
                    dkim: bool = False, routes: dict[str, int] | None = None) -> MailStack:
        as_root = os.geteuid() == 0
        forced = os.environ.get("AUTOSMIME_MAILSTACK_SMTP")       # "postfix" | "relay": tests of both paths
        smtp_kind = forced or ("postfix" if _postfix.available() else "relay")
        with_submission = os.path.exists("/usr/lib/dovecot/submission")
        p = _procs.free_ports(10)
        filtered = dkim and smtp_kind == "postfix"
        ports = _Ports(imap=p[0], imaps=p[1], lmtp=p[2], auth=p[3], smtp=p[4], smtps=p[5], relay=p[6],
                       submission=p[7] if with_submission else None,
                       dkim_filter=p[8] if filtered else None, reinject=p[9] if filtered else None)
        stack = cls(base, ports, smtp_kind, owns, routes=routes, dkim=dkim)
        try:
            stack._prepare(users, pool, as_root, names)
            stack._launch_dovecot()
            if filtered:
                stack._launch_dkim_filter()
            if smtp_kind == "postfix":
                stack._launch_postfix()
            else:
                stack._launch_relay()
            stack._wait_ready()
            stack._write_state()
        except BaseException as e:
            stack._kill()
            if isinstance(e, MailStackError):
                raise
            if isinstance(e, (OSError, subprocess.SubprocessError)):
                raise MailStackError(f"mail stack failed to start: {e}\n{stack._log_tail()}") from None
            raise
        return stack

    def _prepare(self, users: int, pool: int, as_root: bool, names: Sequence[str] | None = None) -> None:
        base = self.base
        os.chmod(base, 0o755)
        for sub in ("run", "state", "mail", "tls"):
            (base / sub).mkdir(mode=0o755)
        ca, cert, key = make_server_tls()
        (base / "tls" / "ca.pem").write_bytes(ca)
        (base / "tls" / "cert.pem").write_bytes(cert)
        key_path = base / "tls" / "key.pem"
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        if self.dkim:
            (base / "dkim").mkdir(mode=0o700)
            key_path = base / "dkim" / "key.pem"
            key_path.touch(mode=0o600)
            key_path.write_bytes(_dkim.make_key())
        if names is None:
            names = list(NAMED_USERS[:users]) + [f"user{i}" for i in range(len(NAMED_USERS) + 1, users + 1)]
        for name in names:
            _check_name(name)
        names = list(dict.fromkeys(n.lower() for n in names))
        self._named = names
        self._pool = [f"pool{i:04d}" for i in range(pool)]
        for name in names + self._pool:
            self._users[name] = secrets.token_urlsafe(12)
            self._make_maildir(name)
        self._write_users()
        dports = _dovecot.DovecotPorts(imap=self._ports.imap, imaps=self._ports.imaps, lmtp=self._ports.lmtp,
                                       auth=self._ports.auth, submission=self._ports.submission,
                                       relay=self._ports.relay)
        (base / "dovecot.conf").write_text(_dovecot.dovecot_conf(str(base), dports, as_root=as_root))

    def _make_maildir(self, name: str) -> None:
        # Pre-created maildirs avoid Dovecot 2.3.19's INBOX-creation panic (§6.4).
        user, group = _dovecot.mail_owner(os.geteuid() == 0)
        home = self.base / "mail" / name
        for path in (home, home / "Maildir", *(home / "Maildir" / d for d in ("cur", "new", "tmp"))):
            path.mkdir(mode=0o700, exist_ok=True)
            shutil.chown(path, user, group)

    def _write_users(self) -> None:
        text = "".join(f"{name}:{{PLAIN}}{pw}::::::\n" for name, pw in self._users.items())
        tmp = self.base / "users.tmp"
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.base / "users")

    def _launch_dovecot(self) -> None:
        out = open(self.base / "dovecot.stdout", "ab")
        proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self._children.append(proc)
        self._pids[proc.pid] = "dovecot"

    def _launch_postfix(self) -> None:
        conf = _postfix.prepare(self.base, smtp=self._ports.smtp, smtps=self._ports.smtps, relay=self._ports.relay,
                                lmtp=self._ports.lmtp, auth=self._ports.auth, dkim_filter=self._ports.dkim_filter,
                                reinject=self._ports.reinject, routes=self.routes)
        result = subprocess.run([_postfix.POSTFIX, "-c", str(conf), "start"], stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=60, start_new_session=True)
        pid_file = self.base / "postfix" / "spool" / "pid" / "master.pid"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().split()[0])
                break
            except (OSError, ValueError, IndexError):
                time.sleep(0.02)
        else:
            raise MailStackError(
                f"postfix did not start (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).decode(errors='replace').strip()}\n{self._log_tail()}"
            )
        self._pids[pid] = "master"

    def _launch_relay(self) -> None:
        config = {
            "users_file": str(self.base / "users"),
            "smtp_port": self._ports.smtp,
            "smtps_port": self._ports.smtps,
            "relay_port": self._ports.relay,
            "lmtp_port": self._ports.lmtp,
            "cert": str(self.base / "tls" / "cert.pem"),
            "key": str(self.base / "tls" / "key.pem"),
            "domain": self.domain,
            "routes": self.routes,
            "dkim": {"key": self.dkim_key, "selector": self.dkim_selector} if self.dkim else None,
        }
        (self.base / "relay.json").write_text(json.dumps(config))
        out = open(self.base / "relay.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "autosmime.devstack._relay", str(self.base / "relay.json")],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out.close()
        self._children.append(proc)
        self._pids[proc.pid] = "autosmime.devstack._relay"

    def _launch_dkim_filter(self) -> None:
        config = {"port": self._ports.dkim_filter, "reinject_port": self._ports.reinject, "domain": self.domain,
                  "selector": self.dkim_selector, "key": self.dkim_key}
        (self.base / "dkimsign.json").write_text(json.dumps(config))
        out = open(self.base / "dkimsign.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "autosmime.devstack._dkimsign",
                                 str(self.base / "dkimsign.json")],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out.close()
        self._children.append(proc)
        self._pids[proc.pid] = "autosmime.devstack._dkimsign"

    def dkim_record(self) -> str:
        """The zone-file line publishing the stack's DKIM key (``dkim=True`` stacks only)."""
        return _dkim.txt_record(self.dkim_selector, self.domain, Path(self.dkim_key).read_bytes())

    def _wait_ready(self, timeout: float = 20) -> None:
        probes = [(self._ports.imap, b"* OK"), (self._ports.imaps, None), (self._ports.lmtp, b"220 "),
                  (self._ports.smtp, b"220 "), (self._ports.smtps, None), (self._ports.relay, b"220 ")]
        if self._ports.submission:
            probes.append((self._ports.submission, b"220 "))
        for port in (self._ports.dkim_filter, self._ports.reinject):
            if port:
                probes.append((port, b"220 "))
        deadline = time.monotonic() + timeout
        for port, expect in probes:
            while not _procs.banner(port, expect):
                dead = [pid for pid in self._pids if not _procs.alive(pid)]
                if dead or time.monotonic() > deadline:
                    why = "a server exited" if dead else f"port {port} did not answer within {timeout:.0f} s"
                    raise MailStackError(f"mail stack failed to start: {why}\n{self._log_tail()}")
                time.sleep(0.02)

    def _write_state(self) -> None:
        state = {
            "pids": {str(pid): marker for pid, marker in self._pids.items()},
            "ports": self._ports.__dict__,
            "smtp_kind": self.smtp_kind,
            "named": self._named,
            "pool": self._pool,
            "users": self._users,
            "owns_dir": False,
            "routes": self.routes,
            "dkim": self.dkim,
        }
        path = self.base / STATE_FILE
        path.touch(mode=0o600)
        path.write_text(json.dumps(state, indent=2))
        env = {
            "MAILSTACK_DIR": str(self.base),
            "MAILSTACK_DOMAIN": self.domain,
            "MAILSTACK_IMAP_PORT": self.imap_port,
            "MAILSTACK_IMAPS_PORT": self.imaps_port,
            "MAILSTACK_SMTP_PORT": self.smtp_port,
            "MAILSTACK_SMTPS_PORT": self.smtps_port,
            "MAILSTACK_SUBMISSION_PORT": self.submission_port or "",
            "MAILSTACK_LMTP_PORT": self.lmtp_port,
            "MAILSTACK_CA_FILE": self.ca_file,
            "MAILSTACK_USERS_FILE": str(self.base / "users"),
            "MAILSTACK_SMTP_KIND": self.smtp_kind,
        }
        (self.base / ENV_FILE).write_text("".join(f"{k}={v}\n" for k, v in env.items()))

    @classmethod
    def attach(cls, base_dir: Path) -> MailStack:
        """The stack running in ``base_dir`` (started by another process, e.g. scripts/mailstack)."""
        base = Path(base_dir)
        try:
            state = json.loads((base / STATE_FILE).read_text())
        except (OSError, ValueError) as e:
            raise MailStackError(f"no mail stack state in {base}: {e}") from None
        stack = cls(base, _Ports(**state["ports"]), state["smtp_kind"], owns_dir=False,
                    routes=state.get("routes"), dkim=bool(state.get("dkim")))
        stack._pids = {int(pid): marker for pid, marker in state["pids"].items()}
        stack._users = dict(state["users"])
        stack._named = list(state["named"])
        stack._pool = list(state["pool"])
        return stack

    def detach(self) -> None:
        """Leave the servers running after this process exits (see :meth:`attach`)."""
        _RUNNING.discard(self)

    def stop(self) -> None:
        """SIGTERM every server, wait, then SIGKILL whatever is left (including children)."""
        if self._stopped:
            return
        self._stopped = True
        _RUNNING.discard(self)
        self._kill()
        if self._owns_dir and not os.environ.get("AUTOSMIME_KEEP_MAILSTACK"):
            shutil.rmtree(self.base, ignore_errors=True)

    def _kill(self) -> None:
        _procs.terminate(self._pids)
        for proc in self._children:
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> MailStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> set[int]:
        """Every live process of this stack (masters and their children)."""
        found = {pid for pid in self._pids if _procs.alive(pid)}
        for pid in list(found):
            found |= _procs.descendants(pid)
        return found

    def _log_tail(self) -> str:
        return _procs.log_tail(self.base / "dovecot.stdout", self.base / "dovecot.log", self.base / "postfix.log",
                               self.base / "relay.log", self.base / "dkimsign.log")

    # --- users -----------------------------------------------------------------------

    def user(self, name: str) -> tuple[str, str]:
        """(email, password) of the named user ``name`` (``alice``, ``bob``, ...).

        A name not provisioned at start is added now; that takes up to a second
        because Dovecot re-reads its users file at most once per second.
        """
        name = name.lower()
        with self._lock:
            if name in self._users and name not in self._pool:
                return f"{name}@{self.domain}", self._users[name]
            self._add_user(name)
            return f"{name}@{self.domain}", self._users[name]

    def fresh_user(self) -> tuple[str, str]:
        """A user no one has used yet in this stack: an empty mailbox for one test."""
        with self._lock:
            if self._pool:
                name = self._pool.pop(0)
                return f"{name}@{self.domain}", self._users[name]
            name = f"extra{secrets.token_hex(4)}"
            self._add_user(name)
            return f"{name}@{self.domain}", self._users[name]

    def _add_user(self, name: str) -> None:
        _check_name(name)
        self._users[name] = secrets.token_urlsafe(12)
        self._make_maildir(name)
        self._write_users()
        import imaplib

        deadline = time.monotonic() + 5
        while True:
            try:
                with imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=5) as conn:
                    conn.login(name, self._users[name])
                    return
            except imaplib.IMAP4.error:
                if time.monotonic() > deadline:
                    raise MailStackError(f"new user {name} cannot log in") from None
                time.sleep(0.1)

    def account(self, email: str, security: str = "starttls", imap_port: int | None = None) -> Account:
        """An :class:`Account` for ``email`` on this stack (``tls`` uses the implicit-TLS ports)."""
        if security == "tls":
            default_imap, smtp = self.imaps_port, self.smtps_port
        else:
            default_imap, smtp = self.imap_port, self.smtp_port
        return Account(email=email, imap_host="127.0.0.1", imap_port=imap_port or default_imap,
                       smtp_host="127.0.0.1", smtp_port=smtp, username=email, security=security,
                       ca_file=self.ca_file)

    def deliver(self, email: str, raw: bytes) -> None:
        """Put ``raw`` into the user's INBOX server-side (``doveadm save``), bypassing SMTP."""
        name = email.split("@", 1)[0].lower()
        result = subprocess.run([DOVEADM, "-c", self.conf, "save", "-u", name, "-m", "INBOX"], input=raw,
                                capture_output=True, timeout=30)
        if result.returncode != 0:
            raise MailStackError(f"doveadm save for {name} failed: {result.stderr.decode(errors='replace').strip()}")


def _check_name(name: str) -> None:
    if not name or not name.isascii() or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise MailStackError(f"bad user name {name!r} (letters, digits, '.', '-', '_')")


def _check_traversable(base: Path) -> None:
    # Dovecot's auth and mail processes run as other users: every parent must be searchable (§6.2).
    if os.geteuid() != 0:
        return
    for parent in [base, *base.parents]:
        if parent != base and not os.stat(parent).st_mode & 0o001:
            raise MailStackError(
                f"{parent} is not world-searchable (o+x), so Dovecot's unprivileged processes cannot reach "
                f"{base}; choose a directory in the system temp dir"
            )


_RUNNING: set[MailStack] = set()


@atexit.register
def _stop_all() -> None:
    # A crashed test run must not leave servers behind.
    for stack in list(_RUNNING):
        stack.stop()
