"""The agent's backup flows against the in-memory mailbox: several devices, one account, one recovery code."""

from __future__ import annotations

import pytest

from autosmime.agent import backup as flows
from autosmime.agent.keys import device_status, import_file
from autosmime.agent.outcomes import BackupState
from autosmime.errors import MailboxError, RecoveryCodeNeeded, WrongRecoveryCode
from autosmime.vault import format as fmt
from autosmime.vault.backup import KEEP
from tests.agent.world import ADDRESS, World, code_of, held, p12_of_new_key
from tests.vault import backup_support as support


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


def _import(agent, **options):
    data, fp = p12_of_new_key()
    return import_file(agent, data, b"pw", **options), fp


def _valid_backups(world: World, code: str) -> dict[int, frozenset[str]]:
    box = world.server.session()
    folder = "autosmime-keys"
    out = {}
    for raw in box.fetch(folder, box.search_header(folder, fmt.MARKER_HEADER, fmt.MARKER_VALUE)).values():
        try:
            backup = fmt.verify_message(raw, code=code, address=ADDRESS)
        except fmt.BackupRejected:
            continue
        out[backup.manifest.seq] = frozenset(fmt.fingerprint(p.cert) for p in backup.keys)
    return out


def test_first_import_creates_the_code_shows_it_once_and_backs_up(world):
    a = world.device("a", terminal=True)
    outcome, fp = _import(a)
    assert [k.fingerprint for k in outcome.new] == [fp]
    b = outcome.backup
    assert (b.state, b.seq, b.keys, b.code_created, b.code_shown) == (BackupState.STORED, 1, 1, True, True)
    assert world.shown == [code_of(a)]
    assert not device_status(a).recovery_code_unseen
    again, _ = _import(a)
    assert not again.backup.code_created and world.shown == [code_of(a)]  # shown once, never again


def test_a_code_nobody_saw_makes_status_warn_until_shown(world, tmp_path):
    a = world.device("a")  # no terminal, no --recovery-code-out
    _import(a)
    assert device_status(a).recovery_code_unseen
    shown = flows.show_code(a)
    assert (shown.code, shown.opens, shown.backups) == (code_of(a), True, 1)
    assert not device_status(a).recovery_code_unseen


def test_a_new_code_that_could_not_be_written_out_is_still_unseen(world, tmp_path):
    """--recovery-code-out to a path that cannot be written: the new code was neither shown nor written,
    so status (and watch, and the next setup) must keep saying so."""
    a = world.device("a")  # no terminal
    (tmp_path / "a-file").write_text("")
    outcome, _ = _import(a, recovery_code_out=tmp_path / "a-file" / "code.txt")
    assert outcome.backup.code_file is None and code_of(a) is not None
    assert device_status(a).recovery_code_unseen


def test_a_device_without_the_code_never_makes_a_second_one(world, tmp_path):
    a, b = world.device("a"), world.device("b")
    _import(a, recovery_code_out=tmp_path / "code")
    with pytest.raises(RecoveryCodeNeeded) as refused:
        _import(b)
    assert refused.value.exit_code == 4 and "restore" in str(refused.value)
    assert held(b) == set() and code_of(b) is None  # nothing changed
    b.vault().add(*support.new_pair(ADDRESS))  # a key that came some other way
    with pytest.raises(RecoveryCodeNeeded):
        flows.backup(b)
    assert code_of(b) is None and list(_valid_backups(world, code_of(a))) == [1]


def test_every_backup_holds_every_device_s_keys_and_restore_gets_them_all(world, tmp_path):
    """The issue's scenario: A backs up, B restores, A imports k2, B imports three keys."""
    a, b = world.device("a"), world.device("b")
    _, k1 = _import(a, recovery_code_out=tmp_path / "code")
    code = code_of(a)
    flows.restore(b, code)
    _, k2 = _import(a)
    kb = {_import(b)[1] for _ in range(3)}
    everything = {k1, k2} | kb
    backups = _valid_backups(world, code)
    assert backups[max(backups)] == everything  # the newest backup (B's) holds A's k2 too
    assert held(b) == everything
    fresh = world.device("fresh")
    assert flows.restore(fresh, code).keys == 5 and held(fresh) == everything


