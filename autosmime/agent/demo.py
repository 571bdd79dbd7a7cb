"""``autosmime demo``: the whole system on one machine, told in five steps with real operations.

    >>> from autosmime.agent.demo import Events, run_demo
    >>> outcome = run_demo(Events(on_step=lambda s: print(s.number, s.ok, s.title)))   # doctest: +SKIP
    1 True alice and bob set up (enrol, back up, publish)
    ...
    >>> outcome.seconds                                                              # doctest: +SKIP
    31.2

The embedded stack (:mod:`autosmime.devstack.stack`: Dovecot, Postfix with DKIM,
the CA over ACME for S/MIME, the key directory) is brought up in a new
temporary folder (``$TMPDIR`` is honoured), then:

1. alice and bob set up: :func:`autosmime.agent.setup.setup`, the flow behind
   ``autosmime setup`` (enrol at the CA by answering its challenge mail, back the
   keys up into the mailbox, publish in the key directory).
2. alice sends bob a mail (:func:`autosmime.agent.send.send_mail`: encrypted,
   since bob's certificate is in the directory); bob reads it
   (:func:`autosmime.agent.inbox.read_uid`: decrypted, alice's signature good,
   the text as sent) and replies, encrypted to alice.
3. alice's device is wiped: her home (keys, account, recovery code) deleted.
   Her recovery code survives only as she would keep it: here, in this
   process's memory (never printed, never written to disk).
4. alice sets up a new device: the same setup flow finds the backup in her
   mailbox and restores it with the recovery code; she reads her Sent copy and
   bob's reply with the restored key.
5. alice exports everything (a real ``autosmime export`` process) and a real
   ``openssl pkcs12`` / ``openssl cms -decrypt`` / ``openssl cms -verify`` run
   opens bob's reply with the export alone.

Each step checks what it did and raises :class:`DemoFailed` (exit 1, naming the
step) when something is not as it should be. Whatever happens (a failure,
Ctrl-C, SIGTERM turned into SystemExit by the caller), everything the demo
started is stopped and its folder deleted, unless ``keep``: then the stack and
the homes stay for the user to explore, and :class:`DemoOutcome` says where.

The demo runs with a null keyring in this process: the throwaway accounts'
passwords must not end up in the user's real OS keyring (setup then remembers
the devstack's password files instead, so kept homes still work).
"""

from __future__ import annotations

import contextlib
import email.message
import email.parser
import email.policy
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autosmime.errors import AutosmimeError, DemoFailed

if TYPE_CHECKING:
    from autosmime.agent.context import Agent
    from autosmime.agent.setup import SetupOutcome
    from autosmime.smime.models import ReadResult

__all__ = ["STEPS", "DemoOutcome", "Events", "StepResult", "describe_kept", "run_demo"]

#: the story, as numbered in the output
STEPS: tuple[str, ...] = (
    "alice and bob set up (enrol, back up, publish)",
    "alice sends bob an encrypted mail; bob reads it and replies",
    "alice's device is wiped",
    "alice sets up a new device from her mailbox backup and reads her old mail",
    "alice exports everything; openssl cms decrypts an old mail with the export",
)
USERS = ("alice", "bob")
#: how long a mail may take from SMTP to the recipient's INBOX (Postfix, then LMTP into Dovecot)
DELIVERY_TIMEOUT = 60.0
SUBPROCESS_TIMEOUT = 120.0


@dataclass(frozen=True)
class StepResult:
    number: int
    title: str
    ok: bool
    detail: str  # one line: what was verified, or why the step failed
    seconds: float


@dataclass(frozen=True)
class DemoOutcome:
    base: Path                          # the demo's folder (deleted unless kept)
    stack_dir: Path
    homes: dict[str, Path]              # name -> home; alice's is her new device's
    env: dict[str, str]                 # what `devstack up` prints
    steps: tuple[StepResult, ...]
    seconds: float
    kept: bool


@dataclass(frozen=True)
class Events:
    """How the demo reaches its front end (all optional; nothing is printed by the flow)."""

    on_stack: Callable[[Path], None] | None = None         # the stack is starting in this folder
    on_stack_up: Callable[[float], None] | None = None     # ... and is up, after so many seconds
    on_start: Callable[[int, str], None] | None = None     # step N begins
    on_progress: Callable[[str], None] | None = None       # what the running step is doing now
    on_step: Callable[[StepResult], None] | None = None    # step N ended (verified or not)
    on_cleanup: Callable[[], None] | None = None           # stopping everything (not called with keep)
    on_kept: Callable[[DemoOutcome], None] | None = None   # with keep: what is left running (also on failure)


