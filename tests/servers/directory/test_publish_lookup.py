"""Publish -> lookup -> unpublish -> 404, and every refusal: on SQLite and PostgreSQL, through the HTTP API."""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json

from autosmime.pki import tlog
from autosmime.pki.select import address_label
from autosmime.servers.directory.app import NOT_FOUND_BODY
from tests.servers.directory import support


def publish(api, user, **extra) -> dict:
    r = api.post("/v1/publish", json={"chain_pem": user.chain_pem, **extra})
    assert r.status_code == 202, r.text
    return r.json()


def confirm(api, challenge, proof=None, token=None, op="publish"):
    body = {}
    if proof is not None:
        body["proof"] = proof
    if token is not None:
        body["token"] = token
    return api.post(f"/v1/{op}/{challenge['request']}/confirm", json=body)


def publish_fast(api, pki, address, **kw):
    user = pki.user(address, issuer="fast", **kw)
    challenge = publish(api, user)
    assert challenge["mail"] == "skipped"
    r = confirm(api, challenge, support.proof_for(user, challenge))
    assert r.status_code == 200, r.text
    return user, r.json()


def test_publish_lookup_unpublish_404(api, pki, directory):
    user, done = publish_fast(api, pki, "Carol@Example.TEST")
    assert done["address"] == "carol@example.test"
    r = api.get("/v1/certs/by-email/CAROL@example.test")
    assert r.status_code == 200
    assert r.headers["cache-control"].startswith("public") and r.headers["etag"]
    answer = r.json()
    [entry] = answer["certificates"]
    der = base64.b64decode(entry["der_b64"])
    assert der == user.cert.public_bytes(support.serialization.Encoding.DER)
    assert entry["status"]["state"] == "unknown"  # no CRL distribution point
    # The proof verifies against the signed checkpoint.
    cp = tlog.open_checkpoint(answer["checkpoint"], directory.log.origin, directory.log.public_key)
    leaf = base64.b64decode(entry["leaf_b64"])
    event = json.loads(leaf)
    assert event["op"] == "publish" and event["cert"] == hashlib.sha256(der).hexdigest()
    assert event["label"] == address_label("carol@example.test").hex()
    proof = [base64.b64decode(p) for p in entry["inclusion"]]
    assert tlog.verify_inclusion(tlog.leaf_hash(leaf), entry["leaf_index"], cp.size, proof, cp.root)
    # by-sha256 finds the same certificate.
    assert api.get(f"/v1/certs/by-sha256/{entry['sha256']}").json()["certificates"][0]["der_b64"] == entry["der_b64"]
    # ETag revalidation.
    assert api.get("/v1/certs/by-email/carol@example.test", headers={"If-None-Match": r.headers["etag"]}).status_code == 304

    ch = api.post("/v1/unpublish", json={"address": "carol@example.test", "sha256": entry["sha256"], "via": "proof"})
    assert ch.status_code == 202, ch.text
    assert confirm(api, ch.json(), support.proof_for(user, ch.json()), op="unpublish").status_code == 200
    gone = api.get("/v1/certs/by-email/carol@example.test")
    never = api.get("/v1/certs/by-email/nobody@example.test")
    assert gone.status_code == never.status_code == 404
    assert gone.content == never.content == NOT_FOUND_BODY and gone.headers == never.headers
    assert api.get(f"/v1/certs/by-sha256/{entry['sha256']}").status_code == 404


def test_log_grows_consistently(api, pki, directory):
    notes = []
    for i in range(5):
        _, done = publish_fast(api, pki, f"grow{i}@example.test")
        notes.append(tlog.open_checkpoint(done["checkpoint"], directory.log.origin, directory.log.public_key))
    assert [c.size for c in notes] == [1, 2, 3, 4, 5]
    for old in notes[:-1]:
        r = api.get(f"/v1/log/consistency?from={old.size}&to=5").json()
        proof = [base64.b64decode(p) for p in r["proof"]]
        assert tlog.verify_consistency(old.size, 5, old.root, notes[-1].root, proof)
    assert api.get("/v1/log/checkpoint").text == notes[-1].note
    assert api.get("/v1/log/consistency?from=9").status_code == 400


def test_encryption_only_key_proves_possession_by_decrypting(api, pki):
    user = pki.user("dave@example.test", kind="rsa", issuer="fast", encryption_only=True)
    challenge = publish(api, user)
    assert challenge["proof"]["method"] == "decrypt"
    # A signature is no proof for a key that cannot sign; a wrong statement neither.
    assert confirm(api, challenge, {"statement_b64": base64.b64encode(b"guess").decode()}).status_code == 403
    assert confirm(api, challenge, support.proof_for(user, challenge)).status_code == 200
    assert api.get("/v1/certs/by-email/dave@example.test").status_code == 200


