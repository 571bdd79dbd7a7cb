"""Messages planted in the backup folder, newer than the real backups: what they can make a device do.

Whoever can append to the folder (the provider, a compromised mail client) can put any number of
well-formed "backups" in front of the real ones. Restore and backup examine a bounded number of the
newest candidates, so a flood must not (a) make the user believe the code is wrong or that the device
lacks one, (b) make a device with the code stop backing up, (c) cost more than one Argon2id run per
planted message, nor any PKCS#12 derivation of theirs. Work is counted (as in test_kdf_ceiling), not
timed: benchmarks/bench_restore.py has the figures.

The in-memory mailbox with cheap derivation costs for the flows; one case on the real Dovecot through
the CLI, at the specification's costs.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from autosmime.agent import backup as flows
from autosmime.agent.keys import import_file
from autosmime.errors import NoAuthenticBackup, RecoveryCodeNeeded, WrongRecoveryCode
from autosmime.mailbox.imap import ImapMailbox
from autosmime.pki.pkcs12 import build_pfx
from autosmime.vault import backup as protocol
from autosmime.vault import format as fmt
from autosmime.vault.recovery import new_code
from tests.agent.world import ADDRESS, CHEAP, World, code_of, held, p12_of_new_key
from tests.vault import backup_support as support
from tests.vault.test_kdf_ceiling import Work

FOLDER = "autosmime-keys"


@pytest.fixture(autouse=True)
def _fresh_process():
    """Each test is a new process as far as the in-process memo of authentic backups goes."""
    protocol._AUTHENTIC.clear()
    yield
    protocol._AUTHENTIC.clear()


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


def planted(seq: int, *, kdf: fmt.KdfParams = CHEAP.kdf, salt: bytes | None = None) -> bytes:
    """A backup planted by someone without the code: well-formed, its own code, claiming ``seq``."""
    theirs = new_code()
    pair = support.new_pair(ADDRESS)
    return fmt.build_message(address=ADDRESS, seq=seq, p12=build_pfx([pair], theirs.encode(), iterations=1),
                             certificates=[fmt.CertRecord.of(pair[1], "active")], code=theirs, kdf=kdf, salt=salt)


def plant(world: World, count: int, first_seq: int = 1000) -> None:
    box = world.session()
    for i in range(count):
        box.append(FOLDER, planted(first_seq + i))


def _import(agent):
    data, fp = p12_of_new_key()
    outcome = import_file(agent, data, b"pw")
    assert outcome.backup.stored, outcome.backup
    return fp


def _messages(world: World) -> dict[int, bytes]:
    box = world.session()
    return box.fetch(FOLDER, box.search_header(FOLDER, fmt.MARKER_HEADER, fmt.MARKER_VALUE))


@pytest.mark.parametrize("count", [8, 20])
def test_restore_behind_planted_messages_says_so_and_examine_finds_the_keys(world, count, monkeypatch):
    a = world.device("a")
    _import(a)
    _import(a)
    code = code_of(a)
    plant(world, count)
    fresh = world.device("fresh")
    work = Work(monkeypatch)
    with pytest.raises(NoAuthenticBackup) as refused:
        flows.restore(fresh, code)
    message = str(refused.value)
    assert not isinstance(refused.value, WrongRecoveryCode)
    assert "8 newest messages in autosmime-keys are not authentic under this recovery code" in message
    assert "planted" in message and "--examine N" in message and f"{count + 2 - 8} more not examined" in message
    # one Argon2id per candidate examined, and not one PKCS#12 derivation (no diagnosis of a planted file)
    assert (work.argon2, work.pkcs12_kdf, work.pbkdf2) == (8, 0, 0)
    assert held(fresh) == set() and code_of(fresh) is None  # nothing written on the device

    result = flows.restore(fresh, code, examine=count + 2)
    assert held(fresh) == held(a) and result.keys == 2 and result.unauthentic == count
    assert code_of(fresh) == code
    # the planted ones once more, the two real backups share one salt: one derivation for both of them;
    # the real PKCS#12's own MAC is not derived either (the manifest MAC authenticated its bytes)
    assert (work.argon2, work.pkcs12_kdf) == (8 + count + 1, 0)


def test_seven_planted_are_examined_and_restore_succeeds_by_default(world, monkeypatch):
    a = world.device("a")
    _import(a)
    plant(world, 7)
    fresh = world.device("fresh")
    work = Work(monkeypatch)
    result = flows.restore(fresh, code_of(a))
    assert held(fresh) == held(a) and (result.skipped, result.unauthentic) == (7, 7)
    assert work.argon2 == 8


@pytest.mark.parametrize("count", [8, 20])
def test_backup_on_a_device_with_the_code_goes_on_and_a_fresh_restore_gets_every_key(world, count, monkeypatch):
    a, b = world.device("a"), world.device("b")
    _import(a)
    code = code_of(a)
    flows.restore(b, code)
    _import(b)  # b's backup holds a's key and b's
    plant(world, count)
    real_before = {uid for uid, raw in _messages(world).items() if _authentic(raw, code)}

    work = Work(monkeypatch)
    outcome = flows.backup(a)  # a holds the code: it must not claim otherwise, nor call the code wrong
    assert outcome.stored and outcome.unauthentic == 8
    from autosmime.agent.status import status

    assert status(a).backup.last_verified.unauthentic == 8   # `status` (no network) keeps saying so
    # 8 planted candidates, one Argon2id each; the backup a knows is recognised from its record (found by its
    # Message-ID behind the flood); the new one's key is derived once for writing and reading it back;
    # no planted file's PKCS#12 is derived
    assert work.argon2 == 8 + 1
    # every real backup is still there (nothing authentic was among the candidates, so nothing was pruned),
    # the planted ones are left alone, and the new one is the last message
    messages = _messages(world)
    assert real_before < set(messages) and max(messages) not in real_before
    assert sum(1 for raw in messages.values() if not _authentic(raw, code)) == count

    fresh = world.device("fresh")
    result = flows.restore(fresh, code)  # default bound: the new backup is among the 8 newest
    assert held(fresh) == held(a) | held(b) and result.seq == outcome.seq


def test_another_devices_backup_behind_the_flood_is_found_by_its_salt(world, monkeypatch):
    """b wrote after a's last look, then the flood came: a finds b's backup right after the one it knows."""
    a, b = world.device("a"), world.device("b")
    _import(a)
    code = code_of(a)
    flows.restore(b, code)
    kb = _import(b)
    plant(world, 20)
    work = Work(monkeypatch)
    assert flows.backup(a).stored and kb in held(a)
    assert work.argon2 == 8 + 1  # the 8 candidates; b's backup shares the salt whose key a derives once


def test_pruning_keeps_a_backup_whose_keys_the_new_one_lacks_when_planted_messages_hide_it(world):
    """b's backup is buried deep in planted messages: a never sees it, never deletes it, --examine finds it."""
    a, b = world.device("a"), world.device("b")
    _import(a)
    code = code_of(a)
    flows.restore(b, code)
    plant(world, protocol.FOLLOW_MAX + 8)
    kb = _import(b)
    plant(world, 20)
    for _ in range(protocol.KEEP + 2):  # far more backups than are kept
        assert flows.backup(a).stored
    assert kb not in held(a)  # a never saw it (that is the flood's doing) ...
    holding_kb = [raw for raw in _messages(world).values()
                  if _authentic(raw, code) and kb in {c.fingerprint for c in fmt.read_message(raw).manifest.certificates}]
    assert holding_kb  # ... but the backup holding it was never deleted
    fresh = world.device("fresh")
    flows.restore(fresh, code, examine=100)
    assert kb in held(fresh) and held(fresh) == held(a) | held(b)