class _NotVerified(AutosmimeError):
    """A step ran but its result is not what the story needs."""


def _check(condition: object, why: str) -> None:
    if not condition:
        raise _NotVerified(why)


# --- the story ----------------------------------------------------------------------------------


@dataclass
class _Story:
    base: Path
    env: dict[str, str]
    progress: Callable[[str], None]
    homes: dict[str, Path] = field(default_factory=dict)
    certs: dict[str, str] = field(default_factory=dict)        # address -> SHA-256 of its certificate
    code: str | None = None                                    # alice's recovery code: memory only
    hello: tuple[str, str] = ("", "")                          # (subject, body) alice -> bob
    reply: tuple[str, str] = ("", "")                          # (subject, body) bob -> alice
    sent_copy: tuple[str, int] | None = None                   # alice's Sent copy (folder, uid)
    reply_uid: int | None = None                               # bob's reply in alice's INBOX

    def address(self, name: str) -> str:
        return f"{name}@{self.env['DOMAIN']}"

    def agent(self, name: str) -> Agent:
        from autosmime.agent.context import Agent

        return Agent(self.homes[name])

    def set_up(self, name: str, home: Path, recovery_code: str | None = None) -> tuple[SetupOutcome, str | None]:
        """The setup flow as ``autosmime setup`` runs it with the devstack's settings; returns the recovery code."""
        from autosmime._hostport import parse_hostport as hostport
        from autosmime.agent.setup import Prompts, ServerGiven, setup

        env, address = self.env, self.address(name)
        given = ServerGiven(imap=hostport(env["IMAP"]), smtp=hostport(env["SMTP"]), security=env["SECURITY"],
                            ca_file=env["MAIL_CA_FILE"], password_file=str(Path(env["PASSWORDS_DIR"]) / address),
                            ca_url=env["CA_URL"], directory=env.get("DIRECTORY_URL"), recovery_code=recovery_code)
        codes: list[str] = []
        outcome = setup(home, address, given, Prompts(progress=lambda text: self.progress(f"{name}: {text}")),
                        code_sink=codes.append)
        self.homes[name] = home
        return outcome, codes[-1] if codes else None

    # 1 -------------------------------------------------------------------------------------------

    def step_setup(self) -> str:
        from autosmime.agent.outcomes import BackupState
        from autosmime.agent.setup import KeysFrom, Publication

        homes = self.base / "homes"
        homes.mkdir(mode=0o700)
        for name in USERS:
            outcome, code = self.set_up(name, homes / name)
            address = self.address(name)
            _check(outcome.keys is KeysFrom.ENROLLED and outcome.certificate is not None,
                   f"{address}: no certificate was enrolled (keys: {outcome.keys.value})")
            _check(outcome.backup is not None and outcome.backup.state is BackupState.STORED,
                   f"{address}: the key backup was not stored"
                   + (f" ({outcome.backup.reason})" if outcome.backup and outcome.backup.reason else ""))
            _check(outcome.publication is Publication.PUBLISHED,
                   f"{address}: the certificate was not published ({outcome.publication.value})")
            _check(code, f"{address}: setup handed out no recovery code")
            assert outcome.certificate is not None
            self.certs[address] = outcome.certificate.sha256
            if name == "alice":
                self.code = code  # kept as alice would keep it: offline (here: in memory, never shown)
        return (f"{' and '.join(self.address(n) for n in USERS)}: certificates issued by the devstack CA over "
                f"ACME (challenge mail answered), keys backed up in each mailbox, published in the key directory")

    # 2 -------------------------------------------------------------------------------------------

    def step_mail(self) -> str:
        from autosmime.agent.send import send_mail

        alice, bob = self.address("alice"), self.address("bob")
        token = secrets.token_hex(4)
        self.hello = (f"Lunch on Friday? ({token})", f"Hi Bob,\n\nlunch on Friday at noon? Code word {token}.\n\n"
                                                     "Alice\n")
        seen = _uids(self.agent("bob"), "INBOX")
        self.progress("alice sends bob a mail")
        sent = send_mail(self.agent("alice"), to=[bob], subject=self.hello[0], body=self.hello[1])
        _check(sent.encrypted, "alice's mail went out unencrypted: "
               + "; ".join(r.reason or "" for r in sent.recipients if r.sha256 is None))
        _check(sent.recipients[0].sha256 == self.certs[bob],
               "alice's mail was encrypted to a certificate that is not bob's")
        _check(sent.own_copy and sent.sent_folder and sent.sent_uid and not sent.queued,
               "alice's Sent copy was not stored (encrypted to herself)")
        assert sent.sent_folder is not None and sent.sent_uid is not None
        self.sent_copy = (sent.sent_folder, sent.sent_uid)
        self.progress("waiting for the mail in bob's INBOX")
        uid, result = self._arrival("bob", seen, self.hello[0])
        _verified_mail(result, alice, self.hello[1], f"bob reading UID {uid}")

        self.reply = (f"Re: {self.hello[0]}", f"Hi Alice,\n\nFriday at noon is fine. Code word {token} back.\n\n"
                                              "Bob\n")
        seen = _uids(self.agent("alice"), "INBOX")
        self.progress("bob replies")
        replied = send_mail(self.agent("bob"), to=[alice], subject=self.reply[0], body=self.reply[1])
        _check(replied.encrypted and replied.recipients[0].sha256 == self.certs[alice],
               "bob's reply was not encrypted to alice's certificate")
        self.progress("waiting for the reply in alice's INBOX")
        self.reply_uid = _wait_new(self.agent("alice"), "INBOX", seen)
        return (f"found bob's certificate in the {sent.recipients[0].source}; bob's INBOX UID {uid}: decrypted, "
                f"signature good from {alice}, text as sent; bob's reply arrived encrypted to alice")

    def _arrival(self, name: str, seen: set[int], subject: str) -> tuple[int, ReadResult]:
        from autosmime.agent.inbox import read_uid

        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while True:
            uid = _wait_new(self.agent(name), "INBOX", seen, deadline)
            seen.add(uid)
            result = read_uid(self.agent(name), uid).result
            if _headers(result).get("Subject") == subject:
                return uid, result

    # 3 -------------------------------------------------------------------------------------------

    def step_wipe(self) -> str:
        home = self.homes.pop("alice")
        shutil.rmtree(home)
        _check(not home.exists(), f"{home} is still there")
        _check(self.code, "alice's recovery code was not kept")
        return f"{home} deleted: her keys, account and recovery code are gone from the device"

    # 4 -------------------------------------------------------------------------------------------

    def step_new_device(self) -> str:
        from autosmime.agent.inbox import read_uid
        from autosmime.agent.setup import KeysFrom

        alice, bob = self.address("alice"), self.address("bob")
        outcome, _ = self.set_up("alice", self.base / "homes" / "alice-new-device", recovery_code=self.code)
        _check(outcome.keys is KeysFrom.RESTORED and outcome.restore is not None,
               f"the new device did not restore from the backup (keys: {outcome.keys.value})")
        _check(outcome.certificate is not None and outcome.certificate.sha256 == self.certs[alice],
               "the restored certificate is not the one alice enrolled")
        assert self.sent_copy is not None and self.reply_uid is not None
        folder, uid = self.sent_copy
        self.progress("alice reads her Sent copy")
        _verified_mail(read_uid(self.agent("alice"), uid, folder).result, alice, self.hello[1],
                       f"her Sent copy ({folder} UID {uid})")
        self.progress("alice reads bob's reply")
        _verified_mail(read_uid(self.agent("alice"), self.reply_uid).result, bob, self.reply[1],
                       f"bob's reply (INBOX UID {self.reply_uid})")
        assert outcome.restore is not None
        return (f"backup {outcome.restore.seq} restored with the recovery code ({outcome.restore.keys} "
                f"key{'s' * (outcome.restore.keys != 1)}); her Sent copy and bob's reply decrypted, signatures good")

    # 5 -------------------------------------------------------------------------------------------

    def step_export(self) -> str:
        home, out = self.homes["alice"], self.base / "export"
        assert self.reply_uid is not None
        self.progress("autosmime export")
        _run([sys.executable, "-m", "autosmime", "--home", str(home), "export", "--out", str(out)],
             "autosmime export")
        p12, password = out / "autosmime-export.p12", out / "export-password.txt"
        _check(p12.is_file() and password.is_file(), f"autosmime export wrote no {p12.name} and {password.name}")
        with self.agent("alice").open_mailbox() as box:
            raw = box.fetch("INBOX", [self.reply_uid]).get(self.reply_uid)
        _check(raw, f"bob's reply (UID {self.reply_uid}) is no longer in alice's INBOX")
        assert raw is not None
        work = self.base / "openssl"
        work.mkdir(mode=0o700)
        (work / "old-mail.eml").write_bytes(raw)
        self.progress("openssl pkcs12, openssl cms -decrypt, openssl cms -verify")
        key = work / "key.pem"  # the private key in the clear, as other clients need it: deleted right after use
        cert = work / "cert.pem"
        try:
            _run(["openssl", "pkcs12", "-in", str(p12), "-passin", f"file:{password}", "-nocerts", "-nodes",
                  "-out", str(key)], "openssl pkcs12")
            _run(["openssl", "pkcs12", "-in", str(p12), "-passin", f"file:{password}", "-nokeys", "-clcerts",
                  "-out", str(cert)], "openssl pkcs12")
            # -recip picks alice's RecipientInfo. Without it openssl tries the key on every one, and since
            # OpenSSL 3.2 (RSA implicit rejection) a later one (bob's) answers with a random key that overrides hers.
            _run(["openssl", "cms", "-decrypt", "-in", str(work / "old-mail.eml"), "-recip", str(cert),
                  "-inkey", str(key), "-out", str(work / "decrypted.eml")], "openssl cms -decrypt")
        finally:
            key.unlink(missing_ok=True)
        _run(["openssl", "cms", "-verify", "-in", str(work / "decrypted.eml"), "-CAfile", self.env["CA_TRUST"],
              "-out", str(work / "content.eml")], "openssl cms -verify")
        content = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            (work / "content.eml").read_bytes())
        body = content.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        _check(_same_text(text, self.reply[1]), "the text openssl decrypted is not what bob wrote")
        return (f"{p12.name} (every key, password in a 0600 file) opened by openssl pkcs12; openssl cms decrypted "
                "bob's reply and verified his signature against the devstack CA: the text is what bob wrote")


