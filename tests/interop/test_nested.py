"""Sign-then-encrypt in both directions, and messages with an RSA and an EC recipient.

    $ python -m pytest tests/interop/test_nested.py -q
"""

from __future__ import annotations

import pytest

from tests.interop import gaps, mime
from tests.interop.cms import describe
from tests.interop.test_enveloped import assert_decrypted, decrypt, encrypt
from tests.interop.test_signed import assert_inner

pytestmark = pytest.mark.interop

_KEY = {"rsa": "RSA", "ec": "EC"}


# --- 5. nested: autosmime sign+encrypt → peer decrypt+verify ------------------------

NESTED_OUT = [
    ("openssl", "rsa", "ec"), ("openssl", "ec", "rsa"),
    ("gpgsm", "rsa", "rsa"), ("gpgsm", "ec", "rsa"),
    ("nss", "rsa", "rsa"), ("nss", "ec", "rsa"),
]


@pytest.mark.parametrize("how", ["two-steps", "one-pass"])
@pytest.mark.parametrize("peer_name,signer,recipient", NESTED_OUT, ids=["-".join(c) for c in NESTED_OUT])
def test_autosmime_sign_encrypt_peer_decrypts_and_verifies(request, cell, autosmime, pki,
                                                           peer_name, signer, recipient, how):
    # One pass (encrypt --sign) always adds the signer's certificate for the Sent copy: an EC
    # signer brings a kari recipient, which old NSS refuses for the whole message.
    gap = gaps.nss_foreign_kari() if (how, peer_name, signer) == ("one-pass", "nss", "ec") else None
    cell("autosmime sign+encrypt → peer decrypt+verify", peer_name,
         f"{_KEY[signer]} signer, {_KEY[recipient]} recipient, interop, {how}", gap=gap)
    sender, to = pki.user(signer), pki.user(recipient)
    msg = mime.message(sender.email, to.email)
    if how == "two-steps":
        signed = autosmime("sign", "--key", sender.key, "--cert", sender.cert, stdin=msg)
        sent = encrypt(autosmime, signed, [to.cert])
    else:
        signed = None
        sent = autosmime("encrypt", "--sign", "--key", sender.key, "--cert", sender.cert, "--to", to.cert, stdin=msg)
        assert mime.outer(sent) == mime.outer(msg), "encrypt --sign lost or changed outer headers"
    peer = request.getfixturevalue(peer_name)
    if peer_name == "openssl":
        inner = peer.decrypt(to, smime=sent)
        assert mime.crlf(peer.verify(pki.ca, smime=inner)) == mime.entity(msg)
    else:
        inner = peer.decrypt(mime.pkcs7_mime_der(sent), to)
        if signed is not None:
            assert mime.crlf(inner) == mime.entity(signed)
        content, sig = mime.split_signed(inner)
        assert peer.verify(sig, content) == mime.entity(msg)


# --- 5. nested: peer sign+encrypt → autosmime decrypt+verify ------------------------

NESTED_IN = [
    ("openssl", "rsa", "rsa", "detached"), ("openssl", "ec", "rsa", "detached"),
    ("openssl", "rsa", "ec", "opaque"),
    ("gpgsm", "rsa", "rsa", "detached"),
    ("nss", "rsa", "rsa", "detached"), ("nss", "ec", "rsa", "opaque"),
]