def test_a_rotated_code_behind_a_flood_is_not_called_a_missing_code(world):
    """b's code was rotated away and planted messages fill the candidates: b stops, saying what it saw."""
    a, b = world.device("a"), world.device("b")
    _import(a)
    flows.restore(b, code_of(a))
    flows.rotate_code(a)
    with pytest.raises(RecoveryCodeNeeded):  # every message examined, none under b's code: rotated
        flows.backup(b)
    plant(world, 8)
    before = _messages(world)
    with pytest.raises(NoAuthenticBackup, match="rotated on another device"):
        flows.backup(b, queue=False)
    assert _messages(world) == before


def test_junk_and_planted_copies_of_the_real_salt_cost_no_derivation(world, monkeypatch):
    a = world.device("a")
    _import(a)
    code = code_of(a)
    [real] = _messages(world).values()
    salt = fmt.read_message(real).manifest.salt
    box = world.session()
    box.append(FOLDER, planted(500, salt=salt))  # the real salt: its key is derived already
    other = support.new_pair("mallory@example.test")  # another account's address: refused without a key
    box.append(FOLDER, fmt.build_message(address="mallory@example.test", seq=600, p12=b"x",
                                         certificates=[fmt.CertRecord.of(other[1], "active")], code=new_code(),
                                         kdf=CHEAP.kdf))
    altered = support.replace_part(planted(700), "application/pkcs12", b"not the attachment the manifest names")
    box.append(FOLDER, altered)
    box.append(FOLDER, b"X-Autosmime-Backup: v1\r\nSubject: junk\r\n\r\nnothing\r\n")
    fresh = world.device("fresh")
    work = Work(monkeypatch)
    result = flows.restore(fresh, code)
    assert held(fresh) == held(a) and result.unauthentic == 4
    assert work.argon2 == 1  # the real backup's key, which the planted copy of its salt then reused