# --- helpers ------------------------------------------------------------------------------------


def _uids(agent: Agent, folder: str) -> set[int]:
    with agent.open_mailbox() as box:
        return set(box.uids(folder))  # type: ignore[attr-defined]


def _wait_new(agent: Agent, folder: str, seen: set[int], deadline: float | None = None) -> int:
    """The lowest UID in ``folder`` not in ``seen``, polling until one arrives (DemoFailed-worthy after the deadline)."""
    deadline = deadline if deadline is not None else time.monotonic() + DELIVERY_TIMEOUT
    while True:
        new = _uids(agent, folder) - seen
        if new:
            return min(new)
        _check(time.monotonic() < deadline, f"no new mail arrived in {agent.account().email}'s {folder} "
                                            f"within {DELIVERY_TIMEOUT:g} s")
        time.sleep(0.2)


def _headers(result: ReadResult) -> email.message.Message:
    return email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(result.message or b"")


def _same_text(got: str, want: str) -> bool:
    return got.replace("\r\n", "\n").strip() == want.strip()


def _verified_mail(result: ReadResult, sender: str, body: str, what: str) -> None:
    """``result`` is encrypted, its signature good and from ``sender``, and its text ``body``."""
    _check(result.encrypted, f"{what} was not encrypted")
    _check(result.message is not None, f"{what} could not be decrypted")
    _check(result.verdict == "good", f"{what}: the signature is not good ({result.verdict}: {result.summary})")
    signers = [s.signer_address for s in result.signatures if s.verdict == "good"]
    _check(sender in signers, f"{what}: signed by {', '.join(map(str, signers)) or 'nobody'}, not {sender}")
    content = email.parser.BytesParser(policy=email.policy.default).parsebytes(result.message or b"")
    part = content.get_body(("plain",))
    text = part.get_content() if part is not None else ""
    _check(_same_text(str(text), body), f"{what}: the text is not what was sent")