def test_untrusted_ca_is_refused(api, pki):
    user = pki.user("eve@example.test", issuer="evil")
    r = api.post("/v1/publish", json={"chain_pem": user.chain_pem})
    assert r.status_code == 422 and r.json()["error"] == "untrusted"


def test_expired_certificate_is_refused(api, pki):
    user = pki.user("old@example.test", not_before=_dt.datetime.now(_dt.UTC) - _dt.timedelta(days=400))
    r = api.post("/v1/publish", json={"chain_pem": user.chain_pem})
    assert r.status_code == 422


def test_address_not_in_certificate_is_refused(api, pki):
    user = pki.user("frank@example.test", issuer="fast")
    r = api.post("/v1/publish", json={"chain_pem": user.chain_pem, "address": "grace@example.test"})
    assert r.status_code == 422 and r.json()["error"] == "address_mismatch"


def test_missing_or_wrong_possession_proof(api, pki):
    user = pki.user("heidi@example.test", issuer="fast")
    other = pki.user("heidi@example.test", issuer="fast")   # same address, another key
    challenge = publish(api, user)
    assert confirm(api, challenge).status_code == 403
    assert confirm(api, challenge, support.signed_by(other, challenge)).status_code == 403
    # Signed by a key the untrusted CA certified for this address: no better.
    assert confirm(api, challenge, support.signed_by(pki.user("heidi@example.test", issuer="evil"), challenge)).status_code == 403
    # A proof for another request (replayed statement) does not count either.
    second = publish(api, user)
    assert confirm(api, second, support.proof_for(user, challenge)).status_code == 403
    assert confirm(api, challenge, support.proof_for(user, challenge)).status_code == 200
    assert api.get("/v1/certs/by-email/heidi@example.test").json()["certificates"][0]["sha256"] == \
        support.fingerprint(user.cert)


def test_confirm_is_single_use(api, pki):
    user = pki.user("ivan@example.test", issuer="fast")
    challenge = publish(api, user)
    proof = support.proof_for(user, challenge)
    assert confirm(api, challenge, proof).status_code == 200
    again = confirm(api, challenge, proof)
    assert again.status_code == 404 and again.json()["error"] == "unknown_request"


def test_old_certificate_from_fast_path_ca_needs_mail(api, pki, directory):
    # Issued by the autosmime CA an hour ago: its mailbox validation is no longer fresh.
    user = pki.user("judy@example.test", issuer="fast", not_before=_dt.datetime.now(_dt.UTC) - _dt.timedelta(hours=1))
    r = api.post("/v1/publish", json={"chain_pem": user.chain_pem})
    assert r.status_code == 503 and r.json()["error"] == "no_mail"   # this directory has no SMTP: nothing created
    # And a fresh certificate from a trusted CA that is not an autosmime CA needs the mail too.
    r = api.post("/v1/publish", json={"chain_pem": pki.user("judy@example.test").chain_pem})
    assert r.status_code == 503


def test_preference(api, pki):
    first, _ = publish_fast(api, pki, "ken@example.test")
    second, _ = publish_fast(api, pki, "ken@example.test")
    entries = api.get("/v1/certs/by-email/ken@example.test").json()["certificates"]
    assert len(entries) == 2 and not any(e["preferred"] for e in entries)
    sha = support.fingerprint(first.cert)
    ch = api.post("/v1/prefer", json={"address": "ken@example.test", "sha256": sha}).json()
    assert confirm(api, ch, support.signed_by(second, ch), op="prefer").status_code == 403   # not that cert's key
    assert confirm(api, ch, support.proof_for(first, ch), op="prefer").status_code == 200
    entries = api.get("/v1/certs/by-email/ken@example.test").json()["certificates"]
    assert entries[0]["sha256"] == sha and entries[0]["preferred"]


def test_bad_requests(api):
    assert api.get("/v1/certs/by-email/not-an-address").status_code == 400
    assert api.get("/v1/certs/by-sha256/xyz").status_code == 400
    assert api.post("/v1/publish", content=b"{").status_code == 400
    assert api.post("/v1/publish", json={"chain_pem": "garbage"}).status_code == 400
    assert api.post("/v1/nothing/x/confirm", json={}).status_code == 404
    # No listing or search route exists.
    for path in ("/v1/certs", "/v1/certs/by-email/", "/v1/search?q=a", "/search.cgi?uri=*"):
        assert api.get(path).status_code in (404, 405)
