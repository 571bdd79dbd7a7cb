"""Device join v1 against the real loopback Dovecot, with the provider as an active attacker.

The joiner runs in a thread (its own IMAP connection), the approver and the
attacker in the test thread with theirs: three parties on one real mailbox.
"""

from __future__ import annotations

import datetime as _dt
import os
import queue
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from autosmime.agent import join as agent_join
from autosmime.errors import JoinCodeMismatch, JoinError, JoinRefused, JoinTimeout, NoJoinRequest
from autosmime.mailbox.imap import ImapMailbox
from autosmime.vault import join as jn
from autosmime.vault.recovery import load_code, new_code
from tests.vault import backup_support as support

pytestmark = pytest.mark.mailserver




def approve(home, request) -> str:
    """The approving device answers ``request``; returns C2."""
    return agent_join.approve(support.agent_of(home), request).c2


class Joiner(threading.Thread):
    """``join`` on the new device in a thread; C1 comes out through a queue."""

    def __init__(self, home: Path, confirm, timeout: float = 60, invitation: jn.Invitation | None = None) -> None:
        super().__init__(daemon=True)
        self.home, self.confirm, self.timeout, self.invitation = home, confirm, timeout, invitation
        self.c1: queue.Queue[str] = queue.Queue()
        self.result = self.error = None
        self.confirm_calls: list[str] = []

    def run(self) -> None:
        def confirm(c2: str) -> bool:
            self.confirm_calls.append(c2)
            return self.confirm(c2)

        try:
            self.result = agent_join.join(support.agent_of(self.home), show_request=self.c1.put, confirm=confirm, timeout=self.timeout,
                                  device="new-laptop", invitation=self.invitation)
        except BaseException as e:  # handed to the test thread
            self.error = e

    def request_code(self) -> str:
        return self.c1.get(timeout=30)

    def outcome(self):
        self.join(timeout=self.timeout + 30)
        assert not self.is_alive()
        return self.result, self.error


def _join_messages(account, password) -> dict[str, list[int]]:
    with ImapMailbox.connect(account, password) as box:
        return {kind: box.search_header(account.backup_folder, jn.JOIN_HEADER, kind)
                for kind in (jn.REQUEST_VALUE, jn.ANSWER_VALUE)}


def _wait_for_request(account, password) -> jn.JoinRequest:
    with ImapMailbox.connect(account, password) as box:
        [uid] = box.wait_for(account.backup_folder, jn.JOIN_HEADER, jn.REQUEST_VALUE, timeout=20)
        return jn.parse_request(uid, box.fetch(account.backup_folder, [uid])[uid])


def _attacker_answer(account, request: jn.JoinRequest, code: str) -> tuple[bytes, str]:
    """An answer built from the spec alone with the attacker's own key: (raw message, the C2 it yields)."""
    a = X25519PrivateKey.generate()
    a_pub = a.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    j_pub, rid = request.public_key, request.request_id
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=rid, info=b"autosmime join v1" + j_pub + a_pub) \
        .derive(a.exchange(X25519PublicKey.from_public_bytes(j_pub)))
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, code.encode(), rid + j_pub + a_pub)
    raw = jn.build_answer(address=account.email, request_id=rid, public_key=a_pub, nonce=nonce, ciphertext=sealed)
    return raw, jn.answer_code(rid, j_pub, a_pub)


def test_sas_is_twelve_digits_bound_to_every_byte_of_the_transcript():
    rid, j, a = os.urandom(16), os.urandom(32), os.urandom(32)
    c1 = jn.request_code(rid, j)
    assert jn.normalize_sas(c1) == c1 and len(c1) == 14 and c1.count(" ") == 2
    assert jn.request_code(rid, j) == c1  # deterministic: both screens compute the same
    others = {jn.request_code(rid, bytes([j[0] ^ 1]) + j[1:]), jn.request_code(bytes(16), j),
              jn.answer_code(rid, j, a), jn.answer_code(rid, j, bytes([a[0] ^ 1]) + a[1:])}
    assert c1 not in others and len(others) == 4
    assert jn.normalize_sas(c1.replace(" ", "-")) == c1 and jn.normalize_sas("1234 5678 901") is None


def test_new_device_joins_and_holds_every_key_and_the_code(devices):
    old, new, account, password = devices
    c2_box: queue.Queue[str] = queue.Queue()
    joiner = Joiner(new.home, lambda c2: c2 == c2_box.get(timeout=30))
    joiner.start()
    c1 = joiner.request_code()

    [request] = agent_join.requests(support.agent_of(old.home))
    assert (request.device, request.code) == ("new-laptop", c1)
    assert jn.find_request([request], c1.replace(" ", "")) == request
    c2 = approve(old.home, request)
    assert c2 != c1
    c2_box.put(c2)
    result, error = joiner.outcome()

    assert error is None, error
    assert joiner.confirm_calls == [c2]
    assert (result.keys, result.added) == (2, 2)
    assert {(e.fingerprint, e.status) for e in new.entries()} == {(e.fingerprint, e.status) for e in old.entries()}
    assert load_code(new.home) == load_code(old.home)
    assert _join_messages(account, password) == {jn.REQUEST_VALUE: [], jn.ANSWER_VALUE: []}  # cleaned up
    assert support.back_up_or_raise(new) == 2  # the new device can back up on its own


