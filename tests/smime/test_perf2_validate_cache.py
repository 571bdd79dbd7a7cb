"""The memo of successful path validations gives exactly the answers of a cold validation."""

from __future__ import annotations

import datetime as dt

import pytest

from autosmime.errors import ExpiredSigner, UntrustedSigner
from autosmime.pki import validate
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.pki.validate import validate_signer

UTC = dt.UTC
NOW = dt.datetime.now(UTC)
# Fixtures are built when first used, possibly many minutes after import: start them well before NOW.
_START = NOW - dt.timedelta(days=1)


@pytest.fixture(scope="module")
def pki():
    root_key, root = make_ca("Memo Root", new_key("ec"), not_before=_START)
    inter_key, inter = make_ca("Memo Intermediate", new_key("ec"), issuer_key=root_key, issuer_cert=root,
                           not_before=_START)
    leaf = make_mailbox_cert("memo@example.test", new_key("ec").public_key(), inter_key, inter, not_before=_START)
    _, other_root = make_ca("Memo Other Root", new_key("ec"), not_before=_START)
    return {"root": root, "inter": inter, "leaf": leaf, "other_root": other_root}


def _cold(*args):
    validate._memo.clear()
    return _outcome(*args)


def _outcome(leaf, pool, roots, at):
    try:
        return [c.subject for c in validate_signer(leaf, pool, roots, at)]
    except UntrustedSigner as e:
        return (type(e), str(e))


def test_a_hit_equals_a_cold_validation_for_a_valid_chain(pki):
    args = (pki["leaf"], [pki["inter"]], [pki["root"]], NOW)
    cold = _cold(*args)
    assert cold == [pki["leaf"].subject, pki["inter"].subject, pki["root"].subject]
    assert len(validate._memo) == 1
    assert _outcome(*args) == cold  # a hit
    later = NOW + dt.timedelta(days=30)  # still inside every window: a hit at another moment
    assert _outcome(pki["leaf"], [pki["inter"]], [pki["root"]], later) == _cold(pki["leaf"], [pki["inter"]],
                                                                                 [pki["root"]], later)


@pytest.mark.parametrize("moment", [dt.timedelta(days=3000), -dt.timedelta(days=2)])
def test_outside_a_window_a_hit_raises_what_a_cold_call_raises(pki, moment):
    args = (pki["leaf"], [pki["inter"]], [pki["root"]])
    cold = _cold(*args, NOW + moment)
    assert cold[0] is ExpiredSigner
    validate._memo.clear()
    _outcome(*args, NOW)  # the chain is now memoised ...
    assert len(validate._memo) == 1
    assert _outcome(*args, NOW + moment) == cold  # ... and the memo does not hide the expiry


def test_other_roots_never_hit(pki):
    validate._memo.clear()
    assert isinstance(_outcome(pki["leaf"], [pki["inter"]], [pki["root"]], NOW), list)
    untrusted = _outcome(pki["leaf"], [pki["inter"]], [pki["other_root"]], NOW)
    assert untrusted[0] is UntrustedSigner and untrusted[0] is not ExpiredSigner
    assert untrusted == _cold(pki["leaf"], [pki["inter"]], [pki["other_root"]], NOW)
    # Nor another pool: without the intermediate there is no path, memo or not.
    validate._memo.clear()
    _outcome(pki["leaf"], [pki["inter"]], [pki["root"]], NOW)
    missing = _outcome(pki["leaf"], [], [pki["root"]], NOW)
    assert missing[0] is UntrustedSigner and missing == _cold(pki["leaf"], [], [pki["root"]], NOW)


def test_failures_are_not_memoised(pki):
    validate._memo.clear()
    _outcome(pki["leaf"], [pki["inter"]], [pki["other_root"]], NOW)
    _outcome(pki["leaf"], [pki["inter"]], [pki["root"]], NOW + dt.timedelta(days=3000))
    assert len(validate._memo) == 0


def test_the_memo_is_bounded(pki, monkeypatch):
    monkeypatch.setattr(validate, "_MEMO_SIZE", 2)
    validate._memo.clear()
    roots = [make_ca(f"Bound {i}", new_key("ec"), not_before=_START) for i in range(3)]
    for key, root in roots:
        leaf = make_mailbox_cert("b@example.test", new_key("ec").public_key(), key, root, not_before=_START)
        validate_signer(leaf, [], [root], NOW)
    assert len(validate._memo) == 2
    validate._memo.clear()
