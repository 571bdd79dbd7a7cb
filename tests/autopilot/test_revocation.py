"""A signer revoked at the devstack CA after sending, as bob's ``read UID`` and ``inbox`` see it (real stack).

Two fresh senders each mail bob; then one revokes her certificate for keyCompromise and the other as
superseded (``autosmime revoke``, the CA re-signs its CRL at once). Bob's reads fetch the CA's CRL:
the compromised signer's mail is ``revoked`` (exit 1), the superseded one's stays good with a note.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from pathlib import Path

from autosmime.mailbox.account import load_account
from tests.autopilot.conftest import Stack, User, run_cli, set_up_user


def _uid(home: Path, subject: str) -> int:
    from autosmime.mailbox.credentials import get_password
    from autosmime.mailbox.imap import ImapMailbox

    account = load_account(home)
    with ImapMailbox.connect(account, get_password(account, home)) as box:
        [uid] = box.wait_for("INBOX", "Subject", subject, timeout=30)
    return uid


def test_a_revoked_signer_reads_revoked_and_a_superseded_one_good_with_a_note(
        stack: Stack, correspondents: tuple[User, User], tmp_path: Path) -> None:
    _, bob = correspondents
    compromised, superseded = set_up_user(stack, tmp_path / "a"), set_up_user(stack, tmp_path / "b")
    subjects = {}
    for sender in (compromised, superseded):
        subjects[sender.address] = subject = f"revocation {secrets.token_hex(4)}"
        r = run_cli(*sender.args("send", "--to", bob.address, "--subject", subject), input="signed, then revoked\n",
                    env=stack.client_env())
        assert r.returncode == 0 and "encrypted and signed" in r.stderr, r.stderr
    uid_c, uid_s = (_uid(bob.home, subjects[u.address]) for u in (compromised, superseded))
    time.sleep(1.1)  # the CRL's revocation time has whole seconds: revoked strictly after the signing
    for sender, reason in ((compromised, "keyCompromise"), (superseded, "superseded")):
        r = run_cli(*sender.args("revoke", "--reason", reason), env=stack.client_env())
        assert r.returncode == 0, r.stderr
    # Bob's other tests may have cached the CA's CRL from before these revocations; a cached CRL is
    # trusted until its nextUpdate (a week), by design: start from none, as a reader a day later would.
    shutil.rmtree(bob.home / "crl", ignore_errors=True)

    r = run_cli(*bob.args("read", str(uid_c)), env=stack.client_env())
    assert r.returncode == 1, r.stderr
    assert "signed, then revoked" in r.stdout                      # the content is still shown
    assert r.stderr == f"autosmime: encrypted; signed by {compromised.address} (revoked)\n"
    r = run_cli(*bob.args("read", str(uid_c), "--json"), env=stack.client_env())
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "revoked" and doc["exit"] == 1
    layer = doc["layers"][doc["decided_by"]]
    assert layer["verdict"] == "revoked" and "(keyCompromise)" in layer["detail"]
    assert layer["signers"][0]["revocation"]["status"] == "revoked"
    assert layer["signers"][0]["revocation"]["reason"] == "keyCompromise"
    assert list((bob.home / "crl").glob("*.der")), "the CA's CRL is cached in bob's home"

    r = run_cli(*bob.args("read", str(uid_s)), env=stack.client_env())
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith(f"autosmime: encrypted; signed by {superseded.address} (good; the certificate was "
                               "revoked on ")
    assert r.stderr.endswith("(superseded), after this message was signed)\n"), r.stderr

    r = run_cli(*bob.args("inbox", "--json", "--limit", "50"), env=stack.client_env())
    assert r.returncode == 0, r.stderr
    by_uid = {m["uid"]: m for m in json.loads(r.stdout)}
    c, s = by_uid[uid_c], by_uid[uid_s]
    assert (c["verdict"], c["signer"]) == ("revoked", compromised.address)
    assert ("clear-signed", "revoked") in [(x["kind"], x["verdict"]) for x in c["layers"]]
    assert c["summary"] == f"encrypted; signed by {compromised.address} (revoked)"
    assert s["verdict"] == "good" and "(superseded), after this message was signed" in s["summary"]
