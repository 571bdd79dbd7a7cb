"""Device join with an invitation, against the real loopback Dovecot, with the provider as an active attacker.

The invitation replaces the two code comparisons by an HMAC under a one-time secret the provider never
sees: the old device answers only requests the invitation vouches for, the new device accepts only answers
it vouches for, and an invitation lets in one device, once, before it expires.
"""

from __future__ import annotations

import base64
import datetime as _dt
import os

import pytest

from autosmime.agent import join as agent_join
from autosmime.errors import BackupError, BadInvitation, UsageError
from autosmime.mailbox.imap import ImapMailbox
from autosmime.vault import join as jn
from autosmime.vault.recovery import load_code
from tests.vault import backup_support as support
from tests.vault.test_join import Joiner, _attacker_answer, _join_messages, _wait_for_request

pytestmark = pytest.mark.mailserver


def _never(c2: str) -> bool:
    raise AssertionError(f"asked to compare {c2}: an invited join needs no comparing")


# --- the code and the MACs (no mailbox) ----------------------------------------------------


def test_the_code_reads_forgivingly_and_catches_typos():
    inv = jn.Invitation.new()
    assert len(inv.code) == 29 and [len(g) for g in inv.code.split("-")] == [5] * 5
    assert jn.Invitation.parse(f"  {inv.code.lower().replace('-', ' ')} ") == inv
    assert jn.Invitation.parse(inv.code.replace("0", "o").replace("1", "l")) == inv   # O and L read as 0 and 1
    typo = inv.code[:3] + next(c for c in "0123456789ABCDEFGHJKMNPQRSTVWXYZ" if c != inv.code[3]) + inv.code[4:]
    caught = 0
    for position in range(24):  # every single-character slip in the secret part, each other character
        chars = inv.code.replace("-", "")
        for c in "0123456789ABCDEFGHJKMNPQRSTVWXYZ":
            if c == chars[position]:
                continue
            try:
                jn.Invitation.parse(chars[:position] + c + chars[position + 1:])
            except BadInvitation:
                caught += 1
    assert caught > 0.9 * 24 * 31   # one check character: ~31 of 32 slips caught
    with pytest.raises(BadInvitation, match="typo|not an invitation"):
        jn.Invitation.parse(typo)
    with pytest.raises(BadInvitation, match="not an invitation code"):
        jn.Invitation.parse("7K3Q-7K3Q-7K3Q-7K3Q-7K3Q-7K3Q-7K3Q")   # a recovery code's shape
    assert "secret" not in repr(inv) and inv.secret not in repr(inv)


def test_a_request_is_vouched_for_only_by_its_own_invitation_and_unaltered():
    inv, other = jn.Invitation.new(), jn.Invitation.new()
    rid, pub = os.urandom(16), os.urandom(32)
    raw = jn.build_request(address="a@example.org", request_id=rid, device="laptop", public_key=pub, invitation=inv)
    request = jn.parse_request(1, raw)
    assert request.invite_id == inv.invite_id and inv.vouches_for(request)
    assert not other.vouches_for(request)
    swapped = jn.JoinRequest(1, rid, "laptop", request.created, os.urandom(32), request.invite_id, request.invite_mac)
    assert not inv.vouches_for(swapped)      # the provider put in its own key
    plain = jn.parse_request(2, jn.build_request(address="a@example.org", request_id=rid, device="laptop",
                                                 public_key=pub))
    assert plain.invite_id is None and not inv.vouches_for(plain)
    for invite in ({"id": "not-hex-at-all!!", "mac": "A" * 43 + "="}, {"id": inv.invite_id},
                   {"id": inv.invite_id, "mac": "QQ=="}, "x"):
        with pytest.raises(jn.JoinError, match="invite|mac"):
            jn.parse_request(3, _request_with(rid, pub, invite))


def _request_with(rid: bytes, pub: bytes, invite: object, address: str = "a@example.org",
                  device: str = "laptop") -> bytes:
    """A request as the provider would write it, with any ``invite`` member."""
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    body = {"format": jn.FORMAT_NAME, "version": 1, "type": "request", "id": rid.hex(), "device": device,
            "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "public_key": base64.b64encode(pub).decode(),
            "invite": invite}
    return jn._build(address, jn.REQUEST_VALUE, body, now)


# --- the flows on a real mailbox -------------------------------------------------------------


def test_a_device_joins_on_an_invitation_with_nothing_to_compare(devices):
    old, new, account, password = devices
    old_agent = support.agent_of(old.home)
    made = agent_join.invite(old_agent)
    assert [r["id"] for r in agent_join.invites(old_agent)] == [made.invite_id]
    joiner = Joiner(new.home, _never, invitation=jn.Invitation.parse(made.code))
    joiner.start()
    joiner.request_code()
    _wait_for_request(account, password)

    approvals, others = agent_join.approve_invited(old_agent)
    assert [(a.device, a.invited) for a in approvals] == [("new-laptop", True)] and others == []
    result, error = joiner.outcome()
    assert error is None, error
    assert joiner.confirm_calls == []
    assert (result.keys, result.added) == (2, 2)
    assert load_code(new.home) == load_code(old.home)
    assert agent_join.invites(old_agent) == []                       # used up
    assert _join_messages(account, password) == {jn.REQUEST_VALUE: [], jn.ANSWER_VALUE: []}


