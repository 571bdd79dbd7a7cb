"""Certificates made the ways real CAs make them: every signer, every form, alone and inside encryption, verifies.

    $ python -m pytest tests/interop/test_cert_profiles.py -q

Profiles (tests/pki/issuers.py): NSS certutil (no EKU, non-critical
basicConstraints on the root), OpenSSL with and without EKU, an ``openssl ca``
chain through an intermediate with nameConstraints, and autosmime's S/MIME BR
profile (root, issuing CA, leaf). For each, cmsutil, ``openssl cms`` and
autosmime sign, detached and opaque, alone and then encrypted (by the same
tool) to the signer; autosmime decrypts and verifies against the profile's
root. And the other way: OpenSSL and NSS verify what autosmime signed with
each profile, so the certificates are ones the peers call good too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop import mime
from tests.interop.peers import Nss, OpenSSL
from tests.interop.test_enveloped import decrypt, encrypt
from tests.interop.test_signed import assert_inner
from tests.pki.issuers import PROFILES, Issued, issue, require

pytestmark = pytest.mark.interop

SIGNERS = ["cmsutil", "openssl", "autosmime"]
FORMS = ["detached", "opaque"]
WRAPS = ["alone", "encrypted"]


class Peers:
    def __init__(self, issued: Issued, d: Path) -> None:
        self.issued = issued
        self.openssl = OpenSSL(d / "openssl")
        if issued.nss is not None:  # certutil made the certificates in this database
            self.nss = issued.nss
        else:
            self.nss = Nss(d / "nssdb")
            self.nss.add_user(issued.user)
            self.nss.trust(issued.root)


@pytest.fixture(scope="module", params=PROFILES)
def profile(request, tmp_path_factory) -> Peers:
    require("openssl", "certutil", "cmsutil", "pk12util")
    d = Path(tmp_path_factory.mktemp(request.param))
    return Peers(issue(request.param, d / "ca"), d)


def _chain_args(issued: Issued) -> list:
    return ["--chain", issued.chain] if issued.chain.read_bytes().strip() else []


def _sign(autosmime, peers: Peers, signer: str, form: str, msg: bytes) -> tuple[bytes, bytes]:
    """(the signed message as sent, the signed entity alone)."""
    user, content = peers.issued.user, mime.entity(msg)
    if signer == "autosmime":
        out = autosmime("sign", "--key", user.key, "--cert", user.cert, *_chain_args(peers.issued),
                        *(["--opaque"] if form == "opaque" else []), stdin=msg)
        return out, mime.entity(out)
    if signer == "openssl":
        chain = peers.issued.chain
        extra = ["-certfile", chain] if chain.read_bytes().strip() else []
        signed = peers.openssl.sign(content, user, detached=form == "detached", outform="SMIME", extra=extra)
        return mime.with_outer(msg, signed), mime.crlf(signed)
    der = peers.nss.sign(content, user, detached=form == "detached")
    sent = mime.wrap_signed(msg, content, der) if form == "detached" else mime.wrap_pkcs7_mime(msg, der, "signed-data")
    return sent, mime.entity(sent)


def _encrypt(autosmime, peers: Peers, tool: str, msg: bytes, signed_entity: bytes) -> bytes:
    user = peers.issued.user
    if tool == "autosmime":
        return encrypt(autosmime, mime.with_outer(msg, signed_entity), [user.cert])
    if tool == "openssl":
        return mime.with_outer(msg, peers.openssl.encrypt(signed_entity, [(user.cert, [])], outform="SMIME"))
    return mime.wrap_enveloped(msg, peers.nss.encrypt(signed_entity, [user]))


@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("signer", SIGNERS)
def test_signed_with_each_profile_autosmime_verifies(cell, autosmime, profile, signer, form, wrap):
    issued = profile.issued
    cell("peer sign → autosmime verify (certificate profiles)", "nss" if signer == "cmsutil" else signer,
         f"{issued.profile}, {form}, {wrap}")
    msg = mime.message(issued.user.email, issued.user.email)
    sent, signed_entity = _sign(autosmime, profile, signer, form, msg)
    if wrap == "encrypted":
        sent = _encrypt(autosmime, profile, signer, msg, signed_entity)
        inner = decrypt(autosmime, issued.user, sent)
        assert mime.entity(inner) == mime.entity(signed_entity)
    else:
        inner = sent
    assert_inner(autosmime("verify", "--trust", issued.root, stdin=inner), sent, mime.entity(msg))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("verifier", ["openssl", "nss"])
def test_autosmime_signed_with_each_profile_peers_verify(cell, autosmime, profile, verifier, form):
    issued = profile.issued
    cell("autosmime sign → peer verify (certificate profiles)", verifier, f"{issued.profile}, {form}")
    msg = mime.message(issued.user.email, issued.user.email)
    out, _ = _sign(autosmime, profile, "autosmime", form, msg)
    if verifier == "openssl":
        got = profile.openssl.verify(issued.root, smime=out)
    else:
        content, der = mime.split_signed(out) if form == "detached" else (None, mime.pkcs7_mime_der(out))
        got = profile.nss.verify(der, content)
    assert mime.crlf(got) == mime.entity(msg)


REFUSED = [
    ("eku-serverauth-only", "keyUsage = critical, digitalSignature, keyEncipherment\n"
                            "extendedKeyUsage = serverAuth\nsubjectAltName = email:{email}", "emailProtection"),
    ("keyusage-keycertsign-only", "keyUsage = critical, keyCertSign\nextendedKeyUsage = emailProtection\n"
                                  "subjectAltName = email:{email}", "digitalSignature"),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name,extensions,rule", REFUSED, ids=[r[0] for r in REFUSED])
def test_openssl_signs_with_a_leaf_not_for_email_signing_autosmime_refuses(cell, autosmime, tmp_path,
                                                                          name, extensions, rule, form):
    from tests.interop.peers import AutosmimeFailed, User
    from tests.pki.issuers import PASSWORD, openssl_issue, openssl_root

    require("openssl")
    cell("peer sign → autosmime verify (must reject)", "openssl", f"{name}, {form}")
    email = "mallory@example.test"
    root_key, root = openssl_root(tmp_path)
    key, cert = openssl_issue(tmp_path, "mallory", "/CN=Mallory", extensions.format(email=email), root_key, root)
    user = User(name="mallory", email=email, kind="rsa", key=key, cert=cert, p12=cert, p12_legacy=cert,
                password=PASSWORD, password_file=cert)
    msg = mime.message(email, email)
    signed = OpenSSL(tmp_path / "openssl").sign(mime.entity(msg), user, detached=form == "detached",
                                                outform="SMIME")
    with pytest.raises(AutosmimeFailed) as e:
        autosmime("verify", "--trust", root, stdin=mime.with_outer(msg, signed))
    assert e.value.code == 1 and rule in e.value.stderr and "CN=Mallory" in e.value.stderr
