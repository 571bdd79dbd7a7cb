"""The background agent: renews when due, retries queued backups, checks backup health and the directory's log.

    >>> from autosmime.agent import Agent
    >>> from autosmime.agent.watch import Watcher
    >>> watcher = Watcher(Agent(home))                                 # doctest: +SKIP
    >>> [e.kind for e in watcher.tick()]                               # doctest: +SKIP
    ['backup-verified', 'renewal-checked', 'directory-checked']
    >>> watcher.run()          # until SIGTERM/SIGINT                  # doctest: +SKIP

One :meth:`Watcher.tick` does the work that is due, each job on its own
schedule, recorded in the vault state so a restart does not redo it and
``status`` can show it (see :mod:`autosmime.agent.status`):

- a queued backup: retried every tick while the mailbox is reachable;
- queued mail (``send``'s outbox: not submitted, or its Sent copy not stored): retried every tick;
- renewal: every 12 h the CA is asked (ARI) through
  :func:`autosmime.agent.enrol.decide_renewal`; when due, the account's backups
  are merged in first (another device watching the same account may have
  renewed: then its certificate is taken in, not a second one ordered), else the
  certificate is renewed (the renewal answers its own ACME challenge from INBOX),
  backed up, and the directory check runs next so the new certificate gets published;
- backup health, daily: the newest backups are fetched and authenticated with
  the recovery code on this device, fully opened, and checked to hold every
  key of this device (a key missing from them triggers a backup);
- the directory, every 6 h when one is in use: my address's history in the
  log (monitor), a certificate I never held is reported (swapped), a forked or
  unverifiable log is reported, and the active certificate is published when
  the log does not show it;
- join requests, every 2 min (every 10 s while this device has an open
  invitation): a request made with one of this device's invitations
  (``autosmime invite``; the new device was given its code) is approved here,
  at once, and the invitation is used up. Any other request is reported (log
  line, and in ``status``), never approved here: without an invitation,
  approving needs the person to compare the codes on both devices
  (``autosmime approve`` on this device). Approving a request nobody vouched
  for would hand every key to whoever can write to the mailbox, the provider
  first.

Between ticks :meth:`Watcher.wait` holds IMAP IDLE on INBOX (NOOP polling
when the server has no IDLE) until the next job is due; mail arriving ends
the wait early. Server trouble is never fatal: the job that failed waits
with exponential backoff and jitter (5 s doubling to 15 min), the others
keep their schedule. Fatal are only a configuration that cannot work (no
account, no vault, no password): :class:`WatchFatal` before the first tick.
SIGTERM and SIGINT stop the loop within a few seconds: a wait is
interrupted at once, a job gets a short grace period to finish its write.
Clock and sleep are injected, so the tick runs under test with any time.
"""

from __future__ import annotations

import datetime as _dt
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from autosmime._words import plural
from autosmime.agent import backup as backups
from autosmime.agent.context import Agent
from autosmime.agent.status import (
    BACKUP_VERIFIED,
    DIRECTORY_CHECK,
    JOIN_REQUESTS,
    RENEWAL_CHECK,
    WATCH_TICK,
    active_entry,
)
from autosmime.errors import (
    AccountError,
    AutosmimeError,
    BackupError,
    BackupRejected,
    LogVerificationError,
    MailboxError,
    NoKey,
    NotPublished,
    UsageError,
    VaultError,
)

__all__ = ["BackupCheck", "Intervals", "WatchEvent", "WatchFatal", "Watcher", "check_backup", "systemd_unit"]

log = logging.getLogger(__name__)

Clock = Callable[[], _dt.datetime]


class WatchFatal(AutosmimeError):
    """A configuration the watch cannot work with (exit 1); never raised for server trouble."""


@dataclass(frozen=True)
class Intervals:
    """How often each job runs, and the bounds of the backoff after a failure (seconds)."""

    renewal: float = 12 * 3600
    backup_health: float = 24 * 3600
    directory: float = 6 * 3600
    joins: float = 120
    joins_invited: float = 10     # while an invitation is open: the new device is waiting for us
    idle: float = 25 * 60          # re-issue IDLE before the 29-minute server limit (RFC 2177)
    poll: float = 60               # NOOP polling when the server has no IDLE
    min_tick: float = 5            # mail arriving in a burst: at most one round of work per this
    backoff_min: float = 5
    backoff_max: float = 15 * 60
    renewal_backoff_min: float = 5 * 60