def test_a_request_naming_the_invitation_without_its_secret_is_not_answered(devices):
    old, _new, account, password = devices
    old_agent = support.agent_of(old.home)
    made = agent_join.invite(old_agent)
    forged = _request_with(os.urandom(16), os.urandom(32), {"id": made.invite_id, "mac": "A" * 43 + "="},
                           address=account.email, device="provider")
    with ImapMailbox.connect(account, password) as box:
        box.append(account.backup_folder, forged, (r"\Seen",))
    approvals, others = agent_join.approve_invited(old_agent)
    assert approvals == [] and [r.device for r in others] == ["provider"]
    assert _join_messages(account, password)[jn.ANSWER_VALUE] == []          # nothing was sent
    assert [r["id"] for r in agent_join.invites(old_agent)] == [made.invite_id]   # and the invitation stays


def test_answers_not_made_with_the_invitation_do_not_get_in(devices):
    """The provider answers first: with a made-up HMAC (deleted), and without one (the person must compare)."""
    old, new, account, password = devices
    old_agent = support.agent_of(old.home)
    inv = jn.Invitation.parse(agent_join.invite(old_agent).code)
    joiner = Joiner(new.home, lambda c2: False, invitation=inv)
    joiner.start()
    joiner.request_code()
    request = _wait_for_request(account, password)
    attacker_code = "7K3Q-7K3Q-7K3Q-7K3Q-7K3Q-7K3Q-7K3Q"
    unvouched, attacker_c2 = _attacker_answer(account, request, attacker_code)
    parsed = jn.parse_answer(0, unvouched)
    forged = jn.build_answer(address=account.email, request_id=parsed.request_id, public_key=parsed.public_key,
                             nonce=parsed.nonce, ciphertext=parsed.ciphertext, mac=os.urandom(32))
    with ImapMailbox.connect(account, password) as box:
        box.append(account.backup_folder, forged, (r"\Seen",))
        box.append(account.backup_folder, unvouched, (r"\Seen",))
        box.wait_for(account.backup_folder, jn.JOIN_HEADER, jn.ANSWER_VALUE, timeout=5)

    approvals, _ = agent_join.approve_invited(old_agent)
    assert len(approvals) == 1
    result, error = joiner.outcome()
    assert error is None, error
    assert joiner.confirm_calls in ([attacker_c2], [])   # the unvouched one was put to the person, if seen first
    assert load_code(new.home) == load_code(old.home) != attacker_code
    assert result.keys == 2


def test_one_invitation_lets_in_one_device(devices, tmp_path):
    old, new, account, password = devices
    old_agent = support.agent_of(old.home)
    inv = jn.Invitation.parse(agent_join.invite(old_agent).code)
    third = support.make_device(tmp_path, "third", account, password)
    first = Joiner(new.home, lambda c2: False, timeout=40, invitation=inv)
    first.start()
    first.request_code()
    second = Joiner(third.home, lambda c2: False, timeout=8, invitation=inv)
    second.start()
    second.request_code()
    with ImapMailbox.connect(account, password) as box:
        box.wait_for(account.backup_folder, jn.JOIN_HEADER, jn.REQUEST_VALUE, timeout=10)

    approvals, others = agent_join.approve_invited(old_agent)
    assert len(approvals) == 1 and len(others) == 1
    assert agent_join.approve_invited(old_agent)[0] == []      # used up: the other request stays unanswered
    outcomes = [first.outcome(), second.outcome()]
    restored = [r for r, e in outcomes if e is None]
    failed = [e for r, e in outcomes if e is not None]
    assert len(restored) == 1 and len(failed) == 1 and isinstance(failed[0], jn.JoinTimeout)


def test_an_expired_or_cancelled_invitation_answers_nothing(devices):
    old, new, account, password = devices
    old_agent = support.agent_of(old.home)
    past = _dt.datetime.now(_dt.UTC).replace(microsecond=0) - _dt.timedelta(minutes=3)
    expired = jn.Invitation.parse(agent_join.invite(old_agent, valid=_dt.timedelta(minutes=1), now=past).code)
    assert agent_join.invites(old_agent) == []
    cancelled = jn.Invitation.parse(agent_join.invite(old_agent).code)
    assert agent_join.cancel_invites(old_agent) == 1 and agent_join.invites(old_agent) == []
    for inv in (expired, cancelled):
        joiner = Joiner(new.home, lambda c2: False, timeout=3, invitation=inv)
        joiner.start()
        joiner.request_code()
        _wait_for_request(account, password)
        approvals, others = agent_join.approve_invited(old_agent)
        assert approvals == [] and len(others) == 1
        _, error = joiner.outcome()
        assert isinstance(error, jn.JoinTimeout)
    assert load_code(new.home) is None


def test_inviting_needs_the_recovery_code_and_a_sane_lifetime(devices):
    _old, new, _account, _password = devices
    with pytest.raises(BackupError, match="no recovery code"):
        agent_join.invite(support.agent_of(new.home))
    with pytest.raises(UsageError, match="7 days"):
        agent_join.invite(support.agent_of(_old.home), valid=_dt.timedelta(days=8))
