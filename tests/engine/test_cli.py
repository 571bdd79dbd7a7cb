"""The engine's command-line contract: exact commands, exit codes, nothing on stdout on failure."""

import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12


def run(*args, stdin: bytes = b"", home=None):
    cmd = [sys.executable, "-m", "autosmime"]
    if home is not None:
        cmd += ["--home", str(home)]
    p = subprocess.run(cmd + [str(a) for a in args], input=stdin, capture_output=True, timeout=60)
    return p.returncode, p.stdout, p.stderr.decode()


def assert_failed(rc, out, err, code=1):
    assert rc == code, err
    assert out == b""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err


@pytest.fixture(scope="module")
def signed(pki, message):
    a = pki["alice"]
    rc, out, err = run("sign", "--key", a.key_path, "--cert", a.cert_path, stdin=message)
    assert rc == 0, err
    return out


def test_sign_verify_pipeline(pki, message, signed, tmp_path):
    rc, inner, err = run("verify", "--trust", pki.ca_path, "--signer-cert-out", tmp_path / "signer.pem", stdin=signed)
    assert rc == 0, err
    assert inner == message
    assert (tmp_path / "signer.pem").read_bytes() == pki["alice"].cert_path.read_bytes()


def test_in_out_files_and_opaque(pki, message, tmp_path):
    a = pki["alice"]
    (tmp_path / "in.eml").write_bytes(message)
    rc, out, err = run("sign", "--key", a.key_path, "--cert", a.cert_path, "--opaque",
                       "--in", tmp_path / "in.eml", "--out", tmp_path / "s.eml")
    assert rc == 0 and out == b"", err
    assert b"smime-type=signed-data" in (tmp_path / "s.eml").read_bytes()
    rc, out, err = run("verify", "--trust", pki.other_ca_path, "--trust", pki.ca_path,
                       "--in", tmp_path / "s.eml", "--out", tmp_path / "inner.eml")
    assert rc == 0, err
    assert (tmp_path / "inner.eml").read_bytes() == message


def test_encrypt_decrypt_pipeline_with_key_and_p12(pki, message, tmp_path):
    b = pki["bob"]
    rc, enc, err = run("encrypt", "--to", b.cert_path, "--to", pki["carol"].cert_path, stdin=message)
    assert rc == 0, err
    rc, out, err = run("decrypt", "--key", b.key_path, "--cert", b.cert_path, stdin=enc)
    assert rc == 0 and out == message, err
    c = pki["carol"]
    p12 = pkcs12.serialize_key_and_certificates(
        b"carol", c.key, c.cert, None, serialization.BestAvailableEncryption(b"s3cret"))
    (tmp_path / "carol.p12").write_bytes(p12)
    (tmp_path / "pw").write_bytes(b"s3cret\n")
    rc, out, err = run("decrypt", "--p12", tmp_path / "carol.p12", "--password-file", tmp_path / "pw", stdin=enc)
    assert rc == 0 and out == message, err
    rc, out, err = run("sign", "--p12", tmp_path / "carol.p12", "--password-file", tmp_path / "pw", stdin=message)
    assert rc == 0 and b"multipart/signed" in out, err


def test_modern_encrypt(pki, message):
    b = pki["bob"]
    rc, enc, err = run("encrypt", "--modern", "--to", b.cert_path, stdin=message)
    assert rc == 0 and b"authEnveloped-data" in enc, err
    rc, out, err = run("decrypt", "--key", b.key_path, "--cert", b.cert_path, stdin=enc)
    assert rc == 0 and out == message, err


def test_encrypt_sign_signs_and_encrypts_in_one_pass(pki, message, tmp_path):
    a, b = pki["alice"], pki["bob"]
    rc, enc, err = run("encrypt", "--sign", "--key", a.key_path, "--cert", a.cert_path, "--to", b.cert_path,
                       stdin=message)
    assert rc == 0 and b"enveloped-data" in enc, err
    for reader in (a, b):  # the Sent copy: the signer's certificate is a recipient too
        rc, out, err = run("read", "--key", reader.key_path, "--cert", reader.cert_path, "--trust", pki.ca_path,
                           stdin=enc)
        assert rc == 0 and out == message, err
        assert "encrypted; signed by alice@example.test (good)" in err
    (tmp_path / "in.eml").write_bytes(message)
    rc, out, err = run("encrypt", "--sign", "--modern", "--key", a.key_path, "--cert", a.cert_path,
                       "--to", b.cert_path, "--in", tmp_path / "in.eml", "--out", tmp_path / "out.eml")
    assert rc == 0 and out == b"", err
    assert b"authEnveloped-data" in (tmp_path / "out.eml").read_bytes()


