"""Fault injection: the connection to Dovecot is cut after a random number of bytes during backups.

Invariant checked after every run: the folder holds at least one valid
backup, and it restores every key that had been backed up successfully
before the run. A CuttingProxy (real TCP resets) sits between the device
and the real Dovecot; checks go to Dovecot directly.
"""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from autosmime.devstack.faultproxy import CuttingProxy
from autosmime.mailbox.imap import ImapMailbox
from autosmime.vault import format as fmt
from autosmime.vault.backup import KEEP
from autosmime.vault.recovery import load_code
from tests.vault import backup_support as support

pytestmark = pytest.mark.mailserver




class FolderChecker:
    """Reads the folder straight from Dovecot and fully verifies each backup (once per distinct message)."""

    def __init__(self, account, password: str, code: str) -> None:
        self.account, self.password, self.code = account, password, code
        self._verified: dict[bytes, frozenset[str] | None] = {}

    def valid_backups(self) -> dict[int, frozenset[str]]:
        """Sequence number -> fingerprints, for every valid backup in the folder."""
        with ImapMailbox.connect(self.account, self.password) as box:
            folder = self.account.backup_folder
            raws = box.fetch(folder, box.search_header(folder, fmt.MARKER_HEADER, "v1"))
        out = {}
        for raw in raws.values():
            digest = hashlib.sha256(raw).digest()
            if digest not in self._verified:
                try:
                    backup = fmt.verify_message(raw, code=self.code, address=self.account.email)
                    self._verified[digest] = frozenset(fmt.fingerprint(p.cert) for p in backup.keys)
                except fmt.BackupRejected:
                    self._verified[digest] = None
            if self._verified[digest] is not None:
                out[fmt.read_message(raw).manifest.seq] = self._verified[digest]
        return out


@pytest.mark.parametrize("runs", [pytest.param(100, id="100-runs", marks=pytest.mark.timeout(900)),
                                  pytest.param(400, id="400-runs", marks=[pytest.mark.slow, pytest.mark.timeout(3000)])])
def test_cut_connections_never_leave_the_folder_without_a_valid_backup(mailstack, tmp_path, runs):
    seed = int(os.environ.get("AUTOSMIME_FAULT_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    email, password = mailstack.fresh_user()
    direct = mailstack.account(email)
    proxy = CuttingProxy("127.0.0.1", mailstack.imap_port)
    try:
        vault = support.make_device(tmp_path, "device", mailstack.account(email, imap_port=proxy.port), password,
                                    keys=2)
        assert support.back_up(vault).seq == 1
        code = load_code(vault.home)
        checker = FolderChecker(direct, password, code)
        covered = support.fingerprints(vault)  # keys some valid backup must hold
        with ImapMailbox.connect(direct, password) as box:
            folder = direct.backup_folder
            size = max(len(r) for r in box.fetch(folder, box.search_header(folder, fmt.MARKER_HEADER, "v1"))
                       .values())
        cut_runs = ok_runs = 0
        for run in range(runs):
            if run % 10 == 9:
                vault.add(*support.new_pair(email))
                size += 1500
            # Client bytes of a whole backup session: TLS + login + APPEND literal + small commands.
            limit = rng.randint(0, int(size * 1.15) + 4000)
            proxy.cut_after(limit)
            before = support.fingerprints(vault)
            status = support.back_up(vault)
            if vault.state.get("backup_pending"):
                cut_runs += 1
                assert status.pending, status
            else:
                ok_runs += 1
                covered = before
            valid = checker.valid_backups()
            where = f"seed {seed}, run {run}, cut after {limit} bytes: {status}"
            assert valid, f"no valid backup left ({where})"
            assert any(fps >= covered for fps in valid.values()), f"keys lost ({where})"
            if not vault.state.get("backup_pending"):
                assert max(valid) == vault.state["backup_seq_seen"], where
                assert len(valid) <= KEEP, where  # pruned
        assert cut_runs and ok_runs, (cut_runs, ok_runs)  # both paths were exercised

        # The network heals: the queued backup goes out and a new device gets every key.
        proxy.cut_after(None)
        support.retry(vault)
        assert not vault.state.get("backup_pending"), f"seed {seed}: {vault.state.get('backup_pending_reason')}"
        valid = checker.valid_backups()
        assert len(valid) == KEEP and valid[max(valid)] == support.fingerprints(vault)
        fresh = support.make_device(tmp_path, "fresh", direct, password)
        result = support.restore_with(fresh.home, code)
        assert result.seq == max(valid)
        assert support.fingerprints(fresh) == support.fingerprints(vault)
    finally:
        proxy.stop()
