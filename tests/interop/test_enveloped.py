"""Encryption both ways: autosmime encrypts → every peer decrypts; every peer encrypts → autosmime decrypts.

    $ python -m pytest tests/interop/test_enveloped.py -q
"""

from __future__ import annotations

import pytest

from tests.interop import gaps, mime
from tests.interop.cms import describe

pytestmark = pytest.mark.interop

KINDS = ["rsa", "ec"]
PROFILES = ["interop", "modern"]

# What the contract promises autosmime writes, per profile and key type.
EXPECTED = {
    ("interop", "rsa"): ("enveloped_data", "aes256_cbc", "ktri:rsaes_pkcs1v15:issuer_and_serial_number"),
    ("interop", "ec"): ("enveloped_data", "aes256_cbc", "kari:ecdh-sha256kdf:aes256_wrap"),
    ("modern", "rsa"): ("authenticated_enveloped_data", "aes256_gcm", "ktri:rsaes_oaep:issuer_and_serial_number"),
    ("modern", "ec"): ("authenticated_enveloped_data", "aes256_gcm", "kari:ecdh-sha256kdf:aes256_wrap"),
}
_LABEL = {
    ("interop", "rsa"): "EnvelopedData AES-256-CBC, RSA PKCS#1 v1.5",
    ("interop", "ec"): "EnvelopedData AES-256-CBC, ECDH P-256 sha256kdf aes256-wrap",
    ("modern", "rsa"): "AuthEnvelopedData AES-256-GCM (ICVlen 16), RSA-OAEP-SHA256",
    ("modern", "ec"): "AuthEnvelopedData AES-256-GCM (ICVlen 16), ECDH P-256",
}
DECRYPT_GAP = {"openssl": lambda profile, kind: None,
               "gpgsm": gaps.gpgsm_decrypt,
               "nss": gaps.nss_decrypt}


def encrypt(autosmime, msg: bytes, certs, *, modern: bool = False) -> bytes:
    args = ["encrypt"]
    for cert in certs:
        args += ["--to", cert]
    if modern:
        args.append("--modern")
    out = autosmime(*args, stdin=msg)
    assert mime.outer(out) == mime.outer(msg), "encrypt lost or changed outer headers"
    assert mime.header(out, "Content-Type").startswith("application/pkcs7-mime")
    assert mime.param(out, "Content-Type", "smime-type") == \
        ("authEnveloped-data" if modern else "enveloped-data")
    return out


def decrypt(autosmime, user, sent: bytes, credentials: str = "keycert") -> bytes:
    if credentials == "p12":
        args = ["--p12", user.p12, "--password-file", user.password_file]
    else:
        args = ["--key", user.key, "--cert", user.cert]
    return autosmime("decrypt", *args, stdin=sent)


def assert_decrypted(out: bytes, sent: bytes, content: bytes) -> None:
    assert mime.entity(out) == mime.crlf(content), "decrypted entity differs from what was encrypted"
    assert mime.outer(out) == mime.outer(sent), "outer headers not preserved"
    assert not mime.duplicate_fields(out), f"duplicated header fields {mime.duplicate_fields(out)}"


# --- 3. autosmime encrypts → peers decrypt ------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("decrypter", ["openssl", "gpgsm", "nss"])
def test_autosmime_encrypts_peer_decrypts(request, cell, autosmime, pki, decrypter, kind, profile):
    cell("autosmime encrypt → peer decrypt", decrypter, _LABEL[profile, kind],
         gap=DECRYPT_GAP[decrypter](profile, kind))
    user = pki.user(kind)
    msg = mime.message(pki.alice.email, user.email)
    out = encrypt(autosmime, msg, [user.cert], modern=profile == "modern")
    der = mime.pkcs7_mime_der(out)
    info = describe(der)
    ctype, cipher, recipient = EXPECTED[profile, kind]
    assert (info["type"], info["cipher"], info["recipients"]) == (ctype, cipher, [recipient])
    assert not info["ber"]
    if profile == "modern":
        assert info["icv_len"] == 16
    peer = request.getfixturevalue(decrypter)
    if decrypter == "openssl":
        got = peer.decrypt(user, smime=out)
    else:
        got = peer.decrypt(der, user)
    assert mime.crlf(got) == mime.entity(msg)


# --- 4. peers encrypt → autosmime decrypts ------------------------------------------