def _child_env() -> dict[str, str]:
    """This process's environment, with this autosmime's source tree importable (as the devstack does)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=SUBPROCESS_TIMEOUT,
                              env=_child_env())
    except FileNotFoundError:
        raise _NotVerified(f"{what}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise _NotVerified(f"{what} did not finish within {SUBPROCESS_TIMEOUT:g} s") from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise _NotVerified(f"{what} exited {done.returncode}" + (f": {lines[0]}" if lines else ""))


@contextlib.contextmanager
def _demo_process_settings(zone: Path) -> Iterator[None]:
    """The stack's DNS zone for the CA's DKIM keys, and no OS keyring, while the demo runs (restored after)."""
    import keyring
    from keyring.backends import null

    from autosmime.agent.enrol import DNS_ZONE_ENV

    old_zone, old_keyring = os.environ.get(DNS_ZONE_ENV), keyring.get_keyring()
    os.environ[DNS_ZONE_ENV] = str(zone)
    keyring.set_keyring(null.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(old_keyring)
        if old_zone is None:
            os.environ.pop(DNS_ZONE_ENV, None)
        else:
            os.environ[DNS_ZONE_ENV] = old_zone


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """A second Ctrl-C (impatient) or SIGTERM must not cut the clean-up short: both are ignored while it runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _clean_up(base: Path, stack_dir: Path) -> None:
    from autosmime.devstack.stack import STATE_FILE, DevStackError, down

    with _no_interrupts():
        try:
            if (stack_dir / STATE_FILE).exists():
                down(stack_dir)
        except DevStackError:
            pass  # the processes it could not find are gone; the folder goes below
        finally:
            shutil.rmtree(base, ignore_errors=True)