@pytest.mark.parametrize("args", [["--key", "K"], ["--p12", "P"], ["--sign", "--key", "K"]])
def test_encrypt_sign_usage_errors(pki, message, args):
    rc, out, err = run("encrypt", "--to", pki["bob"].cert_path, *args, stdin=message)
    assert_failed(rc, out, err, code=2)


def test_verify_at_time(pki, message):
    u = pki["expired"]
    msg = message.replace(b"alice@example.test>", b"expired@example.test>")
    rc, s, err = run("sign", "--key", u.key_path, "--cert", u.cert_path, stdin=msg)
    assert rc == 0, err
    assert_failed(*run("verify", "--trust", pki.ca_path, stdin=s))
    rc, out, err = run("verify", "--trust", pki.ca_path, "--at", "2023-01-15T00:00:00Z", stdin=s)
    assert rc == 0 and out == msg, err


# --- negative cases: typed error, exit 1, one line, nothing on stdout ----------------------------

def test_neg_tampered_body(pki, signed):
    assert_failed(*run("verify", "--trust", pki.ca_path, stdin=signed.replace(b"Hello Bob", b"Hello Eve")))


def test_neg_tampered_signature(pki, signed):
    i = signed.rindex(b"\r\n--")
    tampered = signed[: i - 8] + (b"A" if signed[i - 8:i - 7] != b"A" else b"B") + signed[i - 7:]
    assert_failed(*run("verify", "--trust", pki.ca_path, stdin=tampered))


def test_neg_untrusted_root(pki, signed):
    assert_failed(*run("verify", "--trust", pki.other_ca_path, stdin=signed))


def test_neg_from_mismatch(pki, message):
    b = pki["bob"]
    rc, s, err = run("sign", "--key", b.key_path, "--cert", b.cert_path, stdin=message)
    assert rc == 0
    rc, out, err = run("verify", "--trust", pki.ca_path, stdin=s)
    assert_failed(rc, out, err)
    assert "From" in err


def test_neg_wrong_key(pki, message):
    rc, enc, _ = run("encrypt", "--to", pki["bob"].cert_path, stdin=message)
    c = pki["carol"]
    assert_failed(*run("decrypt", "--key", c.key_path, "--cert", c.cert_path, stdin=enc))


@pytest.mark.parametrize("data", [b"", b"garbage\x00\xff", b"From: a@b\r\n\r\nhello"])
def test_neg_garbage(pki, data):
    a = pki["alice"]
    assert_failed(*run("verify", "--trust", pki.ca_path, stdin=data))
    assert_failed(*run("decrypt", "--key", a.key_path, "--cert", a.cert_path, stdin=data))


def test_neg_truncated(pki, signed, message):
    assert_failed(*run("verify", "--trust", pki.ca_path, stdin=signed[: len(signed) * 2 // 3]))
    rc, enc, _ = run("encrypt", "--to", pki["bob"].cert_path, stdin=message)
    b = pki["bob"]
    assert_failed(*run("decrypt", "--key", b.key_path, "--cert", b.cert_path, stdin=enc[: len(enc) - 200]))


def test_failure_writes_no_out_file(pki, signed, tmp_path):
    rc, _, _ = run("verify", "--trust", pki.other_ca_path, "--out", tmp_path / "x.eml", stdin=signed)
    assert rc == 1 and not (tmp_path / "x.eml").exists()


def test_usage_errors_exit_2(pki, message, tmp_path):
    a = pki["alice"]
    assert_failed(*run("sign", "--key", a.key_path, stdin=message, home=tmp_path / "h"), code=2)
    assert_failed(*run("verify", stdin=message), code=2)
    assert_failed(*run("encrypt", stdin=message), code=2)
    assert_failed(*run("decrypt", stdin=message, home=tmp_path / "empty"), code=2)
    assert_failed(*run("verify", "--trust", pki.ca_path, "--at", "yesterday", stdin=message), code=2)
    assert_failed(*run("sign", "--bogus-flag"), code=2)
    assert_failed(*run("no-such-command"), code=2)


def test_debug_shows_traceback(pki, signed):
    rc, out, err = run("--debug", "verify", "--trust", pki.other_ca_path, stdin=signed)
    assert rc == 1 and out == b"" and "Traceback" in err