@dataclass(frozen=True)
class WatchEvent:
    """Something the watch did or noticed; ``text`` is one line, safe to log (no secrets)."""

    kind: str
    text: str
    level: int = logging.INFO


@dataclass(frozen=True)
class BackupCheck:
    ok: bool
    seq: int | None = None
    keys: int | None = None
    missing: int = 0          # keys of this device that no authentic backup holds
    problem: str | None = None


def _stamp(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: object) -> _dt.datetime | None:
    if not text:
        return None
    try:
        when = _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=_dt.UTC)


def _clean(e: BaseException) -> str:
    from autosmime.mailbox.text import server_text

    return server_text(str(e)) or type(e).__name__


# --- the backup health check -------------------------------------------------------------


def check_backup(agent: Agent, *, now: _dt.datetime | None = None) -> BackupCheck:
    """Fetch the account's newest backups, authenticate them with this device's recovery code, open the
    newest fully, and check that they hold every key of this device; the result is recorded in the vault.

    MailboxError (server trouble) is raised and nothing is recorded.
    """
    from autosmime.pki.certs import fingerprint
    from autosmime.vault import backup as protocol
    from autosmime.vault.recovery import load_code

    vault = agent.vault(create=False)
    account = agent.account()
    code = load_code(agent.home)
    result: BackupCheck
    unauthentic = 0
    if code is None:
        result = BackupCheck(False, problem="no recovery code on this device: its backups cannot be checked")
    else:
        with agent.open_mailbox() as box:
            scan = protocol.scan_folder(box, account.backup_folder, address=account.email, code=code,
                                        params=agent.backup_params)
        unauthentic = scan.others
        seen = int(vault.state.get(backups.SEQ_SEEN) or 0)
        if not scan.candidates:
            result = BackupCheck(False, problem=f"no key backup in the mailbox folder {account.backup_folder!r}")
        elif not scan.authentic:
            result = BackupCheck(False, problem=f"none of the {len(scan.candidates)} newest backups opens with this "
                                                "device's recovery code")
        else:
            newest = scan.authentic[0]
            try:
                opened = newest.open(code, seq_seen=seen)
            except BackupRejected as e:
                result = BackupCheck(False, seq=newest.manifest.seq, problem=_clean(e))
            else:
                held = {fingerprint(p.cert) for p in opened.keys}.union(*(f.fingerprints for f in scan.authentic))
                mine = {e.fingerprint for e in vault.entries()}
                missing = len(mine - held)
                result = BackupCheck(missing == 0, seq=opened.manifest.seq, keys=len(held), missing=missing,
                                     problem=f"{missing} key(s) of this device are in no backup" if missing else None)
    record = {"at": _stamp(now or _dt.datetime.now(_dt.UTC)), "ok": result.ok, "seq": result.seq,
              "keys": result.keys, "problem": result.problem, "by": "check", "unauthentic": unauthentic}
    vault.update_state(**{BACKUP_VERIFIED: record})
    return result


# --- waiting: IMAP IDLE on INBOX ------------------------------------------------------------


class _Idle:
    """One IMAP session parked on INBOX: IDLE when offered, else NOOP polling."""

    def __init__(self, box: Any) -> None:
        self.box = box
        self._client = getattr(box, "_client", None)   # IDLE is not part of the session API (as in agent.enrol)
        self.idle = False
        if self._client is not None:
            with box._errors("CAPABILITY"):
                self.idle = b"IDLE" in self._client.capabilities()
            box._select("INBOX")

    def wait(self, seconds: float, poll: float, sleep: Callable[[float], None]) -> bool:
        """Block up to ``seconds``; True if the server reported something (new mail, flags)."""
        if self.idle and self._client is not None:
            with self.box._errors("IDLE"):
                self._client.idle()
                try:
                    seen = self._client.idle_check(timeout=seconds)
                finally:
                    self._client.idle_done()
            return bool(seen)
        sleep(min(seconds, poll))
        if self._client is None:      # an in-memory session: nothing to ask
            return False
        with self.box._errors("NOOP"):
            return bool(self._client.noop()[1])

    def close(self) -> None:
        self.box.close()


# --- the watcher --------------------------------------------------------------------------


class _Stop(BaseException):
    """Raised by the signal handler to leave a wait (or a job past its grace period)."""


