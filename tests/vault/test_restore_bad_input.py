"""Every bad input to ``autosmime restore``: clear error, non-zero exit, local vault unchanged.

Each test drives the real CLI in a subprocess against the loopback Dovecot,
after a genuine backup was written by another device of the same account.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import pkcs12 as ap12
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from autosmime.mailbox.account import load_account
from autosmime.mailbox.imap import ImapMailbox
from autosmime.pki.pkcs12 import build_pfx
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.vault import format as fmt
from autosmime.vault.recovery import load_code, new_code
from tests.vault import backup_support as support

pytestmark = pytest.mark.mailserver




@dataclass
class Scene:
    account: object
    password: str
    genuine: dict[int, bytes]  # sequence number -> a genuine backup message written by another device
    new_home: Path  # a second device with the account but no keys
    code_file: Path
    tmp: Path

    @property
    def code(self) -> str:
        return self.code_file.read_text().strip()


@pytest.fixture(scope="module")
def origin(mailstack, tmp_path_factory):
    """One account whose first device wrote backups 1 and 2 (made once: real backups are slow)."""
    email, password = mailstack.fresh_user()
    account = mailstack.account(email)
    root = tmp_path_factory.mktemp("origin")
    old = support.make_device(root, "old", account, password, keys=1)
    support.back_up(old, recovery_code_out=root / "code.txt")
    support.back_up_or_raise(old)
    with ImapMailbox.connect(account, password) as box:
        folder = account.backup_folder
        raws = box.fetch(folder, box.search_header(folder, fmt.MARKER_HEADER, "v1"))
    genuine = {fmt.read_message(raw).manifest.seq: raw for raw in raws.values()}
    assert sorted(genuine) == [1, 2]
    return account, password, genuine, root / "code.txt"


@pytest.fixture
def scene(origin, tmp_path) -> Scene:
    """The folder reset to hold only genuine backup 1; a fresh second device."""
    account, password, genuine, code_file = origin
    with ImapMailbox.connect(account, password) as box:
        folder = account.backup_folder
        box.ensure_folder(folder)
        box.delete(folder, box.search_header(folder, fmt.MARKER_HEADER, "v1"))
        box.append(folder, genuine[1])
    new = support.make_device(tmp_path, "new", account, password)
    return Scene(account, password, genuine, new.home, code_file, tmp_path)


def add_backup_2(scene: Scene) -> None:
    with ImapMailbox.connect(scene.account, scene.password) as box:
        box.append(scene.account.backup_folder, scene.genuine[2])


def cli_restore(scene: Scene, code_file: Path | None = None) -> subprocess.CompletedProcess:
    prog = ("import sys; from autosmime.cli import cli, backup; "
            "'restore' in cli.commands or backup.register(cli); cli.main(prog_name='autosmime')")
    return subprocess.run(
        [sys.executable, "-c", prog, "--home", str(scene.new_home), "restore",
         "--recovery-code-file", str(code_file or scene.code_file)],
        capture_output=True, timeout=120, stdin=subprocess.DEVNULL, env=dict(os.environ))


def assert_refused(scene: Scene, before: dict, result: subprocess.CompletedProcess, *, exit_code: int = 1,
                   says: str) -> None:
    err = result.stderr.decode()
    assert result.returncode == exit_code, err
    assert err.startswith("autosmime: error: ") and says in err, err
    assert "Traceback" not in err and result.stdout == b""
    assert scene.code not in err
    assert support.snapshot(scene.new_home) == before  # not one byte of the local vault changed


def test_bad_input_00_control_the_genuine_backup_restores(scene):
    before = support.snapshot(scene.new_home)
    result = cli_restore(scene)
    assert result.returncode == 0, result.stderr.decode()
    assert b"restored backup 1" in result.stderr
    assert support.snapshot(scene.new_home) != before


def test_bad_input_01_wrong_code(scene):
    before = support.snapshot(scene.new_home)
    wrong = scene.tmp / "wrong.txt"
    wrong.write_text(new_code())
    assert_refused(scene, before, cli_restore(scene, wrong), says="recovery code does not open")


def test_bad_input_02_truncated_attachment(scene):
    support.rewrite_folder(scene.account, scene.password, lambda raw: support.replace_part(
        raw, "application/pkcs12", support.attachment(raw, "application/pkcs12")[:-64]))
    before = support.snapshot(scene.new_home)
    assert_refused(scene, before, cli_restore(scene), says="altered or truncated")


def test_bad_input_03_altered_attachment_byte(scene):
    def flip(raw: bytes) -> bytes:
        p12 = bytearray(support.attachment(raw, "application/pkcs12"))
        p12[100] ^= 0x80
        return support.replace_part(raw, "application/pkcs12", bytes(p12))

    support.rewrite_folder(scene.account, scene.password, flip)
    before = support.snapshot(scene.new_home)
    assert_refused(scene, before, cli_restore(scene), says="altered or truncated")


def test_bad_input_04_altered_manifest(scene):
    def revoke(raw: bytes) -> bytes:
        manifest = json.loads(support.attachment(raw, "application/json"))
        manifest["certificates"][0]["status"] = "revoked"
        return support.replace_part(raw, "application/json", json.dumps(manifest).encode())

    support.rewrite_folder(scene.account, scene.password, revoke)
    before = support.snapshot(scene.new_home)
    assert_refused(scene, before, cli_restore(scene), says="manifest was altered")


def test_bad_input_05_planted_unprotected_p12_with_forged_manifest(scene):
    key = new_key("ec")
    ca_key, ca = make_ca("attacker CA", new_key("ec"))
    cert = make_mailbox_cert(scene.account.email, key.public_key(), ca_key, ca)
    unencrypted = pkcs12.serialize_key_and_certificates(None, key, cert, None, serialization.NoEncryption())
    # no MAC at all: the kind of file `cryptography` opens with ANY password
    planted = ap12.Pfx({"version": "v3", "auth_safe": ap12.Pfx.load(unencrypted)["auth_safe"]}).dump()

    def plant(raw: bytes) -> bytes:
        manifest = json.loads(support.attachment(raw, "application/json"))
        manifest["seq"] = 2
        manifest["p12"]["sha256"] = hashlib.sha256(planted).hexdigest()
        manifest["certificates"] = [fmt.CertRecord.of(cert, "active").to_json()]
        raw = support.replace_part(raw, "application/pkcs12", planted)
        return support.replace_part(raw, "application/json", json.dumps(manifest).encode())

    support.rewrite_folder(scene.account, scene.password, plant)
    before = support.snapshot(scene.new_home)
    assert_refused(scene, before, cli_restore(scene), says="no integrity MAC")


def test_bad_input_06_manifest_of_another_account(scene):
    # A genuine backup of another account (same code reused there) moved into this folder.
    pair = support.new_pair("mallory@example.test")
    foreign = fmt.build_message(address="mallory@example.test", seq=5,
                                p12=build_pfx([pair], scene.code.encode()),
                                certificates=[fmt.CertRecord.of(pair[1], "active")], code=scene.code)
    support.rewrite_folder(scene.account, scene.password, lambda raw: foreign)
    before = support.snapshot(scene.new_home)
    assert_refused(scene, before, cli_restore(scene), says="belongs to another account")


def test_bad_input_07_rolled_back_sequence_number(scene):
    add_backup_2(scene)
    assert cli_restore(scene).returncode == 0  # the new device has now seen number 2
    with ImapMailbox.connect(scene.account, scene.password) as box:  # attacker puts the folder back to 1
        folder = scene.account.backup_folder
        box.delete(folder, [max(box.search_header(folder, fmt.MARKER_HEADER, "v1"))])
    before = support.snapshot(scene.new_home)
    assert_refused(scene, before, cli_restore(scene), says="older than number 2")


def test_bad_input_08_deleted_folder_exits_3(scene):
    import imapclient

    client = imapclient.IMAPClient("127.0.0.1", port=scene.account.imap_port, ssl=False)
    client.starttls(__import__("ssl").create_default_context(cafile=scene.account.ca_file))
    client.login(scene.account.username, scene.password)
    client.delete_folder(scene.account.backup_folder)
    client.logout()
    before = support.snapshot(scene.new_home)
    assert_refused(scene, before, cli_restore(scene), exit_code=3, says="no key backup")


def test_bad_input_09_wrong_imap_password(scene):
    Path(load_account(scene.new_home).password_file).write_text("wrong-password")
    before = support.snapshot(scene.new_home)
    assert_refused(scene, before, cli_restore(scene), says="rejected the login")


def test_bad_input_10_empty_folder_exits_3(scene):
    with ImapMailbox.connect(scene.account, scene.password) as box:
        folder = scene.account.backup_folder
        box.delete(folder, box.search_header(folder, fmt.MARKER_HEADER, "v1"))
    before = support.snapshot(scene.new_home)
    assert_refused(scene, before, cli_restore(scene), exit_code=3, says="no key backup")


def test_bad_input_11_malformed_code_file(scene):
    bad = scene.tmp / "bad.txt"
    bad.write_text("1234-5678")
    before = support.snapshot(scene.new_home)
    assert_refused(scene, before, cli_restore(scene, bad), says="not a recovery code")


def test_bad_input_12_no_code_and_no_terminal_is_a_usage_error(scene):
    prog = ("import sys; from autosmime.cli import cli, backup; "
            "'restore' in cli.commands or backup.register(cli); cli.main(prog_name='autosmime')")
    before = support.snapshot(scene.new_home)
    result = subprocess.run([sys.executable, "-c", prog, "--home", str(scene.new_home), "restore"],
                            capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert_refused(scene, before, result, exit_code=2, says="--recovery-code-file")


def test_bad_input_13_every_candidate_invalid_reports_the_newest_error(scene):
    # Two backups, both altered: the error is the newest one's, and nothing is imported.
    add_backup_2(scene)
    support.rewrite_folder(scene.account, scene.password, lambda raw: support.replace_part(
        raw, "application/pkcs12", support.attachment(raw, "application/pkcs12")[:-1]))
    before = support.snapshot(scene.new_home)
    assert_refused(scene, before, cli_restore(scene), says="altered or truncated")
    assert load_code(scene.new_home) is None
