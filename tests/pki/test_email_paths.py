"""RFC 5280 paths for e-mail with certificates made by OpenSSL: what is trusted, what is refused, and the notes.

    $ python -m pytest tests/pki/test_email_paths.py -q

Every certificate here comes from ``openssl req`` / ``openssl x509 -req`` /
``openssl ca`` (tests/pki/issuers.py), so the extensions are encoded the way
a real CA encodes them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from autosmime.errors import ExpiredSigner, UntrustedSigner
from autosmime.pki import validate as validate_module
from autosmime.pki.validate import validate, validate_signer
from tests.pki.issuers import (
    LEAF_EKU,
    load,
    openssl_ca,
    openssl_ca_leaf,
    openssl_ca_nc,
    openssl_issue,
    openssl_root,
    require,
    run,
)

pytestmark = pytest.mark.interop

CA = "basicConstraints = critical, CA:true\nkeyUsage = critical, keyCertSign, cRLSign"


@pytest.fixture(autouse=True)
def _cold_memo():
    validate_module._memo.clear()  # each case is judged by the full validation


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> tuple[Path, Path, Path]:
    d = Path(tmp_path_factory.mktemp("openssl-root"))
    key, pem = openssl_root(d)
    return d, key, pem


def _leaf(root, name: str, extensions: str, *, ca=None, subject: str | None = None):
    d, key, pem = root
    ca_key, ca_pem = ca or (key, pem)
    _, cert = openssl_issue(d, name, subject or f"/CN={name}", extensions, ca_key, ca_pem)
    return load(cert)[0]


def _refused(leaf, pool, roots, match: str, purpose="sign") -> str:
    with pytest.raises(UntrustedSigner, match=match) as e:
        validate(leaf, pool, roots, purpose=purpose)
    assert not isinstance(e.value, ExpiredSigner)
    text = str(e.value)
    assert "\n" not in text and text.startswith("the certificate "), text  # one line, naming the certificate
    return text


# --- the leaf ------------------------------------------------------------------------


def test_openssl_leaf_with_and_without_eku(tmp_path):
    with_eku = openssl_ca(tmp_path / "eku", eku=True)
    path = validate(load(with_eku.user.cert)[0], [], load(with_eku.root))
    assert len(path.chain) == 2 and path.notes == ()
    without = openssl_ca(tmp_path / "no-eku", eku=False)
    path = validate(load(without.user.cert)[0], [], load(without.root), purpose="encrypt")
    assert [n.code for n in path.notes] == ["no-eku"]


def test_leaf_whose_eku_holds_only_server_auth_is_refused(root):
    leaf = _leaf(root, "tls-only", "keyUsage = critical, digitalSignature, keyEncipherment\n"
                                    "extendedKeyUsage = serverAuth\nsubjectAltName = email:tls@example.test")
    for purpose in ("sign", "encrypt"):
        text = _refused(leaf, [], load(root[2]), "emailProtection", purpose)
        assert "CN=tls-only" in text


def test_key_usage_key_cert_sign_only_is_refused(root):
    leaf = _leaf(root, "certsign", "keyUsage = critical, keyCertSign\nsubjectAltName = email:cs@example.test")
    _refused(leaf, [], load(root[2]), "digitalSignature nor nonRepudiation", "sign")
    _refused(leaf, [], load(root[2]), "keyEncipherment", "encrypt")


def test_key_usage_decides_the_purpose(root):
    signing = _leaf(root, "signing", "keyUsage = critical, nonRepudiation\nsubjectAltName = email:s@example.test")
    assert validate(signing, [], load(root[2]), purpose="sign").leaf == signing
    _refused(signing, [], load(root[2]), "keyEncipherment", "encrypt")
    sealing = _leaf(root, "sealing", "keyUsage = critical, keyEncipherment\nsubjectAltName = email:e@example.test")
    assert validate(sealing, [], load(root[2]), purpose="encrypt").leaf == sealing
    _refused(sealing, [], load(root[2]), "digitalSignature", "sign")


def test_a_ca_certificate_is_no_mailbox_certificate(root):
    leaf = _leaf(root, "ca-as-leaf", "basicConstraints = critical, CA:true\n"
                                      "keyUsage = critical, digitalSignature, keyCertSign\n"
                                      "subjectAltName = email:ca@example.test")
    _refused(leaf, [], load(root[2]), "is a CA certificate")


def test_unknown_critical_extension_on_the_leaf_is_refused(root):
    leaf = _leaf(root, "odd-leaf", "1.3.6.1.4.1.55555.1 = critical, ASN1:NULL\nsubjectAltName = email:o@example.test")
    _refused(leaf, [], load(root[2]), "1.3.6.1.4.1.55555.1")


# --- CAs below the anchor ----------------------------------------------------------------


def _inter(root, name: str, extensions: str, *, digest: str | None = "sha256"):
    d, key, pem = root
    ikey, ipem = openssl_issue(d, name, f"/CN={name}", extensions, key, pem, digest=digest)
    return ikey, ipem


def test_intermediate_with_non_critical_basic_constraints_and_no_key_usage(root):
    # Before issue 9 (WebPKI CA profile): "incorrect criticality".
    ca = _inter(root, "loose-inter", "basicConstraints = CA:true")
    leaf = _leaf(root, "loose-leaf", LEAF_EKU.format(email="l@example.test"), ca=ca)
    path = validate(leaf, load(ca[1]), load(root[2]))
    assert len(path.chain) == 3 and [n.code for n in path.notes] == ["bc-not-critical"]
    assert "CN=loose-inter" in path.notes[0].text


def test_sha1_signed_intermediate_is_a_note(root):
    # cryptography's verifier refuses SHA-1 anywhere in a chain; NSS accepts it for e-mail.
    ca = _inter(root, "sha1-inter", CA, digest="sha1")
    leaf = _leaf(root, "sha1-leaf", LEAF_EKU.format(email="h@example.test"), ca=ca)
    path = validate(leaf, load(ca[1]), load(root[2]))
    assert [n.code for n in path.notes] == ["sha1-in-chain"] and "CN=sha1-inter" in str(path.notes[0])


def test_intermediate_that_is_not_a_ca_is_refused(root):
    ca = _inter(root, "not-ca", "basicConstraints = critical, CA:false")
    leaf = _leaf(root, "orphan", LEAF_EKU.format(email="x@example.test"), ca=ca)
    assert "CN=not-ca" in _refused(leaf, load(ca[1]), load(root[2]), "not a CA")


def test_intermediate_without_key_cert_sign_is_refused(root):
    ca = _inter(root, "no-certsign", "basicConstraints = critical, CA:true\nkeyUsage = critical, cRLSign")
    leaf = _leaf(root, "unsigned", LEAF_EKU.format(email="y@example.test"), ca=ca)
    _refused(leaf, load(ca[1]), load(root[2]), "keyCertSign")


def test_intermediate_for_tls_only_is_refused(root):
    ca = _inter(root, "tls-inter", CA + "\nextendedKeyUsage = serverAuth")
    leaf = _leaf(root, "tls-child", LEAF_EKU.format(email="t@example.test"), ca=ca)
    _refused(leaf, load(ca[1]), load(root[2]), "not a CA for e-mail")


def test_unknown_critical_extension_on_an_intermediate_is_refused(root):
    ca = _inter(root, "odd-inter", CA + "\n1.3.6.1.4.1.55555.2 = critical, ASN1:NULL")
    leaf = _leaf(root, "odd-child", LEAF_EKU.format(email="z@example.test"), ca=ca)
    _refused(leaf, load(ca[1]), load(root[2]), "does not understand")


def test_path_length_constraint(tmp_path):
    issued = openssl_ca_nc(tmp_path)  # the intermediate has pathlen:0
    d = tmp_path
    sub_key, sub = openssl_issue(d, "sub-ca", "/CN=sub-ca", CA, d / "inter.key", d / "inter.pem")
    leaf = _leaf((d, d / "inter.key", d / "inter.pem"), "deep", LEAF_EKU.format(email="deep@example.test"),
                 ca=(sub_key, sub))
    _refused(leaf, [*load(issued.chain), *load(sub)], load(issued.root), "pathLenConstraint")


# --- name constraints -------------------------------------------------------------------


def test_name_constraints_rfc822(tmp_path):
    issued = openssl_ca_nc(tmp_path)
    inter, root = load(issued.chain), load(issued.root)
    assert len(validate(load(issued.user.cert)[0], inter, root).chain) == 3
    eve = openssl_ca_leaf(tmp_path, tmp_path / "inter.key", tmp_path / "inter.pem", "eve@evil.test", name="eve")
    text = _refused(load(eve.cert)[0], inter, root, "name constraints")
    assert "eve@evil.test" in text and "Constrained Intermediate" in text


def test_name_constraints_apply_to_the_subject_email_address(tmp_path):
    issued = openssl_ca_nc(tmp_path)
    leaf = _leaf((tmp_path, tmp_path / "inter.key", tmp_path / "inter.pem"), "sneaky",
                 LEAF_EKU.format(email="ok@example.test"), ca=(tmp_path / "inter.key", tmp_path / "inter.pem"),
                 subject="/CN=sneaky/emailAddress=boss@evil.test")
    _refused(leaf, load(issued.chain), load(issued.root), "boss@evil.test")


@pytest.mark.parametrize("criticality", ["critical, ", ""], ids=["critical", "non-critical"])
def test_name_constraints_on_an_eddsa_path(tmp_path, criticality):
    # Before issue 9 the EdDSA fallback builder never evaluated name constraints: it accepted a
    # leaf outside a non-critical nameConstraints, and refused every leaf under a critical one.
    require("openssl")
    ed = "ed25519"
    root_key, root = openssl_root(tmp_path, "Ed25519 Root", newkey=ed)
    ikey, ipem = openssl_issue(tmp_path, "ed-inter", "/CN=Ed25519 Constrained",
                               CA + f"\nnameConstraints = {criticality}permitted;email:.example.test",
                               root_key, root, newkey=ed, digest=None)
    _, inside = openssl_issue(tmp_path, "ed-in", "/CN=ed-in", LEAF_EKU.format(email="a@mail.example.test"),
                              ikey, ipem, newkey=ed, digest=None)
    _, outside = openssl_issue(tmp_path, "ed-out", "/CN=ed-out", LEAF_EKU.format(email="a@example.test"),
                               ikey, ipem, newkey=ed, digest=None)
    assert len(validate(load(inside)[0], load(ipem), load(root)).chain) == 3
    text = _refused(load(outside)[0], load(ipem), load(root), "outside the permitted names")
    assert "a@example.test" in text and "Ed25519 Constrained" in text


# --- the trust anchor -----------------------------------------------------------------------


def test_anchor_is_checked_only_for_its_signature_and_validity(tmp_path):
    # A root with a pathlen 0 and a keyUsage without keyCertSign, trusted explicitly by the user.
    require("openssl")
    key, csr, pem, ext = (tmp_path / n for n in ("r.key", "r.csr", "r.pem", "r.ext"))
    run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj", "/CN=Odd Root",
         "-out", csr])
    ext.write_text("[ext]\nbasicConstraints = CA:true, pathlen:0\nkeyUsage = digitalSignature\n")
    run(["openssl", "x509", "-req", "-in", csr, "-signkey", key, "-days", "1", "-extfile", ext,
         "-extensions", "ext", "-out", pem])
    rootish = (tmp_path, key, pem)
    ca = openssl_issue(tmp_path, "odd-inter", "/CN=odd-inter", CA, key, pem)
    leaf = _leaf(rootish, "odd-leaf", LEAF_EKU.format(email="odd@example.test"), ca=ca)
    path = validate(leaf, load(ca[1]), load(pem))
    assert [n.code for n in path.notes] == ["bc-not-critical"] and "CN=Odd Root" in str(path.notes[0])
    # ... and its validity: two days on it has expired (the others have not), and that is the verdict.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    with pytest.raises(ExpiredSigner, match="Odd Root"):
        validate_signer(leaf, load(ca[1]), load(pem), at=later)


def test_root_without_any_extension(tmp_path):
    require("openssl")
    key, csr, pem = tmp_path / "v1.key", tmp_path / "v1.csr", tmp_path / "v1.pem"
    run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj", "/CN=V1 Root",
         "-out", csr])
    run(["openssl", "x509", "-req", "-in", csr, "-signkey", key, "-days", "30", "-out", pem])
    leaf = _leaf((tmp_path, key, pem), "v1-leaf", LEAF_EKU.format(email="v1@example.test"))
    path = validate(leaf, [], load(pem))
    assert [n.code for n in path.notes] == ["bc-absent"]
