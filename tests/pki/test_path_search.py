"""The path search itself: bounded work on hostile certificate pools, and the reason it reports.

    $ python -m pytest tests/pki/test_path_search.py -q
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from autosmime.errors import UntrustedSigner
from autosmime.pki import validate as validate_module
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.pki.validate import validate

NOW = dt.datetime.now(dt.UTC)
MESH = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Mesh")])


def _ca(public_key, signer) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(MESH).issuer_name(MESH).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer, hashes.SHA256()))


def test_a_mesh_of_cross_certificates_is_refused_after_bounded_work(monkeypatch):
    # 12 keys, each certified by every other under one name: 132 certificates and more than
    # 10^8 paths of depth 8, none reaching the root. The search must give up, not try them all.
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(12)]
    mesh = [_ca(a.public_key(), b) for a in keys for b in keys if a is not b]
    _, root = make_ca("Unrelated Root", new_key("ec"))
    fake_ca = (x509.CertificateBuilder().subject_name(MESH).issuer_name(MESH).public_key(keys[0].public_key())
               .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1))
               .not_valid_after(NOW + dt.timedelta(days=30)).sign(keys[0], hashes.SHA256()))
    leaf = make_mailbox_cert("mesh@example.test", new_key("ec").public_key(), keys[0], fake_ca)
    checks = []
    real = validate_module._signature_problem
    monkeypatch.setattr(validate_module, "_signature_problem", lambda c, i: checks.append(1) or real(c, i))
    with pytest.raises(UntrustedSigner, match="too many candidate issuers"):
        validate(leaf, mesh, [root])
    assert len(checks) <= validate_module._MAX_EDGES  # signature results are shared by both passes


def test_the_most_specific_reason_is_reported():
    root_key, root = make_ca("Reason Root", new_key("ec"))
    inter_key, inter = make_ca("Reason Intermediate", new_key("ec"), issuer_key=root_key, issuer_cert=root,
                               not_before=NOW - dt.timedelta(days=40), days=10)
    leaf = make_mailbox_cert("r@example.test", new_key("ec").public_key(), inter_key, inter)
    with pytest.raises(UntrustedSigner, match="Reason Intermediate"):  # expired, named
        validate(leaf, [inter], [root])
    with pytest.raises(UntrustedSigner, match="issuer CN=Reason Intermediate is neither trusted nor among"):
        validate(leaf, [], [root])


def _ca_cert(subject: str, key, issuer: str, signer, path_length=None, nc=None) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(_cn(subject)).issuer_name(_cn(issuer)).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
         .not_valid_after(NOW + dt.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True))
    if nc:
        b = b.add_extension(x509.NameConstraints(permitted_subtrees=[x509.RFC822Name(nc)], excluded_subtrees=None),
                            critical=True)
    return b.sign(signer, hashes.SHA256())


def _cn(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def test_self_issued_key_rollover_counts_for_neither_path_length_nor_name_constraints():
    # RFC 5280 §6.1.4 (l) and §6.1.3 (b): a CA's key-rollover certificate (self-issued: its own
    # name as subject and issuer) does not use up a pathLenConstraint of 0 above it, nor is its
    # name checked against the constraints; the leaf below it still is.
    root_key, old_key, new_key_ = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _ca_cert("Rollover Root", root_key, "Rollover Root", root_key)
    old = _ca_cert("Rollover CA", old_key, "Rollover Root", root_key, path_length=0, nc="example.test")
    rollover = _ca_cert("Rollover CA", new_key_, "Rollover CA", old_key)
    fake_issuer = _ca_cert("Rollover CA", new_key_, "Rollover CA", new_key_)
    good = make_mailbox_cert("a@example.test", new_key("ec").public_key(), new_key_, fake_issuer)
    assert validate(good, [old, rollover], [root]).chain == (good, rollover, old, root)
    bad = make_mailbox_cert("a@evil.test", new_key("ec").public_key(), new_key_, fake_issuer)
    with pytest.raises(UntrustedSigner, match="name constraints"):
        validate(bad, [old, rollover], [root])
    # A second, non-self-issued CA below the pathlen-0 one is refused.
    sub_key = ec.generate_private_key(ec.SECP256R1())
    sub = _ca_cert("Sub CA", sub_key, "Rollover CA", new_key_)
    deep = make_mailbox_cert("b@example.test", new_key("ec").public_key(), sub_key,
                             _ca_cert("Sub CA", sub_key, "Sub CA", sub_key))
    with pytest.raises(UntrustedSigner, match="pathLenConstraint"):
        validate(deep, [old, rollover, sub], [root])
