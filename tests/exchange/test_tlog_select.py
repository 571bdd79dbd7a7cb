"""The shared pieces in autosmime.pki: RFC 9162 proofs (built from stored subtree hashes, checked literally),
checkpoints, address normalisation, and which certificate to encrypt to."""

from __future__ import annotations

import datetime as _dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given
from hypothesis import strategies as st

from autosmime.errors import LogVerificationError, NoKey, UsageError
from autosmime.pki import tlog
from autosmime.pki.select import choose_recipient_cert, normalize_address, usable_for_encryption
from tests.servers.directory import support


def tree(n: int):
    leaves = [tlog.leaf_hash(b"leaf %d" % i) for i in range(n)]
    nodes = {}
    level = 0
    while (1 << level) <= n:
        for i in range(n >> level):
            nodes[(level, i)] = tlog.root_from_leaves(leaves[i << level:(i + 1) << level])
        level += 1
    return leaves, (lambda lv, ix: nodes[(lv, ix)])


def test_known_roots():
    # RFC 9162 2.1.1: the empty tree hashes to SHA-256 of nothing; one leaf is its own root.
    assert tlog.EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    leaf = tlog.leaf_hash(b"")
    assert leaf.hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert tlog.root_from_leaves([leaf]) == leaf


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1), st.integers(1, n))))
def test_proofs_verify_and_tampering_fails(case):
    n, m, old = case
    leaves, node = tree(n)
    root = tlog.root_from_leaves(leaves)
    proof = tlog.ranges_hashes(tlog.inclusion_ranges(m, n), node)
    assert tlog.verify_inclusion(leaves[m], m, n, proof, root)
    assert not tlog.verify_inclusion(tlog.leaf_hash(b"other"), m, n, proof, root)
    if proof:
        bad = list(proof)
        bad[0] = bytes(32)
        assert not tlog.verify_inclusion(leaves[m], m, n, bad, root)
        assert not tlog.verify_inclusion(leaves[m], m, n, proof[:-1], root)
    cproof = tlog.ranges_hashes(tlog.consistency_ranges(old, n), node)
    old_root = tlog.root_from_leaves(leaves[:old])
    assert tlog.verify_consistency(old, n, old_root, root, cproof)
    if old < n:
        assert not tlog.verify_consistency(old, n, tlog.leaf_hash(b"forged"), root, cproof)
        assert not tlog.verify_consistency(old, n, old_root, tlog.leaf_hash(b"forged"), cproof)


def test_checkpoint_signature_and_origin():
    key = ed25519.Ed25519PrivateKey.generate()
    cp = tlog.sign_checkpoint("dir.example/log", 7, bytes(range(32)), key)
    assert tlog.open_checkpoint(cp.note, "dir.example/log", key.public_key()) == cp
    with pytest.raises(LogVerificationError):
        tlog.open_checkpoint(cp.note, "other/log", key.public_key())
    with pytest.raises(LogVerificationError):
        tlog.open_checkpoint(cp.note, "dir.example/log", ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(LogVerificationError):
        tlog.open_checkpoint(cp.note.replace("\n7\n", "\n8\n"), "dir.example/log", key.public_key())


@pytest.mark.parametrize("given_, want", [
    ("Bob@Example.TEST", "bob@example.test"), ("  bob@example.test\n", "bob@example.test"),
    ("x@bücher.example", "x@xn--bcher-kva.example"),
])
def test_normalize(given_, want):
    assert normalize_address(given_) == want


@pytest.mark.parametrize("bad", ["", "bob", "@example.test", "bob@", "a b@example.test", "a@b@c.test", 'a"b@c.test',
                                 "bob@example..test", "bob@.example.test", "x" * 250 + "@example.test", "a\x00@b.test"])
def test_normalize_rejects(bad):
    with pytest.raises(UsageError):
        normalize_address(bad)


def test_choice_filters_then_ranks():
    pki = support.Pki()
    now = _dt.datetime.now(_dt.UTC)
    older = pki.user("bob@example.test", not_before=now - _dt.timedelta(days=3)).cert
    newer = pki.user("bob@example.test", not_before=now - _dt.timedelta(days=1)).cert
    expired = pki.user("bob@example.test", not_before=now - _dt.timedelta(days=400)).cert
    signing_only = support.reissue(pki.user("bob@example.test", kind="rsa").cert, pki.ca_key, signing_only=True)
    other = pki.user("carol@example.test").cert
    untrusted = pki.user("bob@example.test", issuer="evil").cert
    roots = [pki.ca]
    assert choose_recipient_cert("bob@example.test", [older, newer, expired], roots) == newer
    assert choose_recipient_cert("BOB@example.test", [older, newer], roots,
                                 preferred={support.fingerprint(older)}) == older
    assert choose_recipient_cert("bob@example.test", [older, newer], roots,
                                 statuses={support.fingerprint(newer): "revoked"}) == older
    assert usable_for_encryption("bob@example.test", other, roots) is not None
    assert usable_for_encryption("bob@example.test", untrusted, roots) is not None
    assert usable_for_encryption("bob@example.test", expired, roots) is not None
    assert "encryption" in usable_for_encryption("bob@example.test", signing_only, roots)
    with pytest.raises(NoKey, match="revoked"):
        choose_recipient_cert("bob@example.test", [newer], roots, statuses={support.fingerprint(newer): "revoked"})