def test_wrong_c1_is_refused_and_nothing_is_sent(devices):
    old, new, account, password = devices
    joiner = Joiner(new.home, lambda c2: True, timeout=4)
    joiner.start()
    c1 = joiner.request_code()
    wrong = f"{(int(c1.replace(' ', '')) + 1) % 10**12:012d}"
    requests = agent_join.requests(support.agent_of(old.home))
    with pytest.raises(JoinCodeMismatch, match="nothing was sent"):
        jn.find_request(requests, wrong)
    with pytest.raises(JoinCodeMismatch):
        jn.find_request(requests, "12345")
    assert _join_messages(account, password)[jn.ANSWER_VALUE] == []
    _, error = joiner.outcome()
    assert isinstance(error, JoinTimeout) and joiner.confirm_calls == []


def test_a_request_replaced_by_the_provider_shows_another_code_and_is_refused(devices):
    old, new, account, password = devices
    snap = support.snapshot(new.home)
    joiner = Joiner(new.home, lambda c2: True, timeout=5)
    joiner.start()
    c1 = joiner.request_code()
    genuine = _wait_for_request(account, password)
    # the provider swaps in its own key, keeping id, device name and time
    forged_key = X25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                       serialization.PublicFormat.Raw)
    forged = jn.build_request(address=account.email, request_id=genuine.request_id, device=genuine.device,
                              public_key=forged_key, now=genuine.created)
    with ImapMailbox.connect(account, password) as box:
        box.append(account.backup_folder, forged)
        box.delete(account.backup_folder, [genuine.uid])

    [shown] = agent_join.requests(support.agent_of(old.home))
    assert shown.device == "new-laptop" and shown.code != c1
    with pytest.raises(JoinCodeMismatch):
        jn.find_request([shown], c1)
    assert _join_messages(account, password)[jn.ANSWER_VALUE] == []
    _, error = joiner.outcome()
    assert isinstance(error, JoinTimeout)
    assert support.snapshot(new.home) == snap


def test_a_planted_request_beside_the_genuine_one_is_never_the_one_approved(devices):
    old, new, account, password = devices
    c2_box: queue.Queue[str] = queue.Queue()
    joiner = Joiner(new.home, lambda c2: c2 == c2_box.get(timeout=30))
    joiner.start()
    c1 = joiner.request_code()
    planted_key = X25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                        serialization.PublicFormat.Raw)
    with ImapMailbox.connect(account, password) as box:
        box.append(account.backup_folder, jn.build_request(address=account.email, request_id=os.urandom(16),
                                                            device="new-laptop", public_key=planted_key))
    requests = agent_join.requests(support.agent_of(old.home))
    assert len(requests) == 2 and len({r.code for r in requests}) == 2
    chosen = jn.find_request(requests, c1)
    assert chosen.public_key != planted_key
    c2_box.put(approve(old.home, chosen))
    result, error = joiner.outcome()
    assert error is None and result.added == 2


def test_a_planted_answer_shows_another_c2_and_is_never_restored(devices, tmp_path):
    old, new, account, password = devices
    confirm_file = tmp_path / "c2.txt"
    joiner = Joiner(new.home, jn.confirm_from_file(confirm_file, timeout=60))
    joiner.start()
    joiner.request_code()
    request = _wait_for_request(account, password)
    # the provider answers first, with its own key and a code of its own (and a backup made with it)
    theirs = new_code()
    planted, planted_c2 = _attacker_answer(account, request, theirs)
    with ImapMailbox.connect(account, password) as box:
        box.append(account.backup_folder, planted)
    deadline = time.monotonic() + 20
    while not joiner.confirm_calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert joiner.confirm_calls == [planted_c2]  # it decrypted: only C2 tells it apart

    [shown] = agent_join.requests(support.agent_of(old.home))
    c2 = approve(old.home, shown)
    assert c2 != planted_c2
    confirm_file.write_text(c2 + "\n")
    result, error = joiner.outcome()
    assert error is None, error
    assert joiner.confirm_calls == [planted_c2, c2]
    assert load_code(new.home) == load_code(old.home) != theirs
    assert support.fingerprints(new) == support.fingerprints(old)


def test_refusing_c2_restores_nothing(devices):
    old, new, account, password = devices
    snap = support.snapshot(new.home)

    def refuse(c2: str) -> bool:
        raise JoinRefused("not confirmed")

    joiner = Joiner(new.home, refuse)
    joiner.start()
    c1 = joiner.request_code()
    approve(old.home, jn.find_request(agent_join.requests(support.agent_of(old.home)), c1))
    _, error = joiner.outcome()
    assert isinstance(error, JoinRefused)
    assert support.snapshot(new.home) == snap and load_code(new.home) is None
    assert _join_messages(account, password) == {jn.REQUEST_VALUE: [], jn.ANSWER_VALUE: []}


