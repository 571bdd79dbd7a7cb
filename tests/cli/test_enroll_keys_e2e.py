"""enroll, renew and revoke with --json, and ``keys activate`` choosing the older CA certificate again,
on the real devstack (Dovecot, Postfix, the CA)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.enroll.conftest import add_account, devstack, run_cli  # noqa: F401  (devstack: the fixture)


def test_enroll_renew_activate_revoke_json(devstack: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "alice"
    env = {"AUTOSMIME_DNS_ZONE": devstack["DNS_ZONE"]}
    address = add_account(home, devstack, "alice")
    r = run_cli("--home", str(home), "enroll", "--ca", devstack["CA_URL"], "--json", env=env)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["address"] == address and len(first["certificate"]["sha256"]) == 64
    assert first["backup"]["state"] == "stored" and first["backup_error"] is None

    r = run_cli("--home", str(home), "renew", "--json", env=env)
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["renewed"] is False and doc["decided_by"] == "ARI" and "certificate" not in doc
    r = run_cli("--home", str(home), "renew", "--force", "--json", env=env)
    second = json.loads(r.stdout)
    assert r.returncode == 0 and second["renewed"] is True and second["backup"]["keys"] == 2
    old, new = first["certificate"]["sha256"], second["certificate"]["sha256"]

    # the older certificate is CA-issued and valid: it may be chosen again
    r = run_cli("--home", str(home), "keys", "activate", old[:16], "--json")
    change = json.loads(r.stdout)
    assert r.returncode == 0 and change["changed"] is True and change["retired"] == [new], r.stderr
    assert change["backup"]["state"] == "stored" and change["backup"]["seq"] == 3
    keys = json.loads(run_cli("--home", str(home), "keys", "--json").stdout)["keys"]
    assert {k["fingerprint"]: k["status"] for k in keys} == {old: "active", new: "retired"}

    r = run_cli("--home", str(home), "revoke", "--json", env=env)
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["certificate"]["sha256"] == old and doc["reason"] == "superseded"
    r = run_cli("--home", str(home), "keys", "activate", old)
    assert r.returncode == 1 and r.stderr.startswith("autosmime: error: key ") and "revoked" in r.stderr
