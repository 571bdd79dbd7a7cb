"""The lookup memo (service.Answers) is a pure cache: every change made by any process is in the next answer.

Two Directory objects on one database stand for two app processes: one answers (and memoises) lookups,
the other publishes, withdraws and updates.
"""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from autosmime.pki import tlog
from autosmime.servers.directory.app import make_app
from autosmime.servers.directory.schema import certs
from autosmime.servers.directory.service import Directory
from tests.servers.directory import support


@pytest.fixture
def two(pki, db_url):
    reader, writer = Directory(support.config(pki, db_url)), Directory(support.config(pki, db_url))
    with TestClient(make_app(reader)) as a, TestClient(make_app(writer)) as b:
        yield reader, a, writer, b
    reader.engine.dispose()
    writer.engine.dispose()


def publish(api, user) -> None:
    ch = api.post("/v1/publish", json={"chain_pem": user.chain_pem})
    assert ch.status_code == 202, ch.text
    r = api.post(f"/v1/publish/{ch.json()['request']}/confirm", json={"proof": support.proof_for(user, ch.json())})
    assert r.status_code == 200, r.text


def verified(answer: dict, directory: Directory) -> tlog.Checkpoint:
    """The answer's checkpoint, after checking every certificate's inclusion proof against it."""
    cp = tlog.open_checkpoint(answer["checkpoint"], directory.log.origin, directory.log.public_key)
    assert answer["tree_size"] == cp.size
    for entry in answer["certificates"]:
        leaf = base64.b64decode(entry["leaf_b64"])
        proof = [base64.b64decode(p) for p in entry["inclusion"]]
        assert tlog.verify_inclusion(tlog.leaf_hash(leaf), entry["leaf_index"], cp.size, proof, cp.root)
    return cp


def test_repeated_lookup_is_served_from_the_memo(two, pki):
    reader, a, writer, b = two
    publish(b, pki.user("memo@example.test", issuer="fast"))
    with reader.sql.session() as cur:
        first = reader.answer(cur, "address", "memo@example.test")
        again = reader.answer(cur, "address", "memo@example.test")
    assert first is not None and again is first
    assert len(reader.answers) == 1


def test_changes_by_another_process_are_in_the_next_answer(two, pki):
    reader, a, writer, b = two
    carol = pki.user("carol@example.test", issuer="fast")
    publish(b, carol)
    r = a.get("/v1/certs/by-email/carol@example.test")
    assert r.status_code == 200
    assert verified(r.json(), reader).size == 1

    # A publish of another address grows the log: the memoised answer is rebuilt against the newest checkpoint.
    publish(b, pki.user("dave@example.test", issuer="fast"))
    r2 = a.get("/v1/certs/by-email/carol@example.test")
    assert r2.json()["checkpoint"] == writer.checkpoint()
    assert verified(r2.json(), reader).size == 2
    assert r2.headers["etag"] != r.headers["etag"]
    assert a.get("/v1/certs/by-email/dave@example.test").status_code == 200

    # A second certificate for the same address is listed at once.
    carol2 = pki.user("carol@example.test", issuer="fast")
    publish(b, carol2)
    answer = a.get("/v1/certs/by-email/carol@example.test").json()
    assert verified(answer, reader).size == 3
    assert {e["sha256"] for e in answer["certificates"]} == {support.fingerprint(carol.cert),
                                                              support.fingerprint(carol2.cert)}

    # A status check written without a log event (the revocation sweep's checked_at) is seen too.
    sha = support.fingerprint(carol.cert)
    with writer.engine.begin() as conn:
        conn.execute(update(certs).where(certs.c.sha256 == sha).values(checked_at=2_000_000_000))
    entry = next(e for e in a.get("/v1/certs/by-email/carol@example.test").json()["certificates"]
                 if e["sha256"] == sha)
    assert entry["status"]["checked_at"] == "2033-05-18T03:33:20Z"

    # Withdrawn: gone from the next lookup, by address and by fingerprint.
    assert a.get(f"/v1/certs/by-sha256/{sha}").status_code == 200
    for user in (carol, carol2):
        digest = support.fingerprint(user.cert)
        ch = b.post("/v1/unpublish", json={"address": "carol@example.test", "sha256": digest, "via": "proof"})
        assert ch.status_code == 202, ch.text
        done = b.post(f"/v1/unpublish/{ch.json()['request']}/confirm",
                      json={"proof": support.proof_for(user, ch.json())})
        assert done.status_code == 200, done.text
    assert a.get("/v1/certs/by-email/carol@example.test").status_code == 404
    assert a.get(f"/v1/certs/by-sha256/{sha}").status_code == 404


def test_memo_is_bounded(two, pki):
    reader, a, writer, b = two
    reader.answers.limit = 2
    for name in ("m1", "m2", "m3"):
        publish(b, pki.user(f"{name}@example.test", issuer="fast"))
    for name in ("m1", "m2", "m3"):
        assert a.get(f"/v1/certs/by-email/{name}@example.test").status_code == 200
    assert len(reader.answers) == 2


def test_database_from_before_the_lookup_indexes_gets_them(pki, tmp_path):
    # Lookups on SQLite name the covering index (INDEXED BY), so a database made before it must gain it on open.
    url = f"sqlite:///{tmp_path}/old.db"
    first = Directory(support.config(pki, url))
    with first.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX certs_lookup")
        conn.exec_driver_sql("DROP INDEX bindings_lookup")
    first.engine.dispose()
    again = Directory(support.config(pki, url))
    try:
        with TestClient(make_app(again)) as api:
            publish(api, pki.user("old@example.test", issuer="fast"))
            assert api.get("/v1/certs/by-email/old@example.test").status_code == 200
    finally:
        again.engine.dispose()


def test_lookups_and_writes_survive_dropped_database_connections(api, pki, directory, db_url):
    # The pool does not ping before each use (a round trip per lookup); a dead connection is found by its
    # failure, the pool renewed, and the request retried once on a fresh connection.
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no server connection to lose")
    publish(api, pki.user("alive@example.test", issuer="fast"))
    assert api.get("/v1/certs/by-email/alive@example.test").status_code == 200
    import psycopg
    from sqlalchemy.engine import make_url

    from autosmime.servers.directory.schema import engine_url
    url = make_url(engine_url(db_url)).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert killed >= 1
    assert api.get("/v1/certs/by-email/alive@example.test").status_code == 200
    publish(api, pki.user("later@example.test", issuer="fast"))
