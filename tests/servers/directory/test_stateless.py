"""Several app processes on one database: nothing lives in a process, so their appends make one log."""

from __future__ import annotations

import base64
import threading

from autosmime.exchange.proofs import answer_challenge
from autosmime.pki import tlog
from autosmime.servers.directory.service import Directory
from tests.servers.directory import support


def test_two_app_processes_share_one_log(pki, db_url):
    first = Directory(support.config(pki, db_url))
    second = Directory(support.config(pki, db_url))   # the log key was made by the first and is read from the DB
    try:
        assert first.log.public_key.public_bytes_raw() == second.log.public_key.public_bytes_raw()
        users = [pki.user(f"s{i}@example.test", issuer="fast") for i in range(12)]
        errors: list[BaseException] = []

        def publish(directory: Directory, batch: list[support.User]) -> None:
            try:
                for user in batch:
                    ch = directory.request_publish(user.chain_pem, None, "test")
                    directory.confirm("publish", ch["request"], None, answer_challenge(ch, user.key, user.cert))
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=publish, args=(d, users[i::2])) for i, d in enumerate((first, second))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        # Every certificate is found through either process, each proven against the one log of size 12.
        note = second.checkpoint()
        cp = tlog.open_checkpoint(note, first.log.origin, first.log.public_key)
        assert cp.size == 12
        indexes = set()
        for user in users:
            answer = (first if user.address < "s5" else second).lookup_email(user.address)
            [entry] = answer["certificates"]
            leaf = base64.b64decode(entry["leaf_b64"])
            proof = [base64.b64decode(p) for p in entry["inclusion"]]
            size_cp = tlog.open_checkpoint(answer["checkpoint"], first.log.origin, first.log.public_key)
            assert tlog.verify_inclusion(tlog.leaf_hash(leaf), entry["leaf_index"], size_cp.size, proof, size_cp.root)
            indexes.add(entry["leaf_index"])
        assert indexes == set(range(12))
        # Every intermediate checkpoint is a prefix of the last one.
        for size in (1, 5, 11):
            c = first.consistency(size, 12)
            old = tlog.open_checkpoint(c["checkpoint"] if size == 12 else first_note(first, size), first.log.origin,
                                       first.log.public_key)
            assert tlog.verify_consistency(size, 12, old.root, cp.root, [base64.b64decode(p) for p in c["proof"]])
    finally:
        first.engine.dispose()
        second.engine.dispose()


def first_note(directory: Directory, size: int) -> str:
    with directory.engine.connect() as conn:
        note = directory.log.checkpoint_note(conn, size)
    assert note is not None
    return note