def test_statuses_merge_by_the_time_they_were_set(world, tmp_path):
    a, b = world.device("a"), world.device("b")
    _, k1 = _import(a, recovery_code_out=tmp_path / "code")
    flows.restore(b, code_of(a))
    a.vault().set_status(k1, "revoked")
    flows.backup(a)
    flows.backup(b)  # b still says "active", set earlier: a's later revocation wins
    assert {e.fingerprint: e.status for e in b.vault().entries()}[k1] == "revoked"
    fresh = world.device("fresh")
    flows.restore(fresh, code_of(a))
    assert {e.fingerprint: e.status for e in fresh.vault().entries()}[k1] == "revoked"


def test_pruning_keeps_a_backup_holding_a_key_the_newest_lacks(world, tmp_path):
    """Two devices that raced (each wrote without seeing the other's newest): nothing is pruned that only
    the loser holds, and restore still gets both keys."""
    a, b = world.device("a"), world.device("b")
    _import(a, recovery_code_out=tmp_path / "code")
    code = code_of(a)
    flows.restore(b, code)
    box = world.server.session()
    # b's view of the folder freezes before a's next backup: simulate the race by hiding a's new backup
    _, ka = _import(a)
    newest_a = max(box.search_header("autosmime-keys", fmt.MARKER_HEADER, "v1"))
    hidden = box.fetch("autosmime-keys", [newest_a])[newest_a]
    box.delete("autosmime-keys", [newest_a])
    for _ in range(KEEP + 1):
        _import(b)
    box.append("autosmime-keys", hidden)  # a's backup reappears: older claim, holds ka only it has
    for _ in range(KEEP + 1):
        flows.backup(b)
    assert any(ka in fps for fps in _valid_backups(world, code).values())
    fresh = world.device("fresh")
    flows.restore(fresh, code)
    assert ka in held(fresh) and held(fresh) == held(a) | held(b)


def test_rotate_writes_under_a_new_code_then_removes_the_old_backups(world, tmp_path):
    a, b = world.device("a"), world.device("b")
    _import(a, recovery_code_out=tmp_path / "old")
    old = code_of(a)
    flows.restore(b, old)
    _import(b)
    outcome = flows.rotate_code(a, recovery_code_out=tmp_path / "new")
    new = code_of(a)
    assert new != old and (tmp_path / "new").read_text().strip() == new and outcome.stored
    assert _valid_backups(world, old) == {}  # the old code opens nothing any more
    assert set().union(*_valid_backups(world, new).values()) == held(b)  # b's key came along
    with pytest.raises(RecoveryCodeNeeded):  # b still has the old code: it must not write beside the new one
        flows.backup(b)
    with pytest.raises(WrongRecoveryCode):
        flows.restore(world.device("fresh"), old)
    flows.restore(b, new)
    assert flows.backup(b).stored


def test_rotate_that_breaks_midway_keeps_the_old_code_and_backups(world, tmp_path):
    a = world.device("a")
    _import(a, recovery_code_out=tmp_path / "old")
    old = code_of(a)
    world.server.faults = lambda op: "after" if op == "append" else None
    with pytest.raises(MailboxError):
        flows.rotate_code(a)
    world.server.faults = None
    assert code_of(a) == old and list(_valid_backups(world, old)) == [1]


def test_pending_backup_is_retried_by_backup_and_key_changes_only(world, tmp_path):
    a = world.device("a")
    _import(a, recovery_code_out=tmp_path / "code")
    world.server.faults = lambda op: "before"
    outcome, _ = _import(a)
    assert outcome.backup.pending and "connection lost" in outcome.backup.reason
    world.server.faults = None
    operations = world.server.operations
    device_status(a)
    assert flows.retry_pending(world.device("nobody")) is None
    assert world.server.operations == operations  # status looked at nothing remote
    retried = flows.backup(a)
    assert retried.stored and retried.was_pending and retried.seq == 2


def test_a_key_for_another_address_is_imported_retired_and_said(world):
    """Importing someone else's (or another account's) .p12 never makes it this account's key by itself."""
    from autosmime.pki.pkcs12 import build_pfx

    a = world.device("a")
    own, own_fp = _import(a)
    key, cert, chain = support.new_pair("other@example.test")
    outcome = import_file(a, build_pfx([(key, cert, chain)], b"pw", iterations=1), b"pw")
    [new] = outcome.new
    assert (new.address, new.status, new.not_for_account) == ("other@example.test", "retired", ADDRESS)
    assert own.new[0].not_for_account is None and own.new[0].status == "active"
    assert new.fingerprint in held(a) and outcome.backup.state is BackupState.STORED   # kept and backed up
    status = device_status(a)
    assert status.keys == {"active": 1, "retired": 1} and status.signing.fingerprint == own_fp