def test_a_replayed_answer_to_another_request_is_ignored(devices):
    old, new, account, password = devices
    snap = support.snapshot(new.home)
    # an earlier, genuinely approved join (request 1) left its answer behind
    j1 = X25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                               serialization.PublicFormat.Raw)
    rid1 = os.urandom(16)
    with ImapMailbox.connect(account, password) as box:
        box.append(account.backup_folder, jn.build_request(address=account.email, request_id=rid1,
                                                            device="old-phone", public_key=j1))
    [first] = agent_join.requests(support.agent_of(old.home))
    approve(old.home, first)
    with ImapMailbox.connect(account, password) as box:
        [uid] = box.search_header(account.backup_folder, jn.ANSWER_TO_HEADER, rid1.hex())
        old_answer = box.fetch(account.backup_folder, [uid])[uid]
    code = load_code(old.home)
    body = support.attachment(old_answer, "application/json")
    assert all(c not in raw for c in (code.encode(), code.replace("-", "").encode()) for raw in (old_answer, body))

    joiner = Joiner(new.home, lambda c2: True, timeout=6)
    joiner.start()
    joiner.c1.get(timeout=30)
    with ImapMailbox.connect(account, password) as box:
        folder = account.backup_folder
        uids = box.search_header(folder, jn.JOIN_HEADER, jn.REQUEST_VALUE)
        [rid2] = {r.request_id for r in (jn.parse_request(u, raw) for u, raw in box.fetch(folder, uids).items())
                  if r.request_id != rid1}
        parsed = jn.parse_answer(uid, old_answer)  # the same sealed code, re-addressed to our request
        replay = jn.build_answer(address=account.email, request_id=rid2, public_key=parsed.public_key,
                                 nonce=parsed.nonce, ciphertext=parsed.ciphertext)
        header_only = old_answer.replace(f"{jn.ANSWER_TO_HEADER}: {rid1.hex()}".encode(),
                                         f"{jn.ANSWER_TO_HEADER}: {rid2.hex()}".encode())
        assert replay != old_answer and header_only != old_answer and replay != header_only
        for raw in (old_answer, replay, header_only):
            box.append(folder, raw)
    _, error = joiner.outcome()
    assert isinstance(error, JoinTimeout) and joiner.confirm_calls == []
    assert support.snapshot(new.home) == snap


def test_joiner_times_out_and_withdraws_its_request(devices):
    old, new, account, password = devices
    snap = support.snapshot(new.home)
    joiner = Joiner(new.home, lambda c2: True, timeout=2)
    started = time.monotonic()
    joiner.start()
    joiner.request_code()
    _, error = joiner.outcome()
    assert isinstance(error, JoinTimeout) and error.exit_code == 1 and "withdrawn" in str(error)
    assert time.monotonic() - started >= 2
    assert _join_messages(account, password)[jn.REQUEST_VALUE] == []
    assert support.snapshot(new.home) == snap
    with pytest.raises(NoJoinRequest):
        agent_join.requests(support.agent_of(old.home))


def test_stale_requests_are_not_shown_and_are_deleted(devices):
    old, _new, account, password = devices
    key = X25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                serialization.PublicFormat.Raw)
    when = _dt.datetime.now(_dt.UTC).replace(microsecond=0) - _dt.timedelta(minutes=16)
    with ImapMailbox.connect(account, password) as box:
        box.append(account.backup_folder, jn.build_request(address=account.email, request_id=os.urandom(16),
                                                            device="gone", public_key=key, now=when))
        box.append(account.backup_folder, b"From: x@example.test\r\n" + jn.JOIN_HEADER.encode() +
                   b": request-v1\r\nSubject: junk\r\n\r\nnot json\r\n")
    with pytest.raises(NoJoinRequest):
        agent_join.requests(support.agent_of(old.home))
    # the stale one is gone; junk that does not parse is left alone (it may be a later version's)
    assert len(_join_messages(account, password)[jn.REQUEST_VALUE]) == 1


def test_malformed_join_messages_are_rejected_with_a_typed_error(devices):
    _old, _new, account, _ = devices
    key = bytes(32)
    good = jn.build_request(address=account.email, request_id=os.urandom(16), device="x", public_key=key)
    assert jn.parse_request(1, good).device == "x"
    for bad in (good.replace(b"request-v1", b"request-v2"), good[:-200], b"", b"\xff" * 100,
                jn.build_request(address=account.email, request_id=os.urandom(16), device="a\x1b[2Jb",
                                 public_key=key),
                jn.build_request(address=account.email, request_id=os.urandom(16), device="x", public_key=key[:31])):
        with pytest.raises(JoinError):
            jn.parse_request(1, bad)
    with pytest.raises(JoinError):
        jn.parse_answer(1, good)
