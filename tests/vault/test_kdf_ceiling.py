"""What one untrusted backup message can make a device compute: KDF parameters above the documented ceiling
are refused before any derivation, each derivation runs once at most, and the bad-MAC diagnosis never
derives a PKCS#12 key an honest backup would not need.

Work is counted (calls of Argon2id, the RFC 7292 KDF and PBKDF2), not timed: benchmarks/bench_restore.py
has the figures.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from autosmime.errors import BackupRejected, KeyFileError, WrongRecoveryCode
from autosmime.mailbox.imap import ImapMailbox
from autosmime.pki import pkcs12
from autosmime.vault import format as fmt
from autosmime.vault.recovery import new_code
from tests.vault import backup_support as support

ADDRESS = "alice@example.test"


class Work:
    """Counts every key derivation the reader starts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.argon2 = self.pkcs12_kdf = self.pbkdf2 = 0
        real_argon2, real_kdf, real_pbkdf2 = fmt.Argon2id, pkcs12._kdf, hashlib.pbkdf2_hmac
        work = self

        class CountingArgon2id:  # Argon2id cannot be subclassed (a Rust type): wrap it
            def __init__(self, **kwargs) -> None:
                self._kdf = real_argon2(**kwargs)

            def derive(self, key_material: bytes) -> bytes:
                work.argon2 += 1
                return self._kdf.derive(key_material)

        def counting_kdf(*args, **kwargs):
            work.pkcs12_kdf += 1
            return real_kdf(*args, **kwargs)

        def counting_pbkdf2(*args, **kwargs):
            work.pbkdf2 += 1
            return real_pbkdf2(*args, **kwargs)

        monkeypatch.setattr(fmt, "Argon2id", CountingArgon2id)
        monkeypatch.setattr(pkcs12, "_kdf", counting_kdf)
        monkeypatch.setattr(hashlib, "pbkdf2_hmac", counting_pbkdf2)

    @property
    def total(self) -> int:
        return self.argon2 + self.pkcs12_kdf + self.pbkdf2


@pytest.fixture(scope="module")
def code() -> str:
    return new_code()


@pytest.fixture(scope="module")
def genuine(code) -> bytes:
    pair = support.new_pair(ADDRESS)
    p12 = pkcs12.build_pfx([pair], code.encode(), iterations=fmt.PFX_ITERATIONS)
    return fmt.build_message(address=ADDRESS, seq=1, p12=p12, certificates=[fmt.CertRecord.of(pair[1], "active")],
                             code=code)


def _with_kdf(raw: bytes, **kdf: int) -> bytes:
    manifest = json.loads(support.attachment(raw, "application/json"))
    manifest["kdf"].update(kdf)
    return support.replace_part(raw, "application/json", json.dumps(manifest).encode())


def test_the_ceiling_is_what_every_backup_is_written_with():
    """Documented in docs/backup-format.md §4: nothing above the writers' own cost."""
    assert (fmt.KdfParams.MAX_MEMORY_KIB, fmt.KdfParams.MAX_ITERATIONS, fmt.KdfParams.MAX_LANES) == \
        (fmt.SPEC_KDF.memory_kib, fmt.SPEC_KDF.iterations, fmt.SPEC_KDF.lanes) == (65536, 3, 4)


@pytest.mark.parametrize("kdf", [
    {"memory_kib": 65536 + 1},
    {"memory_kib": 256 * 1024, "iterations": 16, "lanes": 16},   # the old ceiling: ~4 s a message
    {"iterations": 4},
    {"lanes": 5},
    {"memory_kib": 4 * 1024 * 1024},
    {"iterations": 0},
    {"memory_kib": 8},                                           # below Argon2's 8 KiB per lane
])
def test_parameters_outside_the_ceiling_are_refused_before_any_derivation(genuine, code, kdf, monkeypatch):
    hostile = _with_kdf(genuine, **kdf)
    work = Work(monkeypatch)
    for call in (lambda: fmt.verify_message(hostile, code=code, address=ADDRESS),
                 lambda: fmt.authenticate(hostile, code=code, address=ADDRESS)):
        with pytest.raises(BackupRejected, match="out of (the accepted )?range"):
            call()
    assert work.total == 0


def test_a_genuine_backup_costs_each_derivation_once(genuine, code, monkeypatch):
    work = Work(monkeypatch)
    backup = fmt.verify_message(genuine, code=code, address=ADDRESS)
    assert len(backup.keys) == 1
    # Argon2id for the manifest; the PKCS#12 MAC key (RFC 7292, one call); PBKDF2 once for all bags.
    assert (work.argon2, work.pkcs12_kdf, work.pbkdf2) == (1, 1, 1)


def test_a_planted_backup_costs_one_argon2_and_no_pkcs12_derivation(code, monkeypatch):
    """Its manifest MAC fails; the diagnosis would run its 10-million-iteration PKCS#12 MAC: refused unrun."""
    planted = support.planted_backup(ADDRESS, 7)
    work = Work(monkeypatch)
    with pytest.raises(WrongRecoveryCode):
        fmt.verify_message(planted, code=code, address=ADDRESS)          # diagnose=True: the single-file API
    assert (work.argon2, work.pkcs12_kdf, work.pbkdf2) == (1, 0, 0)


