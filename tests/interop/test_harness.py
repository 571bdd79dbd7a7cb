"""The harness itself: peers agree with each other and refuse what they must.

These run without autosmime, so a broken harness is told apart from a broken
engine, and every peer check used by the matrix is shown able to fail.
"""

from __future__ import annotations

import pytest

from tests.interop import mime
from tests.interop.cms import describe
from tests.interop.peers import PeerRefused, tool_version

pytestmark = pytest.mark.interop


def _tamper(content: bytes) -> bytes:
    return content.replace(b"last line", b"last lime")


@pytest.fixture(scope="module")
def msg(pki):
    return mime.message(pki.alice.email, pki.bob.email)


def test_versions_detected(openssl, gpgsm, nss):
    for tool in ("openssl", "gpgsm", "nss"):
        version = tool_version(tool)
        assert version and len(version) >= 2 and version[0] >= 2, (tool, version)


@pytest.mark.parametrize("verifier", ["openssl", "gpgsm", "nss"])
def test_peers_verify_openssl_signature_and_reject_tampering(request, pki, openssl, msg, verifier):
    content = mime.entity(msg)
    sig = openssl.sign(content, pki.alice)
    peer = request.getfixturevalue(verifier)
    if verifier == "openssl":
        assert openssl.verify(pki.ca, der=sig, content=content) == content
    else:
        assert peer.verify(sig, content) == content
    with pytest.raises(PeerRefused):
        if verifier == "openssl":
            openssl.verify(pki.ca, der=sig, content=_tamper(content))
        else:
            peer.verify(sig, _tamper(content))


@pytest.mark.parametrize("verifier", ["gpgsm", "nss"])
def test_peers_reject_untrusted_signer(request, tmp_path, openssl, msg, verifier):
    """A signer from a CA the peer does not trust must not pass the harness's verify."""
    from cryptography.hazmat.primitives import serialization

    from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
    from tests.interop.peers import User

    ca_key, ca_cert = make_ca("Stranger CA")
    key = new_key("rsa")
    cert = make_mailbox_cert("mallory@example.test", key.public_key(), ca_key, ca_cert)
    (tmp_path / "m.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "m.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    mallory = User("mallory", "mallory@example.test", "rsa", tmp_path / "m.key", tmp_path / "m.pem",
                   tmp_path / "none.p12", tmp_path / "none.p12", b"", tmp_path / "none")
    content = mime.entity(msg)
    sig = openssl.sign(content, mallory)
    with pytest.raises(PeerRefused):
        request.getfixturevalue(verifier).verify(sig, content)


@pytest.mark.parametrize("producer", ["gpgsm", "nss"])
def test_wrapped_peer_output_is_valid_smime(request, pki, openssl, msg, producer):
    """What the harness wraps around gpgsm/NSS DER is S/MIME OpenSSL reads as mail."""
    peer = request.getfixturevalue(producer)
    content = mime.entity(msg)
    signed = mime.wrap_signed(msg, content, peer.sign(content, pki.alice))
    assert mime.crlf(openssl.verify(pki.ca, smime=signed)) == content
    assert mime.split_signed(signed)[0] == content
    enveloped = mime.wrap_enveloped(msg, peer.encrypt(content, [pki.alice]))
    assert mime.outer(enveloped) == mime.outer(msg)
    assert openssl.decrypt(pki.alice, smime=enveloped) == content


def test_peer_ber_output_is_ber(pki, nss, msg):
    """NSS writes indefinite-length BER: the decrypt matrix really covers BER input."""
    assert describe(nss.encrypt(mime.entity(msg), [pki.alice]))["ber"] is True


def test_split_signed_of_openssl_smime(pki, openssl, msg):
    content = mime.entity(msg)
    smime = mime.with_outer(msg, openssl.sign(content, pki.alice, outform="SMIME"))
    got, sig = mime.split_signed(smime)
    assert got == content
    assert describe(sig)["type"] == "signed_data"


@pytest.mark.parametrize("importer", ["gpgsm", "nss"])
def test_peer_imports_pbes2_pkcs12(request, cell, pki, tmp_path_factory, importer):
    """cryptography's default PKCS#12 (PBES2, AES-256, HMAC-SHA256) — what a user would export."""
    from tests.interop import gaps
    from tests.interop.peers import Gpgsm, Nss

    cell("PKCS#12 (PBES2-AES-256, cryptography) → peer import", importer, "RSA-2048 key + cert + CA",
         gap=gaps.gpgsm_pbes2_p12() if importer == "gpgsm" else None)
    if importer == "gpgsm":
        peer = Gpgsm(tmp_path_factory.mktemp("gnupg-p12"))
        try:
            peer.import_p12(pki.alice.p12, pki.alice.password, pki.alice.email)
        finally:
            peer.close()
    else:
        peer = Nss(tmp_path_factory.mktemp("nss-p12"))
        peer.add_user(pki.alice)
        peer.trust(pki.ca)
        content = mime.entity(mime.message(pki.alice.email, pki.alice.email))
        assert peer.verify(peer.sign(content, pki.alice), content) == content
