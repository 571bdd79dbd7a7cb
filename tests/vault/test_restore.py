"""Restore on a second device from the real loopback Dovecot."""

from __future__ import annotations

import logging

import pytest

from autosmime.mailbox.imap import ImapMailbox
from autosmime.pki.pkcs12 import build_pfx
from autosmime.vault import format as fmt
from autosmime.vault.recovery import load_code
from tests.vault import backup_support as support

pytestmark = pytest.mark.mailserver




def test_second_device_restores_every_key_and_decrypts_old_and_new_mail(mailstack, mail_user, tmp_path):
    email, password = mail_user
    account = mailstack.account(email)
    old = support.make_device(tmp_path, "old", account, password, keys=1)
    old_cert = old.entries()[0].cert
    old.add(*support.new_pair(email))  # a renewal: the first key becomes "retired"
    old.add(*support.new_pair("alias@example.test"))
    new_cert = old.signing_pair(email).cert
    support.back_up(old, recovery_code_out=tmp_path / "code.txt")

    new = support.make_device(tmp_path, "new", account, password)
    result = support.restore_with(new.home, (tmp_path / "code.txt").read_text())
    assert (result.keys, result.added, result.seq, result.skipped) == (3, 3, 1, 0)
    assert {(e.fingerprint, e.status) for e in new.entries()} == {(e.fingerprint, e.status) for e in old.entries()}
    assert {e.status for e in new.entries()} == {"active", "retired"}
    assert load_code(new.home) == load_code(old.home)  # the code is kept for the next backups
    assert new.state["backup_seq_seen"] == 1
    assert new.signing_pair(email).cert == new_cert

    smime = pytest.importorskip("autosmime.smime")
    for cert in (old_cert, new_cert):
        clear = b"From: x@example.test\r\nTo: " + email.encode() + b"\r\nSubject: t\r\n\r\nsecret for " + \
            cert.serial_number.to_bytes(20, "big").hex().encode() + b"\r\n"
        encrypted = smime.encrypt(clear, [cert])
        decrypted = smime.decrypt(encrypted, new.decryption_keys())
        assert cert.serial_number.to_bytes(20, "big").hex().encode() in decrypted.message


def test_restore_is_idempotent_and_merges_with_keys_already_here(mailstack, mail_user, tmp_path):
    email, password = mail_user
    account = mailstack.account(email)
    old = support.make_device(tmp_path, "old", account, password, keys=2)
    support.back_up(old, recovery_code_out=tmp_path / "code.txt")
    code = (tmp_path / "code.txt").read_text()
    new = support.make_device(tmp_path, "new", account, password, keys=1)
    assert support.restore_with(new.home, code).added == 2
    assert support.restore_with(new.home, code).added == 0
    assert support.fingerprints(new) >= support.fingerprints(old) and len(new.entries()) == 3


def test_restore_skips_a_planted_newer_backup_and_takes_the_valid_one(mailstack, mail_user, tmp_path, caplog):
    email, password = mail_user
    account = mailstack.account(email)
    old = support.make_device(tmp_path, "old", account, password, keys=1)
    support.back_up(old, recovery_code_out=tmp_path / "code.txt")
    # someone with mailbox access plants a "newer" backup made with their own code
    from autosmime.vault.recovery import new_code

    theirs = new_code()
    pair = support.new_pair(email)
    raw = fmt.build_message(address=email, seq=99, p12=build_pfx([pair], theirs.encode()),
                            certificates=[fmt.CertRecord.of(pair[1], "active")], code=theirs)
    with ImapMailbox.connect(account, password) as box:
        box.append(account.backup_folder, raw)
    new = support.make_device(tmp_path, "new", account, password)
    with caplog.at_level(logging.WARNING, logger="autosmime.vault.backup"):
        result = support.restore_with(new.home, (tmp_path / "code.txt").read_text())
    assert (result.seq, result.skipped) == (1, 1)
    assert support.fingerprints(new) == support.fingerprints(old)
    assert fmt.fingerprint(pair[1]) not in support.fingerprints(new)
    assert any("skipped a newer key backup" in r.message for r in caplog.records)
    # only authentic numbers count for the next backup: the planted 99 does not push the sequence
    assert support.back_up_or_raise(new) == 2


def test_restored_device_rejects_a_later_rollback(mailstack, mail_user, tmp_path):
    from autosmime.errors import RolledBackBackup

    email, password = mail_user
    account = mailstack.account(email)
    old = support.make_device(tmp_path, "old", account, password, keys=1)
    support.back_up(old, recovery_code_out=tmp_path / "code.txt")
    support.back_up_or_raise(old)
    code = (tmp_path / "code.txt").read_text()
    new = support.make_device(tmp_path, "new", account, password)
    assert support.restore_with(new.home, code).seq == 2
    with ImapMailbox.connect(account, password) as box:  # an attacker removes the newest backup
        folder = account.backup_folder
        newest = max(box.search_header(folder, fmt.MARKER_HEADER, "v1"))
        box.delete(folder, [newest])
    with pytest.raises(RolledBackBackup):
        support.restore_with(new.home, code)