# --- the flow -------------------------------------------------------------------------------------


def run_demo(events: Events = Events(), *, keep: bool = False) -> DemoOutcome:
    """Bring up the devstack in a new temporary folder and run the five steps (see the module's docstring).

    Raises DemoFailed naming the first step that was not verified (later steps are not run), or
    with ``step`` 0 if the stack did not start. Everything is stopped and deleted on the way out
    unless ``keep``.
    """
    from autosmime.devstack.mailserver import MailStackError
    from autosmime.devstack.stack import up

    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="autosmime-demo-"))
    stack_dir = base / "stack"
    story: _Story | None = None
    results: list[StepResult] = []
    kept = False
    try:
        os.chmod(base, 0o755)  # Dovecot's unprivileged processes must reach the stack below it
        if events.on_stack:
            events.on_stack(stack_dir)
        try:
            env = up(stack_dir, USERS)
        except MailStackError as e:  # DevStackError included
            raise DemoFailed(f"the demo's devstack did not start: {e} (the demo makes its folder in $TMPDIR, else /tmp)",
                             step=0) from None
        if events.on_stack_up:
            events.on_stack_up(time.monotonic() - started)
        story = _Story(base, env, events.on_progress or (lambda text: None))
        steps: list[Callable[[], str]] = [story.step_setup, story.step_mail, story.step_wipe,
                                          story.step_new_device, story.step_export]
        with _demo_process_settings(Path(env["DNS_ZONE"])):
            for number, (title, step) in enumerate(zip(STEPS, steps, strict=True), start=1):
                results.append(_run_step(number, title, step, events))
        kept = keep
        return DemoOutcome(base, stack_dir, dict(story.homes), env, tuple(results), time.monotonic() - started,
                           kept)
    except BaseException:
        kept = keep and story is not None  # a failed story can be kept for a look; a failed start cannot
        raise
    finally:
        if kept and story is not None and events.on_kept:
            events.on_kept(DemoOutcome(base, stack_dir, dict(story.homes), story.env, tuple(results),
                                       time.monotonic() - started, True))
        if not kept:
            if events.on_cleanup:
                events.on_cleanup()
            _clean_up(base, stack_dir)


def _run_step(number: int, title: str, step: Callable[[], str], events: Events) -> StepResult:
    if events.on_start:
        events.on_start(number, title)
    began = time.monotonic()
    try:
        detail = step()
    except (AutosmimeError, OSError, subprocess.SubprocessError) as e:
        result = StepResult(number, title, False, str(e) or type(e).__name__, time.monotonic() - began)
        if events.on_step:
            events.on_step(result)
        raise DemoFailed(f"demo step {number} ({title}) failed: {result.detail}", step=number) from e
    result = StepResult(number, title, True, detail, time.monotonic() - began)
    if events.on_step:
        events.on_step(result)
    return result


def describe_kept(outcome: DemoOutcome) -> list[str]:
    """Where a kept demo is and how to look at it and stop it (for the front end to print)."""
    lines = [f"the demo's stack and homes are kept in {outcome.base}"]
    for name, home in outcome.homes.items():
        lines.append(f"  {name}: autosmime --home {home} inbox")
    lines.append(f"stop and delete it: autosmime devstack down --dir {outcome.stack_dir} && rm -rf {outcome.base}")
    return lines