def test_backups_under_one_code_cost_one_derivation_to_restore_and_one_to_back_up(world, monkeypatch):
    a = world.device("a")
    for _ in range(3):
        _import(a)
    salts = {fmt.read_message(raw).manifest.salt for raw in _messages(world).values()}
    assert len(salts) == 1 and len(_messages(world)) == protocol.KEEP
    work = Work(monkeypatch)
    fresh = world.device("fresh")
    flows.restore(fresh, code_of(a))
    assert work.argon2 == 1
    protocol._AUTHENTIC.clear()  # a later process on the device: its record still knows the backups
    flows.backup(a)
    # known from the record: no derivation to read them; the new backup's key (their salt) once, for writing it
    # and for reading it back
    assert work.argon2 == 2


def test_the_record_is_per_code(world, monkeypatch):
    """Restoring with another code forgets what the old one authenticated."""
    a, b = world.device("a"), world.device("b")
    _import(a)
    flows.restore(b, code_of(a))
    assert protocol.known_backups(b.vault(create=False))
    flows.rotate_code(a)
    flows.restore(b, code_of(a))
    known = protocol.known_backups(b.vault(create=False))
    assert set(known) == {protocol.known_tag(code_of(a), raw) for raw in _messages(world).values()}


def _authentic(raw: bytes, code: str) -> bool:
    try:
        fmt.authenticate(raw, code=code, address=ADDRESS)
    except fmt.BackupRejected:
        return False
    return True


# --- the real thing: Dovecot, the CLI, the specification's costs -------------------------------


def _cli(home, *args: str) -> subprocess.CompletedProcess:
    prog = ("import sys; from autosmime.cli import cli, backup; "
            "'restore' in cli.commands or backup.register(cli); cli.main(prog_name='autosmime')")
    return subprocess.run([sys.executable, "-c", prog, "--home", str(home), *args], capture_output=True,
                          timeout=300, stdin=subprocess.DEVNULL, env=dict(os.environ))


@pytest.mark.mailserver
def test_dovecot_eight_planted_at_the_ceiling_restore_examine_and_backup(mailstack, mail_user, tmp_path):
    email, password = mail_user
    account = mailstack.account(email)
    old = support.make_device(tmp_path, "old", account, password, keys=2)
    code_file = tmp_path / "code.txt"
    support.back_up(old, recovery_code_out=code_file)
    with ImapMailbox.connect(account, password) as box:
        for i in range(8):
            box.append(account.backup_folder, support.planted_backup(email, 100 + i))

    new = support.make_device(tmp_path, "new", account, password)
    before = support.snapshot(new.home)
    refused = _cli(new.home, "restore", "--recovery-code-file", str(code_file))
    err = refused.stderr.decode()
    assert refused.returncode == 1 and "Traceback" not in err, err
    assert err.startswith("autosmime: error: the 8 newest messages in autosmime-keys are not authentic"), err
    assert "--examine N" in err and "recovery code does not open" not in err
    assert support.snapshot(new.home) == before

    found = _cli(new.home, "restore", "--recovery-code-file", str(code_file), "--examine", "9")
    assert found.returncode == 0, found.stderr.decode()
    assert support.fingerprints(support.Vault.open(new.home)) == support.fingerprints(old)
    assert b"8 messages in the backup folder do not open with your recovery code" in found.stderr

    stored = _cli(old.home, "backup")  # the old device holds the code: it backs up past the planted ones
    assert stored.returncode == 0 and b"key backup 2 stored" in stored.stderr, stored.stderr.decode()
    fresh = support.make_device(tmp_path, "fresh", account, password)
    again = _cli(fresh.home, "restore", "--recovery-code-file", str(code_file))
    assert again.returncode == 0 and b"restored backup 2" in again.stderr, again.stderr.decode()
    assert support.fingerprints(support.Vault.open(fresh.home)) == support.fingerprints(old)