@pytest.mark.parametrize("peer_name,signer,recipient,form", NESTED_IN, ids=["-".join(c) for c in NESTED_IN])
def test_peer_sign_encrypt_autosmime_decrypts_and_verifies(request, cell, autosmime, pki,
                                                           peer_name, signer, recipient, form):
    cell("peer sign+encrypt → autosmime decrypt+verify", peer_name,
         f"{_KEY[signer]} signer ({form}), {_KEY[recipient]} recipient")
    sender, to = pki.user(signer), pki.user(recipient)
    msg = mime.message(sender.email, to.email)
    content = mime.entity(msg)
    peer = request.getfixturevalue(peer_name)
    if peer_name == "openssl":
        # OpenSSL end to end in S/MIME form, as `openssl smime`-based senders do it.
        signed_entity = mime.crlf(peer.sign(content, sender, detached=form == "detached", outform="SMIME"))
        keyopts = ["ecdh_kdf_md:sha256"] if recipient == "ec" else []
        sent = mime.with_outer(msg, peer.encrypt(signed_entity, [(to.cert, keyopts)], outform="SMIME"))
    else:
        sig = peer.sign(content, sender, detached=form == "detached")
        wrapped = mime.wrap_signed(msg, content, sig) if form == "detached" \
            else mime.wrap_pkcs7_mime(msg, sig, "signed-data")
        signed_entity = mime.entity(wrapped)
        sent = mime.wrap_enveloped(msg, peer.encrypt(signed_entity, [to]))
    inner = decrypt(autosmime, to, sent)
    assert mime.entity(inner) == mime.entity(signed_entity)
    assert_inner(autosmime("verify", "--trust", pki.ca, stdin=inner), sent, content)
    # Last, so the verify step above is exercised even when this fails.
    assert not mime.duplicate_fields(inner), f"decrypt output repeats {mime.duplicate_fields(inner)}"


# --- 6. one message, an RSA and an EC recipient -------------------------------------


@pytest.mark.parametrize("as_kind", ["rsa", "ec"])
def test_openssl_two_recipients_autosmime_decrypts_as_either(cell, autosmime, pki, openssl, as_kind):
    cell("peer encrypt (RSA+EC recipients) → autosmime decrypt", "openssl",
         f"ktri RSA v1.5 + kari ECDH sha256kdf, AES-256-CBC; as {_KEY[as_kind]}")
    msg = mime.message(pki.alice.email, pki.bob.email)
    content = mime.entity(msg)
    der = openssl.encrypt(content, [(pki.alice.cert, []), (pki.bob.cert, ["ecdh_kdf_md:sha256"])])
    assert [r.split(":")[0] for r in describe(der)["recipients"]] == ["ktri", "kari"]
    sent = mime.wrap_enveloped(msg, der)
    assert_decrypted(decrypt(autosmime, pki.user(as_kind), sent), sent, content)


def _mixed_gap(peer_name: str, as_kind: str, profile: str) -> str | None:
    if peer_name == "gpgsm":
        return gaps.gpgsm_decrypt(profile, as_kind)
    if peer_name == "nss":
        return gaps.nss_decrypt(profile, as_kind) or gaps.nss_foreign_kari()
    return None


MIXED_OUT = [(p, k, prof) for p in ("openssl", "gpgsm", "nss") for k in ("rsa", "ec")
             for prof in ("interop", "modern")]


@pytest.mark.parametrize("peer_name,as_kind,profile", MIXED_OUT, ids=["-".join(c) for c in MIXED_OUT])
def test_autosmime_two_recipients_peer_decrypts_as_either(request, cell, autosmime, pki,
                                                         peer_name, as_kind, profile):
    cell("autosmime encrypt (RSA+EC recipients) → peer decrypt", peer_name,
         f"{profile}; as {_KEY[as_kind]}", gap=_mixed_gap(peer_name, as_kind, profile))
    msg = mime.message(pki.alice.email, pki.bob.email)
    sent = encrypt(autosmime, msg, [pki.alice.cert, pki.bob.cert], modern=profile == "modern")
    der = mime.pkcs7_mime_der(sent)
    assert sorted(r.split(":")[0] for r in describe(der)["recipients"]) == ["kari", "ktri"]
    peer = request.getfixturevalue(peer_name)
    user = pki.user(as_kind)
    got = peer.decrypt(user, smime=sent) if peer_name == "openssl" else peer.decrypt(der, user)
    assert mime.crlf(got) == mime.entity(msg)