OAEP_SHA256 = ["rsa_padding_mode:oaep", "rsa_oaep_md:sha256"]
OPENSSL_ENCRYPT = [
    # id, recipient kind, cipher flag, -keyopt values, extra args
    ("rsa-v1.5 aes-128-cbc", "rsa", "-aes-128-cbc", [], []),
    ("rsa-v1.5 aes-192-cbc", "rsa", "-aes-192-cbc", [], []),
    ("rsa-v1.5 aes-256-cbc", "rsa", "-aes-256-cbc", [], []),
    ("rsa-v1.5 des-ede3-cbc", "rsa", "-des3", [], []),
    ("rsa-v1.5 aes-128-gcm", "rsa", "-aes-128-gcm", [], []),
    ("rsa-v1.5 aes-256-gcm", "rsa", "-aes-256-gcm", [], []),
    ("rsa-oaep-sha1 aes-256-cbc", "rsa", "-aes-256-cbc", ["rsa_padding_mode:oaep"], []),
    ("rsa-oaep-sha256 aes-256-cbc", "rsa", "-aes-256-cbc", OAEP_SHA256, []),
    ("rsa-oaep-sha256 aes-256-gcm", "rsa", "-aes-256-gcm", OAEP_SHA256, []),
    ("rsa-v1.5 aes-256-cbc SKI rid (-keyid)", "rsa", "-aes-256-cbc", [], ["-keyid"]),
    ("rsa-v1.5 aes-256-cbc BER (-stream)", "rsa", "-aes-256-cbc", [], ["-stream"]),
    ("ecdh-sha1kdf aes-128-cbc (default kdf)", "ec", "-aes-128-cbc", [], []),
    ("ecdh-sha256kdf aes-256-cbc", "ec", "-aes-256-cbc", ["ecdh_kdf_md:sha256"], []),
    ("ecdh-sha384kdf aes-192-cbc", "ec", "-aes-192-cbc", ["ecdh_kdf_md:sha384"], []),
    ("ecdh-sha256kdf aes-256-gcm", "ec", "-aes-256-gcm", ["ecdh_kdf_md:sha256"], []),
    ("ecdh aes-256-cbc SKI rid (-keyid)", "ec", "-aes-256-cbc", [], ["-keyid"]),
]
CREDENTIALS = ["keycert", "p12"]
# --p12 takes another path to the same key: one RSA and one EC cell per peer show it.
_P12_CASES = {"rsa-v1.5 aes-256-cbc", "ecdh-sha256kdf aes-256-cbc"}
OPENSSL_CELLS = [(case, cred) for case in OPENSSL_ENCRYPT for cred in CREDENTIALS
                 if cred == "keycert" or case[0] in _P12_CASES]


@pytest.mark.parametrize("case,credentials", OPENSSL_CELLS,
                         ids=[f"{c[0].replace(' ', '_')}-{cred}" for c, cred in OPENSSL_CELLS])
def test_openssl_encrypts_autosmime_decrypts(cell, autosmime, pki, openssl, case, credentials):
    name, kind, cipher, keyopts, extra = case
    cell("peer encrypt → autosmime decrypt", "openssl", f"{name}; {credentials}")
    user = pki.user(kind)
    msg = mime.message(pki.alice.email, user.email)
    content = mime.entity(msg)
    # OpenSSL's own S/MIME writer, as a mail client built on it would send.
    smime = openssl.encrypt(content, [(user.cert, keyopts)], cipher=cipher, outform="SMIME", extra=extra)
    sent = mime.with_outer(msg, smime)
    der = mime.pkcs7_mime_der(sent)
    if "-stream" in extra:
        assert describe(der)["ber"]
    assert_decrypted(decrypt(autosmime, user, sent, credentials), sent, content)


# Every cipher gpgsm offers for RSA; one EC cell shows the ECC gap.
GPGSM_CASES = [("rsa", c, "keycert") for c in (None, "AES128", "AES192", "AES256", "3DES")] \
    + [("rsa", None, "p12"), ("ec", None, "keycert")]


@pytest.mark.parametrize("kind,cipher,credentials", GPGSM_CASES,
                         ids=[f"{k}-{c or 'default'}-{cred}" for k, c, cred in GPGSM_CASES])
def test_gpgsm_encrypts_autosmime_decrypts(cell, autosmime, pki, gpgsm, kind, cipher, credentials):
    cell("peer encrypt → autosmime decrypt", "gpgsm",
         f"{'RSA' if kind == 'rsa' else 'ECDH P-256'} {cipher or 'default cipher'}; {credentials}",
         gap=gaps.gpgsm_ecc() if kind == "ec" else None)
    user = pki.user(kind)
    msg = mime.message(pki.alice.email, user.email)
    content = mime.entity(msg)
    der = gpgsm.encrypt(content, [user], cipher=cipher)
    assert describe(der)["ber"]
    sent = mime.wrap_enveloped(msg, der)
    assert_decrypted(decrypt(autosmime, user, sent, credentials), sent, content)


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize("kind", KINDS)
def test_nss_encrypts_autosmime_decrypts(cell, autosmime, pki, nss, kind, credentials):
    cell("peer encrypt → autosmime decrypt", "nss",
         f"cmsutil -E default cipher, {'RSA' if kind == 'rsa' else 'ECDH P-256'}; {credentials}",
         gap=gaps.nss_ecdh() if kind == "ec" else None)
    user = pki.user(kind)
    msg = mime.message(pki.alice.email, user.email)
    content = mime.entity(msg)
    der = nss.encrypt(content, [user])
    assert describe(der)["ber"]
    sent = mime.wrap_enveloped(msg, der)
    assert_decrypted(decrypt(autosmime, user, sent, credentials), sent, content)
