"""Sanity interop with the openssl CLI: it accepts our signatures, we accept its signatures."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding

from autosmime.errors import BadSignature, UnsupportedAlgorithm
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.pki.validate import validate_signer
from autosmime.smime._cms.signed import sign, verify

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")]

CONTENT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nFrom here on\r\n\xc3\xa9t\xc3\xa9 binary\x00bytes\r\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("openssl-pki")
    root_key, root = make_ca("OpenSSL Interop Root")
    inter_key, inter = make_ca("OpenSSL Interop Intermediate", new_key("ec"), issuer_key=root_key, issuer_cert=root)
    (d / "ca.pem").write_bytes(root.public_bytes(Encoding.PEM))
    (d / "inter.pem").write_bytes(inter.public_bytes(Encoding.PEM))
    (d / "content.bin").write_bytes(CONTENT)
    signers = {}
    for kind in ("rsa", "ec"):
        key = new_key(kind)
        cert = make_mailbox_cert(f"{kind}@example.test", key.public_key(), root_key, root)
        via = make_mailbox_cert(f"{kind}.i@example.test", key.public_key(), inter_key, inter)
        (d / f"{kind}.key").write_bytes(key.private_bytes(
            Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (d / f"{kind}.key").chmod(0o600)
        (d / f"{kind}.pem").write_bytes(cert.public_bytes(Encoding.PEM))
        signers[kind] = (key, cert, via)
    return {"dir": d, "root": root, "inter": inter, "signers": signers}


def _openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, timeout=60, check=check)


def _openssl_verifies(pki, der: bytes, detached: bool) -> subprocess.CompletedProcess:
    d = pki["dir"]
    (d / "sig.der").write_bytes(der)
    args = ["cms", "-verify", "-binary", "-inform", "DER", "-in", d / "sig.der", "-CAfile", d / "ca.pem",
            "-out", d / "out.bin"]
    if detached:
        args += ["-content", d / "content.bin"]
    return _openssl(*args, check=False)


@pytest.mark.parametrize("kind,pss", [("rsa", False), ("rsa", True), ("ec", False)])
@pytest.mark.parametrize("detached", [True, False])
@pytest.mark.parametrize("via_intermediate", [False, True])
def test_openssl_verifies_our_signature(pki, kind, pss, detached, via_intermediate):
    key, cert, via = pki["signers"][kind]
    der = (sign(CONTENT, key, via, [pki["inter"]], detached=detached, pss=pss) if via_intermediate
           else sign(CONTENT, key, cert, detached=detached, pss=pss))
    done = _openssl_verifies(pki, der, detached)
    assert done.returncode == 0, done.stderr.decode()
    assert b"Verification successful" in done.stderr
    assert (pki["dir"] / "out.bin").read_bytes() == CONTENT


def test_openssl_rejects_our_signature_over_other_content(pki):
    key, cert, _ = pki["signers"]["rsa"]
    done = _openssl_verifies(pki, sign(CONTENT + b"x", key, cert), detached=True)
    assert done.returncode != 0


def test_openssl_prints_our_capabilities(pki):
    key, cert, _ = pki["signers"]["ec"]
    d = pki["dir"]
    (d / "sig.der").write_bytes(sign(CONTENT, key, cert))
    text = _openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", d / "sig.der").stdout.decode()
    for name in ("aes-256-gcm", "aes-128-gcm", "aes-256-cbc", "aes-192-cbc", "aes-128-cbc", "rsaesOaep",
                 "dhSinglePass-stdDH-sha256kdf-scheme", "id-aes256-wrap"):
        assert name in text, name


OPENSSL_SIGN = {
    "detached": [],
    "opaque": ["-nodetach"],
    "stream-opaque": ["-nodetach", "-stream"],
    "stream-detached": ["-stream"],
    "pss": ["-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:digest"],
    "pss-max-salt": ["-keyopt", "rsa_padding_mode:pss"],
    "noattr": ["-noattr"],
    "sha512": ["-md", "sha512"],
}


def _openssl_signs(pki, kind: str, extra: list[str]) -> bytes:
    d = pki["dir"]
    _openssl("cms", "-sign", "-binary", "-in", d / "content.bin", "-signer", d / f"{kind}.pem",
             "-inkey", d / f"{kind}.key", "-outform", "DER", "-out", d / "theirs.der", *extra)
    return (d / "theirs.der").read_bytes()


@pytest.mark.parametrize("kind,variant", [(k, v) for k in ("rsa", "ec") for v in sorted(OPENSSL_SIGN)
                                          if k == "rsa" or not v.startswith("pss")])
def test_we_verify_openssl_signature(pki, kind, variant):
    der = _openssl_signs(pki, kind, OPENSSL_SIGN[variant])
    detached = "-nodetach" not in OPENSSL_SIGN[variant]
    if "stream" in variant:
        assert der[1] == 0x80, "expected BER indefinite length from -stream"
    result = verify(der, CONTENT if detached else None)
    (signer,) = result.signers
    assert result.content == CONTENT
    assert signer.cert == pki["signers"][kind][1]
    expected_scheme = "rsassa_pss" if variant.startswith("pss") else (
        "rsassa_pkcs1v15" if kind == "rsa" else "ecdsa")
    assert signer.signature_algorithm == expected_scheme
    assert signer.digest_algorithm == ("sha512" if variant == "sha512" else "sha256")
    if variant == "noattr":
        assert signer.signing_time is None and signer.capabilities == ()
    else:
        assert signer.signing_time is not None and "aes256_cbc" in signer.capabilities
    assert validate_signer(signer.cert, list(result.certificates), [pki["root"]])[-1] == pki["root"]
    with pytest.raises(BadSignature):
        verify(der, CONTENT + b"!") if detached else verify(der.replace(b"binary", b"BINARY"))


def test_openssl_sha1_signature_is_weak(pki):
    der = _openssl_signs(pki, "rsa", ["-md", "sha1"])
    with pytest.raises(UnsupportedAlgorithm, match="weak digest: sha1"):
        verify(der, CONTENT)
    assert verify(der, CONTENT, allow_sha1=True).signers[0].digest_algorithm == "sha1"
