"""Signatures both ways: autosmime signs → every peer verifies; every peer signs → autosmime verifies.

    $ python -m pytest tests/interop/test_signed.py -q
"""

from __future__ import annotations

import pytest

from autosmime.pki.keys import load_certificates
from tests.interop import gaps, mime
from tests.interop.cms import describe

pytestmark = pytest.mark.interop

KINDS = ["rsa", "ec"]
FORMS = ["detached", "opaque"]
_ALG = {"rsa": "RSA-2048 PKCS#1 v1.5 SHA-256", "ec": "ECDSA P-256 SHA-256"}


def assert_inner(out: bytes, sent: bytes, signed_content: bytes) -> None:
    """The contract: the inner message is what was signed, byte for byte (CRLF), under the mail's headers."""
    assert mime.entity(out) == mime.crlf(signed_content), "inner entity differs from the signed bytes"
    assert mime.outer(out) == mime.outer(sent), "outer headers not preserved"
    assert not mime.duplicate_fields(out), f"duplicated header fields {mime.duplicate_fields(out)}"


def _sign(autosmime, user, msg: bytes, form: str) -> bytes:
    args = ["sign", "--key", user.key, "--cert", user.cert]
    if form == "opaque":
        args.append("--opaque")
    out = autosmime(*args, stdin=msg)
    assert mime.outer(out) == mime.outer(msg), "sign lost or changed outer headers"
    if form == "detached":
        assert mime.header(out, "Content-Type").startswith("multipart/signed")
        assert mime.param(out, "Content-Type", "protocol") == "application/pkcs7-signature"
        assert mime.param(out, "Content-Type", "micalg") == "sha-256"
    else:
        assert mime.header(out, "Content-Type").startswith("application/pkcs7-mime")
        assert mime.param(out, "Content-Type", "smime-type") == "signed-data"
    return out


def _cms_of(out: bytes, form: str) -> tuple[bytes, bytes | None]:
    """(DER SignedData, detached content or None) as gpgsm/cmsutil need them."""
    if form == "detached":
        content, sig = mime.split_signed(out)
        return sig, content
    return mime.pkcs7_mime_der(out), None


# --- 1. autosmime signs → peers verify -----------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("verifier", ["openssl", "gpgsm", "nss"])
def test_autosmime_signs_peer_verifies(request, cell, autosmime, pki, verifier, kind, form):
    cell("autosmime sign → peer verify", verifier, f"{_ALG[kind]}, {form}")
    user = pki.user(kind)
    msg = mime.message(user.email, pki.alice.email)
    peer = request.getfixturevalue(verifier)
    out = _sign(autosmime, user, msg, form)
    der, content = _cms_of(out, form)
    info = describe(der)
    assert info["digests"] == ["sha256"]
    assert info["detached"] is (form == "detached")
    if verifier == "openssl":
        got = peer.verify(pki.ca, smime=out)   # OpenSSL reads the .eml as a mail client would
    else:
        got = peer.verify(der, content)
    assert mime.crlf(got) == mime.entity(msg)


# --- 2. peers sign → autosmime verifies ---------------------------------------------


def _verify(autosmime, pki, signed: bytes) -> bytes:
    return autosmime("verify", "--trust", pki.ca, stdin=signed)


OPENSSL_SIGN = [
    # id, kind, detached, outform, extra args
    ("rsa-detached-smime", "rsa", True, "SMIME", []),
    ("rsa-opaque-smime", "rsa", False, "SMIME", []),
    ("ec-detached-smime", "ec", True, "SMIME", []),
    ("ec-opaque-smime", "ec", False, "SMIME", []),
    ("rsa-detached-BER-stream", "rsa", True, "DER", ["-stream"]),
    ("rsa-opaque-BER-stream", "rsa", False, "DER", ["-stream"]),
    ("rsa-pss-saltlen-digest", "rsa", True, "DER",
     ["-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:digest"]),
    ("rsa-pss-saltlen-max", "rsa", True, "DER",
     ["-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:max"]),
    ("rsa-sha512", "rsa", True, "DER", ["-md", "sha512"]),
    ("rsa-no-signed-attrs", "rsa", True, "DER", ["-noattr"]),
    ("rsa-keyid-SKI", "rsa", True, "DER", ["-keyid"]),
]


@pytest.mark.parametrize("case", OPENSSL_SIGN, ids=[c[0] for c in OPENSSL_SIGN])
def test_openssl_signs_autosmime_verifies(cell, autosmime, pki, openssl, case):
    name, kind, detached, outform, extra = case
    cell("peer sign → autosmime verify", "openssl", name)
    user = pki.user(kind)
    msg = mime.message(user.email, pki.bob.email)
    content = mime.entity(msg)
    signed = openssl.sign(content, user, detached=detached, outform=outform, extra=extra)
    if outform == "SMIME":
        sent = mime.with_outer(msg, signed)
    elif detached:
        sent = mime.wrap_signed(msg, content, signed)
    else:
        sent = mime.wrap_pkcs7_mime(msg, signed, "signed-data")
    if "-stream" in extra:
        assert describe(signed)["ber"], "openssl -stream should have written BER"
    assert_inner(_verify(autosmime, pki, sent), sent, content)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("signer", ["gpgsm", "nss"])
def test_peer_signs_autosmime_verifies(request, tmp_path, cell, autosmime, pki, signer, kind, form):
    gap = gaps.gpgsm_ecc() if signer == "gpgsm" and kind == "ec" else None
    cell("peer sign → autosmime verify", signer, f"{_ALG[kind]}, {form}", gap=gap)
    user = pki.user(kind)
    msg = mime.message(user.email, pki.bob.email)
    content = mime.entity(msg)
    der = request.getfixturevalue(signer).sign(content, user, detached=form == "detached")
    assert describe(der)["ber"], f"{signer} is expected to write BER"
    sent = mime.wrap_signed(msg, content, der) if form == "detached" \
        else mime.wrap_pkcs7_mime(msg, der, "signed-data")
    signer_out = tmp_path / "signer.pem"
    out = autosmime("verify", "--trust", pki.ca, "--signer-cert-out", signer_out, stdin=sent)
    assert_inner(out, sent, content)
    assert load_certificates(signer_out.read_bytes()) == load_certificates(user.cert.read_bytes())
