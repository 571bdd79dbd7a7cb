"""``keys activate|retire`` and the rule that a stopgap certificate never silently replaces a CA-issued one."""

from __future__ import annotations

import json

from autosmime.pki.certs import fingerprint
from autosmime.vault.store import Vault, is_provisional
from tests.cli import support
from tests.cli.support import run

ALICE = "alice@example.test"


def _statuses(home) -> dict[str, str]:
    r = run(home, "keys", "--json")
    assert r.returncode == 0, r.stderr
    return {k["fingerprint"]: k["status"] for k in json.loads(r.stdout)["keys"]}


def test_importing_a_newer_self_signed_cert_keeps_the_ca_issued_one_active(tmp_path):
    home = tmp_path / "home"
    support.offline_account(home, ALICE)
    ca = support.ca_issued(ALICE)
    Vault.open(home).add(*ca)
    stopgap = support.self_signed(ALICE)
    assert is_provisional(stopgap[1]) and not is_provisional(ca[1])
    r = run(home, "import", str(support.p12(tmp_path / "s.p12", stopgap)), "--password-file", str(tmp_path / "pw"))
    assert r.returncode == 0, r.stderr
    ca_fp, new_fp = fingerprint(ca[1]), fingerprint(stopgap[1])
    assert _statuses(home) == {ca_fp: "active", new_fp: "retired"}
    hint = [line for line in r.stderr.splitlines() if "kept the CA-issued key" in line]
    assert len(hint) == 1 and f"autosmime keys activate {new_fp}" in hint[0], r.stderr

    r = run(home, "keys", "activate", new_fp)
    assert r.returncode == 0, r.stderr
    assert _statuses(home) == {ca_fp: "retired", new_fp: "active"}
    assert "is now active" in r.stderr and "retired" in r.stderr


def test_a_short_lived_ca_cert_does_not_replace_a_long_one_but_a_renewal_does(tmp_path):
    vault = Vault.open(tmp_path / "home")
    long_ = support.ca_issued(ALICE, days_ago=10)
    short = support.ca_issued(ALICE, days_ago=0, days=3)
    renewal = support.ca_issued(ALICE, days_ago=0)
    vault.add(*long_)
    vault.add(*short)
    assert {e.fingerprint: e.status for e in vault.entries()}[fingerprint(long_[1])] == "active"
    vault.add(*renewal)
    status = {e.fingerprint: e.status for e in vault.entries()}
    assert status == {fingerprint(long_[1]): "retired", fingerprint(short[1]): "retired",
                      fingerprint(renewal[1]): "active"}


def test_a_self_signed_cert_still_replaces_an_expired_ca_cert(tmp_path):
    vault = Vault.open(tmp_path / "home")
    old = support.ca_issued(ALICE, days_ago=400, days=30)
    stopgap = support.self_signed(ALICE)
    vault.add(*old)
    vault.add(*stopgap)
    assert {e.fingerprint: e.status for e in vault.entries()}[fingerprint(stopgap[1])] == "active"


def test_activating_an_expired_key_is_refused_and_changes_nothing(tmp_path):
    home = tmp_path / "home"
    support.offline_account(home, ALICE)
    vault = Vault.open(home)
    old = support.ca_issued(ALICE, days_ago=400, days=30)
    vault.add(*old)
    vault.add(*support.ca_issued(ALICE))
    before = (home / "vault.bin").read_bytes()
    r = run(home, "keys", "activate", fingerprint(old[1])[:16])
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("autosmime: error: ") and "expired" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert (home / "vault.bin").read_bytes() == before


def test_activating_a_key_for_another_address_is_refused(tmp_path):
    home = tmp_path / "home"
    support.offline_account(home, ALICE)
    other = support.ca_issued("mallory@example.test")
    Vault.open(home).add(*other)
    before = (home / "vault.bin").read_bytes()
    r = run(home, "keys", "activate", fingerprint(other[1]))
    assert r.returncode == 1 and "not for the account's address alice@example.test" in r.stderr, r.stderr
    assert (home / "vault.bin").read_bytes() == before


def test_retiring_the_only_active_key_warns_and_the_fingerprint_may_be_pasted_with_colons(tmp_path):
    home = tmp_path / "home"
    support.offline_account(home, ALICE)
    only = support.ca_issued(ALICE)
    Vault.open(home).add(*only)
    fp = fingerprint(only[1])
    pasted = ":".join(fp[i:i + 2] for i in range(0, 16, 2)).upper()
    r = run(home, "keys", "retire", pasted)
    assert r.returncode == 0, r.stderr
    assert "autosmime: warning: alice@example.test has no active key left" in r.stderr
    assert _statuses(home) == {fp: "retired"}
    r = run(home, "keys", "retire", fp, "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["changed"] is False and doc["status"] == "retired"


def test_unknown_fingerprint_is_one_line(tmp_path):
    home = tmp_path / "home"
    Vault.open(home).add(*support.ca_issued(ALICE))
    r = run(home, "keys", "activate", "00" * 8)
    assert r.returncode == 1 and r.stderr.startswith("autosmime: error: no key with fingerprint")
    assert len(r.stderr.splitlines()) == 1


def test_status_with_an_unreadable_account_file_says_so_rather_than_no_account(tmp_path):
    """"account: none (run `autosmime setup`)" would send the user to setup, which refuses the broken file."""
    home = tmp_path / "home"
    support.offline_account(home, ALICE)
    Vault.open(home).add(*support.ca_issued(ALICE))
    (home / "account.json").write_text("{garbage")
    for args in (("status",), ("status", "--json")):
        r = run(home, *args)
        assert r.returncode == 1 and r.stdout == "", r
        assert r.stderr.startswith("autosmime: error: ") and "account.json" in r.stderr
        assert len(r.stderr.splitlines()) == 1
    (home / "account.json").unlink()  # no account at all is still a report, not an error
    r = run(home, "status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["account"] is None, r.stderr


def test_status_on_a_device_restored_from_a_backup_does_not_say_no_backup_was_made(tmp_path):
    """A second device restored backup 3 (made by the first one): 'no backup made yet' would be false."""
    from autosmime.agent.backup import SEQ_SEEN

    home = tmp_path / "home"
    support.offline_account(home, ALICE)
    vault = Vault.open(home)
    vault.add(*support.ca_issued(ALICE))
    vault.update_state(**{SEQ_SEEN: 3})
    r = run(home, "status")
    assert r.returncode == 0, r.stderr
    assert "no backup made yet" not in r.stdout and "backup #3" in r.stdout, r.stdout


def test_the_keys_table_shows_a_fingerprint_keys_activate_takes_on_an_80_column_terminal(tmp_path):
    """`keys activate` wants 8 or more hex digits: the table must not cut the fingerprint to '0F:B8:50:…'."""
    home = tmp_path / "home"
    support.offline_account(home, ALICE)
    ca = support.ca_issued(ALICE)
    Vault.open(home).add(*ca)
    r = run(home, "keys", env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    short = ":".join(fingerprint(ca[1])[i:i + 2] for i in range(0, 16, 2)).upper()
    assert short in r.stdout and ALICE in r.stdout and "active" in r.stdout, r.stdout