class Watcher:
    """The agent's loop for one home. ``clock`` gives the time decisions use, ``sleep`` waits."""

    grace = 3.0    # seconds a job may take to finish after SIGTERM before it is interrupted

    def __init__(self, agent: Agent, *, clock: Clock | None = None, sleep: Callable[[float], None] = time.sleep,
                 intervals: Intervals = Intervals(), rng: random.Random | None = None,
                 on_event: Callable[[WatchEvent], None] | None = None) -> None:
        self.agent = agent
        self.clock: Clock = clock or (lambda: _dt.datetime.now(_dt.UTC))
        self.sleep = sleep
        self.intervals = intervals
        self.rng = rng or random.Random()
        self.on_event = on_event
        self.stopping = threading.Event()
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, _dt.datetime] = {}
        self._joins_at: _dt.datetime | None = None
        self._directory_now = False       # a renewal asks for the directory check next
        self._idle: _Idle | None = None
        self._in_wait = False

    # --- start-up checks ----------------------------------------------------------------

    def check_config(self) -> None:
        """WatchFatal unless the account, its password and the vault are usable (no network)."""
        try:
            self.agent.account()
            if not self.agent.has_vault():
                raise WatchFatal(f"no vault in {self.agent.home}; run `autosmime setup ADDRESS` first")
            self.agent.vault(create=False)
            self.agent.password()
        except WatchFatal:
            raise
        except (AccountError, VaultError, UsageError) as e:
            raise WatchFatal(str(e)) from None

    # --- one round of due work ----------------------------------------------------------

    def tick(self) -> list[WatchEvent]:
        """Run every job that is due now; server trouble postpones that job (backoff), never raises."""
        events: list[WatchEvent] = []
        jobs: list[tuple[str, Callable[[_dt.datetime], list[WatchEvent]]]] = [
            ("backup-queue", self._backup_queue), ("outbox", self._outbox), ("renewal", self._renewal),
            ("backup-health", self._backup_health), ("directory", self._directory), ("joins", self._joins)]
        for name, job in jobs:
            if self.stopping.is_set():
                break
            now = self.clock()
            if self._retry_at.get(name) is not None and now < self._retry_at[name]:
                continue
            try:
                done = job(now)
            except (AutosmimeError, OSError) as e:   # server trouble (and anything it caused): later
                events.append(self._postpone(name, now, e))
                continue
            self._failures.pop(name, None)
            self._retry_at.pop(name, None)
            events.extend(done)
        if not self.stopping.is_set():
            try:
                self._state(**{WATCH_TICK: _stamp(self.clock())})
            except (AutosmimeError, OSError) as e:   # e.g. the vault busy: the next round records it
                log.warning("could not record this round in the vault: %s", _clean(e))
        for event in events:
            self._emit(event)
        return events

    def _postpone(self, name: str, now: _dt.datetime, e: BaseException) -> WatchEvent:
        n = self._failures.get(name, 0) + 1
        self._failures[name] = n
        delay = self.backoff(n)
        if name == "renewal":   # each attempt is a new order at the CA: not every few seconds
            delay = max(delay, min(self.intervals.renewal_backoff_min, self.intervals.backoff_max))
        self._retry_at[name] = now + _dt.timedelta(seconds=delay)
        return WatchEvent(f"{name}-failed", f"{name}: {_clean(e)}; trying again in {delay:.0f} s", logging.WARNING)

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row: doubling from the minimum, bounded, with jitter."""
        base = min(self.intervals.backoff_max, self.intervals.backoff_min * 2 ** min(failures - 1, 30))
        return min(self.intervals.backoff_max, base * (0.5 + self.rng.random()))

    def _state(self, **changes: Any) -> None:
        self.agent.vault(create=False).update_state(**changes)

    def _emit(self, event: WatchEvent) -> None:
        log.log(event.level, "%s", event.text)
        if self.on_event is not None:
            self.on_event(event)

    def _older(self, stamp: object, now: _dt.datetime, seconds: float) -> bool:
        when = _parse(stamp)
        return when is None or (now - when).total_seconds() >= seconds or when > now + _dt.timedelta(minutes=5)

    # --- the jobs ------------------------------------------------------------------------

    def _backup_queue(self, now: _dt.datetime) -> list[WatchEvent]:
        outcome = backups.retry_pending(self.agent)
        if outcome is None:
            return []
        if outcome.pending:
            raise BackupError(f"the queued backup is still waiting: {outcome.reason}")
        return [WatchEvent("backup-stored", f"the queued key backup was stored (#{outcome.seq}, "
                                               f"{plural(outcome.keys, 'key')})")]

    def _outbox(self, now: _dt.datetime) -> list[WatchEvent]:
        """Mail `send` could not hand over (SMTP) or file (the Sent copy): tried again every tick (agent.send)."""
        from autosmime.agent.send import flush_outbox, queued

        if not queued(self.agent):   # no files, no connection
            return []
        results = flush_outbox(self.agent)
        waiting = [r for r in results if not r.done]
        if waiting:
            raise MailboxError(f"{plural(len(waiting), 'queued message')} still waiting: "
                               f"{waiting[0].error}")
        return [WatchEvent("outbox-sent", f"queued message {r.id} ({r.subject!r}): sent, copy in Sent") for r in results]

    def _renewal(self, now: _dt.datetime) -> list[WatchEvent]:
        from autosmime.agent import enrol

        vault = self.agent.vault(create=False)
        entry = active_entry(vault, self.agent.account().email)
        url = vault.state.get(enrol.DEFAULT_CA_STATE)
        if entry is None or not url:
            return []    # nothing enrolled here (keys imported from elsewhere): nothing to renew
        record = vault.state.get(RENEWAL_CHECK) or {}
        when = _parse(record.get("when")) if record.get("fingerprint") == entry.fingerprint else None
        fresh = record.get("fingerprint") == entry.fingerprint and \
            not self._older(record.get("checked_at"), now, self.intervals.renewal)
        if fresh and when is not None and now < when:
            return []
        acme, _ = enrol.client_for(vault, str(url))
        decision = enrol.decide_renewal(acme, entry.cert, now=now)
        self._state(**{RENEWAL_CHECK: {"fingerprint": entry.fingerprint, "checked_at": _stamp(now),
                                       "when": decision.when.isoformat(), "source": decision.source,
                                       "due": decision.due}})
        if not decision.due:
            return [WatchEvent("renewal-checked", f"certificate {entry.fingerprint[:16]} is renewed from "
                                                  f"{_stamp(decision.when)} ({decision.source})", logging.DEBUG)]
        # Another device of this account, watching too, may have renewed already: take its keys in from the
        # backups first, so the account does not get two new certificates for one renewal.
        merged = backups.backup(self.agent)
        current = active_entry(self.agent.vault(create=False), self.agent.account().email)
        if merged.merged and current is not None and current.fingerprint != entry.fingerprint:
            return [WatchEvent("renewed-elsewhere", f"certificate {current.fingerprint[:16]}, renewed on another "
                                                   f"device, taken in from the key backups; it replaces "
                                                   f"{entry.fingerprint[:16]}")]
        _, result = enrol.renew_account(self.agent, force=True)
        assert result is not None
        from autosmime.pki.certs import fingerprint

        new = fingerprint(result.cert)
        events = [WatchEvent("renewed", f"renewed: certificate {new[:16]} valid until "
                                        f"{_stamp(result.cert.not_valid_after_utc)} replaces {entry.fingerprint[:16]}")]
        if result.backup_error:
            events.append(WatchEvent("backup-failed", f"the renewed key is not backed up yet: {result.backup_error}",
                                     logging.WARNING))
        elif result.backup is not None and result.backup.pending:
            events.append(WatchEvent("backup-queued", f"the renewed key's backup is queued: {result.backup.reason}",
                                     logging.WARNING))
        self._directory_now = True
        return events

    def _backup_health(self, now: _dt.datetime) -> list[WatchEvent]:
        state = self.agent.vault(create=False).state
        last = state.get(BACKUP_VERIFIED) or {}
        every = self.intervals.backup_health if last.get("ok") else min(self.intervals.backup_health, 3600)
        if not self._older(last.get("at"), now, every):
            return []    # checked recently (a failed check is repeated hourly, not on every round)
        if not state.get(backups.LAST_OK) and not state.get(backups.SEQ_SEEN):
            return []    # never backed up here: nothing to check (the queue or setup makes the first one)
        result = check_backup(self.agent, now=now)
        if result.ok:
            return [WatchEvent("backup-verified", f"key backup #{result.seq} verified: it opens with the recovery "
                                                  f"code and holds every key ({result.keys})")]
        events = [WatchEvent("backup-unhealthy", f"key backup check failed: {result.problem}", logging.ERROR)]
        if result.missing or result.problem and "no key backup" in result.problem:
            outcome = backups.backup(self.agent)
            text = (f"a new key backup was stored (#{outcome.seq})" if outcome.stored
                    else f"a new key backup is queued: {outcome.reason}")
            events.append(WatchEvent("backup-stored" if outcome.stored else "backup-queued", text))
        return events

    def _directory(self, now: _dt.datetime) -> list[WatchEvent]:
        from autosmime.agent import publish as directory
        from autosmime.pki.certs import fingerprint

        try:
            url = directory.directory_url(self.agent.home, None)
        except UsageError:
            return []    # no key directory in use
        vault = self.agent.vault(create=False)
        last = vault.state.get(DIRECTORY_CHECK) or {}
        if not self._directory_now and not self._older(last.get("at"), now, self.intervals.directory):
            return []
        self._directory_now = False
        address = self.agent.account().email
        try:
            mine = fingerprint(vault.encryption_pair(address).cert)
        except NoKey:
            return []
        record: dict[str, Any] = {"at": _stamp(now), "url": url, "ok": True, "events": 0, "foreign": [],
                                  "published": None, "problem": None}
        events: list[WatchEvent] = []
        try:
            try:
                history = directory.monitor(self.agent, url)
            except NotPublished:
                history = []
            record["events"] = len(history)
            foreign = [e.sha256 for e in history if not e.mine]
            if foreign:   # another device of this account may have renewed: take its keys in from the backups
                merged = backups.backup(self.agent)
                if merged.stored and merged.merged:
                    history = directory.monitor(self.agent, url)
                    foreign = [e.sha256 for e in history if not e.mine]
            live: set[str] = set()
            for e in history:
                (live.add if e.op == "publish" else live.discard)(e.sha256)
            if foreign:
                record.update(ok=False, foreign=foreign,
                              problem=f"the log shows {len(foreign)} certificate(s) for {address} this device never "
                                      "held")
                events.append(WatchEvent("certificate-swapped", f"directory {url}: {record['problem']}: "
                                         + ", ".join(s[:16] for s in foreign), logging.ERROR))
            if mine in live:
                record["published"] = mine
            else:
                done = directory.publish(self.agent, url)
                record["published"] = done.sha256
                events.append(WatchEvent("published", f"published certificate {done.sha256[:16]} at log entry "
                                                      f"{done.leaf_index}"))
        except LogVerificationError as e:   # forked log, swapped answer, bad proof: reported, not retried sooner
            record.update(ok=False, problem=_clean(e))
            events.append(WatchEvent("log-inconsistent", f"directory {url}: {_clean(e)}", logging.ERROR))
        self._state(**{DIRECTORY_CHECK: record})
        if not events:
            events.append(WatchEvent("directory-checked", f"directory {url}: {record['events']} log entries for "
                                                          f"{address}, all mine", logging.DEBUG))
        return events

    def _joins_interval(self, now: _dt.datetime) -> float:
        from autosmime.agent.join import invites

        try:
            inviting = bool(invites(self.agent, now=now))
        except AutosmimeError:
            inviting = False
        return self.intervals.joins_invited if inviting else self.intervals.joins

    def _joins(self, now: _dt.datetime) -> list[WatchEvent]:
        if self._joins_at is not None and (now - self._joins_at).total_seconds() < self._joins_interval(now):
            return []
        from autosmime.agent.join import approve_invited

        with self.agent.open_mailbox() as box:
            approvals, found = approve_invited(self.agent, box=box, now=now)
        self._joins_at = now
        events = [WatchEvent("join-approved", f"device {a.device!r} joined this account with an invitation "
                                              "made here (the invitation is now used up)") for a in approvals]
        before = {r.get("id") for r in (self.agent.vault(create=False).state.get(JOIN_REQUESTS) or {})
                  .get("requests", [])}
        requests = [{"device": r.device, "created": _stamp(r.created), "id": r.request_id.hex()[:16]} for r in found]
        self._state(**{JOIN_REQUESTS: {"checked_at": _stamp(now), "requests": requests}})
        return events + [WatchEvent("join-request", f"device {r['device']!r} asks to join this account (since "
                                    f"{r['created']}); to let it in, run `autosmime approve` here and compare the "
                                    "codes on both screens", logging.WARNING) for r in requests if r["id"] not in before]

    # --- the loop --------------------------------------------------------------------------

    def next_due(self, now: _dt.datetime) -> float:
        """Seconds until the next job may have work (bounded by the IDLE renewal time)."""
        wait = min(self.intervals.idle, self._joins_interval(now))
        for at in self._retry_at.values():
            wait = min(wait, max(0.0, (at - now).total_seconds()))
        return max(wait, 0.0)

    def wait(self, seconds: float) -> bool:
        """IDLE on INBOX for up to ``seconds``; True if mail arrived. Server trouble: a backoff sleep, False."""
        try:
            if self._idle is None:
                self._idle = _Idle(self.agent.mailbox_factory(self.agent.account(), self.agent.password()))
            with self._interruptible():
                seen = self._idle.wait(seconds, self.intervals.poll, self.sleep)
        except (MailboxError, AccountError, OSError) as e:
            self._drop_idle()
            n = self._failures.get("idle", 0) + 1
            self._failures["idle"] = n
            delay = min(seconds, self.backoff(n))
            log.warning("mailbox: %s; trying again in %.0f s", _clean(e), delay)
            with self._interruptible():
                self.sleep(delay)
            return False
        self._failures.pop("idle", None)
        return seen

    def _interruptible(self) -> Any:
        """A block SIGTERM may interrupt at once (waiting, nothing half-written)."""
        import contextlib

        @contextlib.contextmanager
        def block() -> Iterator[None]:
            if self.stopping.is_set():
                raise _Stop
            self._in_wait = True
            try:
                yield
            finally:
                self._in_wait = False

        return block()

    def _drop_idle(self) -> None:
        if self._idle is not None:
            idle, self._idle = self._idle, None
            idle.close()

    def run(self) -> None:
        """Tick and wait until SIGTERM/SIGINT (or :attr:`stopping` is set); returns normally then."""
        with self._signals():
            try:
                while not self.stopping.is_set():
                    self.tick()
                    if self.stopping.is_set():
                        break
                    activity = self.wait(self.next_due(self.clock()))
                    if activity:
                        with self._interruptible():
                            self.sleep(self.intervals.min_tick)   # let a burst of mail settle
            except _Stop:
                pass
            finally:
                self._in_wait = False
                self._drop_idle_quietly()
        log.info("stopped")

    def _drop_idle_quietly(self) -> None:
        """On the way out: no LOGOUT that could hang on a silent server, just the socket."""
        if self._idle is not None:
            idle, self._idle = self._idle, None
            try:
                idle.box._lost()
            except Exception:     # pragma: no cover - closing a broken socket
                pass

    def _signals(self) -> Any:
        import contextlib

        @contextlib.contextmanager
        def installed() -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return

            def on_signal(signum: int, _frame: object) -> None:
                first = not self.stopping.is_set()
                self.stopping.set()
                if first:
                    log.info("stopping (%s)", signal.Signals(signum).name)
                if self._in_wait or not first:
                    raise _Stop
                signal.setitimer(signal.ITIMER_REAL, self.grace)    # a job gets a grace period, then _Stop

            def on_alarm(_signum: int, _frame: object) -> None:
                if self.stopping.is_set():
                    raise _Stop

            old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
            old[signal.SIGALRM] = signal.signal(signal.SIGALRM, on_alarm)
            try:
                yield
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                for s, handler in old.items():
                    signal.signal(s, handler)

        return installed()


UNIT = """\
# autosmime's background agent for one home, as a systemd user unit.
#   autosmime --home HOME watch --print-systemd-unit > ~/.config/systemd/user/autosmime-watch.service
#   systemctl --user daemon-reload && systemctl --user enable --now autosmime-watch
#   journalctl --user -u autosmime-watch        # its log (no secrets)
# The mailbox password comes from the account's password file or the keyring, as for every command.
[Unit]
Description=autosmime watch: certificate renewal, key backup and directory checks for {home}
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec} --home {home} watch
# exit 0 on SIGTERM (a stop); non-zero only for a configuration that cannot work
Restart=on-failure
RestartSec=60
TimeoutStopSec=20
KillSignal=SIGTERM

[Install]
WantedBy=default.target
"""


def systemd_unit(command: str, home: str) -> str:
    """The systemd user unit running ``COMMAND --home HOME watch``.

        >>> "ExecStart=/usr/bin/autosmime --home /h watch" in systemd_unit("/usr/bin/autosmime", "/h")
        True
    """
    return UNIT.format(exec=_unit_word(command), home=_unit_word(home))


def _unit_word(text: str) -> str:
    """One word of an ExecStart line: %-escaped, and quoted when it has spaces or quotes."""
    text = text.replace("%", "%%")
    if any(ch.isspace() or ch in "\"'\\" for ch in text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text
