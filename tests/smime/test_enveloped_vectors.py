"""Known-answer decryption: messages made by OpenSSL (NSS test suite) and by the RFC 9216 examples."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from autosmime.errors import NotForMe, UnsupportedAlgorithm
from autosmime.pki.keys import load_certificates, load_p12, load_private_key
from autosmime.smime._cms.enveloped import decrypt

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"  # shared/ lies beside the checkout
NSS = VECTORS / "nss-interop-openssl"
EXAMPLES = VECTORS / "rfc9216" / "examples-cms"
FRAN_TEXT = b"This is a test message to Fran.\n"
SAMPLE_TEXT = b"This is some sample content."

pytestmark = pytest.mark.skipif(not VECTORS.is_dir(), reason="shared test vectors not present")

# file -> (content algorithm, key algorithm), from SOURCES.md of the NSS copy
NSS_FILES = {
    "fran-oaep_ossl.env": ("tripledes_3key", "rsaes_oaep"),
    "fran-oaep-label_ossl.env": ("aes256_cbc", "rsaes_oaep"),
    "fran-oaep-sha256hash_ossl.env": ("aes128_cbc", "rsaes_oaep"),
    "fran-oaep-sha256mgf_ossl.env": ("aes128_cbc", "rsaes_oaep"),
    "fran-oaep-sha256hash-sha256mgf_ossl.env": ("aes256_cbc", "rsaes_oaep"),
    "fran-oaep-sha256hash-label_ossl.env": ("aes256_cbc", "rsaes_oaep"),
    "fran-oaep-sha256mgf-label_ossl.env": ("aes256_cbc", "rsaes_oaep"),
    "fran-oaep_ossl-sha256hash-sha256mgf-label.env": ("aes256_cbc", "rsaes_oaep"),
    "fran-oaep-sha384hash_ossl.env": ("aes192_cbc", "rsaes_oaep"),
    "fran-oaep-sha384mgf_ossl.env": ("aes192_cbc", "rsaes_oaep"),
    "fran-oaep-sha512hash_ossl.env": ("aes256_cbc", "rsaes_oaep"),
    "fran-oaep-sha512mgf_ossl.env": ("aes256_cbc", "rsaes_oaep"),
    "fran-ec_ossl-aes128-sha1.env": ("aes128_cbc", "ecdh-sha1kdf-aes128_wrap"),
    "fran-ec_ossl-aes128-sha224.env": ("aes128_cbc", "ecdh-sha224kdf-aes128_wrap"),
    "fran-ec_ossl-aes128-sha256.env": ("aes128_cbc", "ecdh-sha256kdf-aes128_wrap"),
    "fran-ec_ossl-aes192-sha384.env": ("aes192_cbc", "ecdh-sha384kdf-aes192_wrap"),
    "fran-ec_ossl-aes256-sha512.env": ("aes256_cbc", "ecdh-sha512kdf-aes256_wrap"),
}


@pytest.fixture(scope="module")
def fran():
    rsa_pair = load_p12((NSS / "Fran.p12").read_bytes(), b"nss")
    ec_pair = load_p12((NSS / "Fran-ec.p12").read_bytes(), b"nss")
    return [(rsa_pair.key, rsa_pair.cert), (ec_pair.key, ec_pair.cert)]


def test_every_nss_vector_is_listed():
    assert sorted(p.name for p in NSS.glob("*.env")) == sorted(NSS_FILES)


@pytest.mark.parametrize("name", sorted(NSS_FILES))
def test_nss_openssl_vectors(fran, name):
    result = decrypt((NSS / name).read_bytes(), fran)
    content_algorithm, key_algorithm = NSS_FILES[name]
    assert result.content == FRAN_TEXT
    assert (result.content_algorithm, result.key_algorithm) == (content_algorithm, key_algorithm)
    assert result.weak is (content_algorithm == "tripledes_3key")
    assert result.authenticated is False
    assert result.recipient_cert is fran[1 if "-ec_" in name else 0][1]


@pytest.mark.parametrize("name", ["fran-oaep-sha256hash-label_ossl.env", "fran-ec_ossl-aes128-sha1.env"])
def test_nss_vectors_with_certificate_less_keys(fran, name):
    keys = [(key, None) for key, _ in reversed(fran)]
    assert decrypt((NSS / name).read_bytes(), keys).content == FRAN_TEXT


def test_nss_vectors_are_not_for_the_other_key(fran):
    with pytest.raises(NotForMe):
        decrypt((NSS / "fran-oaep_ossl.env").read_bytes(), [fran[1]])
    with pytest.raises(NotForMe):
        decrypt((NSS / "fran-ec_ossl-aes128-sha256.env").read_bytes(), [fran[0]])


def _person(key_file: str, cert_file: str):
    key = load_private_key((EXAMPLES / "certs-and-keys" / key_file).read_bytes())
    return key, load_certificates((EXAMPLES / "certs-and-keys" / cert_file).read_bytes())[0]


@pytest.fixture(scope="module")
def bob():
    return _person("lamps-bob.decrypt.p8.pem", "lamps-bob.encrypt.crt")


@pytest.fixture(scope="module")
def dana():
    return _person("lamps-dana.decrypt.p8.pem", "lamps-dana.encrypt.crt")


@pytest.mark.parametrize("example,who,expected", [
    ("encryptedForBobRSAOaep", "bob", ("aes128_cbc", "rsaes_oaep", False)),
    ("encryptedForBobAndDana", "bob", ("aes128_cbc", "rsaes_oaep", False)),
    ("encryptedForBobAndDana", "dana", ("aes128_cbc", "x25519-sha256kdf-aes128_wrap", False)),
    ("authEnvelopedForBobChaCha20Poly1305", "bob", ("chacha20_poly1305", "rsaes_oaep", True)),
    ("authEnvelopedForDanaX25519HKDF", "dana", ("aes128_gcm", "x25519-hkdf_sha256-aes256_wrap", True)),
])
def test_rfc9216_examples(request, example, who, expected):
    person = request.getfixturevalue(who)
    for form in ("binary-files", "pem-encoded"):
        path = EXAMPLES / form / f"{example}.{'p7m' if form == 'binary-files' else 'pem'}"
        data = path.read_bytes()
        if form == "pem-encoded":  # same DER under a CMS label
            body = b"".join(line for line in data.splitlines() if line and not line.startswith(b"-----"))
            data = base64.b64decode(body)
        result = decrypt(data, [person])
        assert result.content == SAMPLE_TEXT
        assert (result.content_algorithm, result.key_algorithm, result.authenticated) == expected
        assert result.recipient_cert is person[1]


@pytest.mark.parametrize("example", ["encryptedForBobRSAOaep", "authEnvelopedForDanaX25519HKDF"])
def test_rfc9216_examples_for_someone_else(bob, dana, example):
    other = dana if "Bob" in example else bob
    with pytest.raises(NotForMe, match="1 recipient,"):
        decrypt((EXAMPLES / "binary-files" / f"{example}.p7m").read_bytes(), [other])


def test_rfc9216_kekri_is_a_clear_refusal(bob, dana):
    data = (EXAMPLES / "binary-files" / "encryptedKekri.p7m").read_bytes()
    with pytest.raises((NotForMe, UnsupportedAlgorithm), match="kekri"):
        decrypt(data, [bob, dana, (bob[0], None)])
