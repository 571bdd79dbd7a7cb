"""autosmime refuses peer messages it must refuse: the pass cells elsewhere are not vacuous.

    $ python -m pytest tests/interop/test_rejects.py -q
"""

from __future__ import annotations

import pytest

from tests.interop import mime
from tests.interop.peers import AutosmimeFailed

pytestmark = pytest.mark.interop


def _tamper(eml: bytes) -> bytes:
    tampered = eml.replace(b"last line", b"last lime", 1)
    assert tampered != eml
    return tampered


@pytest.mark.parametrize("signer", ["openssl", "gpgsm", "nss"])
def test_tampered_peer_signature_rejected(request, cell, autosmime, pki, signer):
    cell("peer sign → autosmime verify (must reject)", signer, "RSA detached, body altered after signing")
    msg = mime.message(pki.alice.email, pki.bob.email)
    content = mime.entity(msg)
    peer = request.getfixturevalue(signer)
    sent = mime.wrap_signed(msg, content, peer.sign(content, pki.alice))
    assert mime.entity(autosmime("verify", "--trust", pki.ca, stdin=sent)) == content  # this passes...
    with pytest.raises(AutosmimeFailed) as failed:  # ...the tampered one does not
        autosmime("verify", "--trust", pki.ca, stdin=_tamper(sent))
    assert failed.value.code == 1


def test_untrusted_root_rejected(cell, autosmime, pki, nss, tmp_path):
    cell("peer sign → autosmime verify (must reject)", "nss", "RSA detached, --trust another CA")
    from cryptography.hazmat.primitives import serialization

    from autosmime.pki.profiles import make_ca

    _, other = make_ca("Some Other CA")
    other_pem = tmp_path / "other-ca.pem"
    other_pem.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    msg = mime.message(pki.alice.email, pki.bob.email)
    content = mime.entity(msg)
    sent = mime.wrap_signed(msg, content, nss.sign(content, pki.alice))
    with pytest.raises(AutosmimeFailed) as failed:
        autosmime("verify", "--trust", other_pem, stdin=sent)
    assert failed.value.code == 1


def test_from_mismatch_rejected(cell, autosmime, pki, openssl):
    cell("peer sign → autosmime verify (must reject)", "openssl", "RSA detached, From is not the signer")
    msg = mime.message(pki.bob.email, pki.alice.email)   # From bob, signed by alice
    content = mime.entity(msg)
    sent = mime.wrap_signed(msg, content, openssl.sign(content, pki.alice))
    with pytest.raises(AutosmimeFailed) as failed:
        autosmime("verify", "--trust", pki.ca, stdin=sent)
    assert failed.value.code == 1


@pytest.mark.parametrize("producer", ["openssl", "nss"])
def test_not_for_this_key_rejected(request, cell, autosmime, pki, producer):
    cell("peer encrypt → autosmime decrypt (must reject)", producer, "to alice (RSA), opened with bob's key")
    msg = mime.message(pki.bob.email, pki.alice.email)
    content = mime.entity(msg)
    peer = request.getfixturevalue(producer)
    der = peer.encrypt(content, [(pki.alice.cert, [])]) if producer == "openssl" \
        else peer.encrypt(content, [pki.alice])
    with pytest.raises(AutosmimeFailed) as failed:
        autosmime("decrypt", "--key", pki.bob.key, "--cert", pki.bob.cert,
                  stdin=mime.wrap_enveloped(msg, der))
    assert failed.value.code == 1