def test_without_diagnosis_a_bad_mac_costs_one_argon2(genuine, monkeypatch):
    """A caller examining many candidates: the wrong code costs Argon2id only, whatever the PKCS#12 holds."""
    work = Work(monkeypatch)
    with pytest.raises(WrongRecoveryCode):
        fmt.verify_message(genuine, code=new_code(), address=ADDRESS, diagnose=False)
    assert (work.argon2, work.pkcs12_kdf, work.pbkdf2) == (1, 0, 0)
    with pytest.raises(WrongRecoveryCode):
        fmt.authenticate(genuine, code=new_code(), address=ADDRESS)     # authenticate never diagnoses by default
    assert (work.argon2, work.pkcs12_kdf, work.pbkdf2) == (2, 0, 0)


def test_diagnosis_afterwards_costs_the_pkcs12_mac_only_and_words_the_error(genuine, code, monkeypatch):
    manifest = json.loads(support.attachment(genuine, "application/json"))
    manifest["certificates"][0]["status"] = "retired"
    altered = support.replace_part(genuine, "application/json", json.dumps(manifest).encode())
    work = Work(monkeypatch)
    with pytest.raises(WrongRecoveryCode) as first:
        fmt.verify_message(altered, code=code, address=ADDRESS, diagnose=False)
    worded = fmt.diagnose(altered, code)
    assert "manifest was altered" in str(worded) and not isinstance(worded, WrongRecoveryCode)
    assert isinstance(first.value, WrongRecoveryCode)
    # no second Argon2id; the PKCS#12 opened (the code is right), so its bags' PBKDF2 ran once too
    assert (work.argon2, work.pkcs12_kdf, work.pbkdf2) == (1, 1, 1)
    assert isinstance(fmt.diagnose(genuine, new_code()), WrongRecoveryCode)


def test_parse_pfx_refuses_counts_over_its_limit_before_deriving(monkeypatch):
    pair = support.new_pair(ADDRESS)
    pfx = pkcs12.build_pfx([pair], b"pw", iterations=2048)
    work = Work(monkeypatch)
    with pytest.raises(KeyFileError, match="out of range"):
        pkcs12.parse_pfx(pfx, b"pw", max_iterations=2047)
    assert work.total == 0
    assert pkcs12.parse_pfx(pfx, b"pw", max_iterations=2048)[0].cert == pair[1]
    # bags over the limit under a MAC within it: refused before the MAC is derived, too
    from asn1crypto import pkcs12 as ap12

    loaded = ap12.Pfx.load(pfx)
    loaded["mac_data"]["iterations"] = 1000
    cheap_mac = ap12.Pfx({"version": "v3", "auth_safe": loaded["auth_safe"], "mac_data": loaded["mac_data"]}).dump(force=True)
    before = work.total
    with pytest.raises(KeyFileError, match="out of range"):
        pkcs12.parse_pfx(cheap_mac, b"pw", max_iterations=1000)
    assert work.total == before


@pytest.mark.mailserver
def test_restore_past_planted_backups_derives_no_pkcs12_of_theirs(mailstack, mail_user, tmp_path, monkeypatch):
    """Planted 'newer' backups at the ceiling: one Argon2id each, and only the genuine backup's PKCS#12 work."""
    email, password = mail_user
    account = mailstack.account(email)
    old = support.make_device(tmp_path, "old", account, password, keys=1)
    support.back_up(old, recovery_code_out=tmp_path / "code.txt")
    planted = [support.planted_backup(email, 100 + i) for i in range(3)]
    planted.append(support.planted_backup(email, 200, kdf=fmt.KdfParams(256 * 1024, 16, 16)))  # over the ceiling
    with ImapMailbox.connect(account, password) as box:
        for raw in planted:
            box.append(account.backup_folder, raw)
    new = support.make_device(tmp_path, "new", account, password)
    work = Work(monkeypatch)
    result = support.restore_with(new.home, (tmp_path / "code.txt").read_text())
    # the one over the ceiling is not even a candidate: its manifest fails the shape check, so it sorts last
    assert (result.seq, result.skipped) == (1, 3)
    assert support.fingerprints(new) == support.fingerprints(old)
    # the genuine one's PKCS#12: its bags' PBKDF2; its own MAC is not derived, the manifest MAC having
    # authenticated the file's bytes already (docs/backup-format.md §5)
    assert (work.argon2, work.pkcs12_kdf, work.pbkdf2) == (3 + 1, 0, 1)


@pytest.mark.mailserver
def test_restore_with_only_planted_backups_diagnoses_once(mailstack, mail_user, tmp_path, monkeypatch):
    email, password = mail_user
    account = mailstack.account(email)
    with ImapMailbox.connect(account, password) as box:
        box.ensure_folder(account.backup_folder)
        for i in range(3):
            box.append(account.backup_folder, support.planted_backup(email, 10 + i, pfx_iterations=fmt.PFX_ITERATIONS))
    new = support.make_device(tmp_path, "new", account, password)
    work = Work(monkeypatch)
    with pytest.raises(WrongRecoveryCode):
        support.restore_with(new.home, new_code())
    assert (work.argon2, work.pkcs12_kdf) == (3, 1)   # the newest one's error is worded; the others cost nothing more
