"""Watcher.tick against the in-memory mailbox, with an injected clock: the queue, backoff and backup health.

The devstack tests (tests/autopilot/test_watch.py) run the watch for real; these pin the scheduling.
"""

from __future__ import annotations

import datetime as dt

import pytest

from autosmime.agent.keys import import_file
from autosmime.agent.status import status
from autosmime.agent.watch import Intervals, Watcher, check_backup
from tests.agent.world import World, p12_of_new_key

T0 = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def _kinds(events) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.kind for e in events]


def test_a_queued_backup_waits_out_its_backoff_then_is_stored(world: World, tmp_path) -> None:
    a = world.device("a")
    import_file(a, p12_of_new_key()[0], b"pw", recovery_code_out=tmp_path / "code")
    world.server.faults = lambda op: "before"          # the mailbox is down
    assert import_file(a, p12_of_new_key()[0], b"pw").backup.pending
    clock = Clock()
    watcher = Watcher(a, clock=clock, sleep=lambda s: None, intervals=Intervals(backoff_min=10, backoff_max=100))
    assert "backup-queue-failed" in _kinds(watcher.tick())
    assert status(a, now=clock.now).pending.backup_queued
    world.server.faults = None                         # back, but the backoff has not passed
    operations = world.server.operations
    clock.advance(4)                                   # under the smallest backoff (10 s x 0.5)
    assert "backup-stored" not in _kinds(watcher.tick())
    assert world.server.operations == operations       # nothing was tried: not even the join check
    clock.advance(100)
    assert "backup-stored" in _kinds(watcher.tick())
    st = status(a, now=clock.now)
    assert not st.pending.backup_queued and st.backup.last_verified is not None and st.backup.last_verified.ok
    assert st.watch_last_tick == "2027-03-01T12:01:44Z"


def test_backup_health_daily_and_a_key_in_no_backup_is_backed_up(world: World, tmp_path) -> None:
    a = world.device("a")
    import_file(a, p12_of_new_key()[0], b"pw", recovery_code_out=tmp_path / "code")
    clock = Clock()
    clock.now = dt.datetime.now(dt.UTC)
    watcher = Watcher(a, clock=clock, sleep=lambda s: None)
    assert "backup-verified" not in _kinds(watcher.tick())      # just verified by the backup itself
    clock.advance(25 * 3600)
    assert "backup-verified" in _kinds(watcher.tick())          # a day later: fetched and opened
    assert status(a, now=clock.now).backup.last_verified.by == "check"  # type: ignore[union-attr]
    # a key that reached the vault without a backup (e.g. stopped right after an enrolment)
    from autosmime.pki.pkcs12 import parse_pfx

    [pair] = parse_pfx(p12_of_new_key()[0], b"pw", require_protected=False)
    a.vault().add_many([(pair.key, pair.cert, pair.chain)], source="import", device="a")
    result = check_backup(a, now=clock.now)
    assert not result.ok and result.missing == 1 and "in no backup" in (result.problem or "")
    failed_at = status(a).backup.last_verified.at  # type: ignore[union-attr]
    clock.advance(600)
    assert "backup-unhealthy" not in _kinds(watcher.tick())    # a failed check is repeated hourly, not every round
    assert status(a).backup.last_verified.at == failed_at  # type: ignore[union-attr]
    clock.advance(3600)
    events = watcher.tick()
    assert "backup-unhealthy" in _kinds(events) and "backup-stored" in _kinds(events)
    assert check_backup(a).ok


def test_no_recovery_code_is_reported_not_fatal(world: World, tmp_path) -> None:
    a = world.device("a")
    import_file(a, p12_of_new_key()[0], b"pw", recovery_code_out=tmp_path / "code")
    from autosmime.vault import recovery

    (a.home / recovery.CODE_FILE).unlink(missing_ok=True)

    if recovery.load_code(a.home) is not None:
        pytest.skip("the recovery code is not kept in a plain file here")
    result = check_backup(a)
    assert not result.ok and "no recovery code" in (result.problem or "")
