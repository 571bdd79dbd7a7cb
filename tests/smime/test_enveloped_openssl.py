"""Sanity interop with the `openssl cms` command: it opens what we write, we open what it writes.

The full matrix (gpgsm, NSS) lives elsewhere; this keeps the CMS layer honest on its own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.smime._cms.enveloped import decrypt, encrypt

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed"),
]

MESSAGE = b"Content-Type: text/plain\r\n\r\nInterop with openssl cms.\r\n"


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> dict[str, tuple[object, object, Path, Path]]:
    """name -> (key, cert, key file, cert file)."""
    folder = tmp_path_factory.mktemp("openssl-pki")
    ca_key, ca = make_ca("OpenSSL Interop CA")
    out = {}
    for name, kind in [("rsa", "rsa"), ("ec", "ec"), ("ec384", "ec384")]:
        key = new_key(kind)
        cert = make_mailbox_cert(f"{name}@example.test", key.public_key(), ca_key, ca)
        key_file, cert_file = folder / f"{name}.key", folder / f"{name}.crt"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[name] = (key, cert, key_file, cert_file)
    return out


def _openssl(*args: str | Path, data: bytes) -> bytes:
    done = subprocess.run(["openssl", "cms", *map(str, args)], input=data, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@pytest.mark.parametrize("profile", ["interop", "modern"])
@pytest.mark.parametrize("recipients", [["rsa"], ["ec"], ["ec384"], ["rsa", "ec", "ec384"]])
def test_openssl_decrypts_ours(people, profile, recipients):
    der = encrypt(MESSAGE, [people[name][1] for name in recipients], profile)
    for name in recipients:
        _, _, key_file, cert_file = people[name]
        plain = _openssl("-decrypt", "-binary", "-inform", "DER", "-inkey", key_file, "-recip", cert_file,
                         data=der)
        assert plain == MESSAGE


# (openssl arguments, recipients, expected content algorithm, expected key algorithm)
OPENSSL_CASES = {
    "aes-128-cbc": (["-aes128"], ["rsa"], "aes128_cbc", "rsaes_pkcs1v15"),
    "aes-192-cbc": (["-aes192"], ["rsa"], "aes192_cbc", "rsaes_pkcs1v15"),
    "aes-256-cbc": (["-aes256"], ["rsa"], "aes256_cbc", "rsaes_pkcs1v15"),
    "des3": (["-des3"], ["rsa"], "tripledes_3key", "rsaes_pkcs1v15"),
    "aes-256-gcm": (["-aes-256-gcm"], ["rsa"], "aes256_gcm", "rsaes_pkcs1v15"),
    "oaep": (["-aes256", "-recip", "{rsa}", "-keyopt", "rsa_padding_mode:oaep"], [], "aes256_cbc",
             "rsaes_oaep"),
    "oaep-sha256-gcm": (["-aes-128-gcm", "-recip", "{rsa}", "-keyopt", "rsa_padding_mode:oaep",
                         "-keyopt", "rsa_oaep_md:sha256"], [], "aes128_gcm", "rsaes_oaep"),
    "keyid-rsa": (["-aes256", "-keyid"], ["rsa"], "aes256_cbc", "rsaes_pkcs1v15"),
    "keyid-ec": (["-aes256", "-keyid"], ["ec"], "aes256_cbc", "ecdh-sha1kdf-aes256_wrap"),
    "stream-ber": (["-aes256", "-stream"], ["rsa"], "aes256_cbc", "rsaes_pkcs1v15"),
    "ec-default": (["-aes128"], ["ec"], "aes128_cbc", "ecdh-sha1kdf-aes128_wrap"),
    "ec-sha256kdf": (["-aes256", "-recip", "{ec}", "-keyopt", "ecdh_kdf_md:sha256"], [], "aes256_cbc",
                     "ecdh-sha256kdf-aes256_wrap"),
    "ec384-gcm": (["-aes-256-gcm"], ["ec384"], "aes256_gcm", "ecdh-sha1kdf-aes256_wrap"),
    "ec-and-rsa": (["-aes256"], ["ec", "rsa"], "aes256_cbc", None),
}


@pytest.mark.parametrize("case", sorted(OPENSSL_CASES))
def test_we_decrypt_openssl(people, case):
    args, recipients, content_algorithm, key_algorithm = OPENSSL_CASES[case]
    args = [str(people["rsa"][3]) if a == "{rsa}" else str(people["ec"][3]) if a == "{ec}" else a
            for a in args]
    der = _openssl("-encrypt", "-binary", "-outform", "DER", *args,
                   *[people[name][3] for name in recipients], data=MESSAGE)
    if case == "stream-ber":
        assert der[1] == 0x80  # indefinite length: BER, as Thunderbird and gpgsm send
    opened_by = recipients or ["rsa" if "{rsa}" in OPENSSL_CASES[case][0] else "ec"]
    for name in opened_by:
        key, cert, _, _ = people[name]
        result = decrypt(der, [(key, cert)])
        assert result.content == MESSAGE
        assert result.content_algorithm == content_algorithm
        assert result.weak is (content_algorithm == "tripledes_3key")
        assert result.authenticated is content_algorithm.endswith("gcm")
        expected_key = key_algorithm or ("rsaes_pkcs1v15" if name == "rsa" else "ecdh-sha1kdf-aes256_wrap")
        assert result.key_algorithm == expected_key
        assert result.recipient_cert == cert
