"""`autosmime decrypt` streams: from a file, a pipe or --in, the same output; nothing written on failure."""

import subprocess
import sys

import pytest

from autosmime.smime import decrypt, encrypt

BODY = b"Content-Type: text/plain\r\n\r\n" + b"a line of a long message\r\n" * 80_000


@pytest.fixture(scope="module")
def big(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    message = encrypt(b"From: alice@example.test\r\n" + BODY, [pki["bob"].cert, pki["carol"].cert])
    (d / "enc.eml").write_bytes(message)
    return d / "enc.eml", decrypt(message, [pki["carol"].pair]).message


def _decrypt(user, *args, stdin=None):
    cmd = [sys.executable, "-m", "autosmime", "decrypt", "--key", str(user.key_path), "--cert", str(user.cert_path)]
    return subprocess.run(cmd + [str(a) for a in args], stdin=stdin, capture_output=True, timeout=60)


def test_file_pipe_and_in_out_give_the_same_message(pki, big, tmp_path):
    path, expected = big
    carol = pki["carol"]  # an RSA recipient: the streamed layout
    with open(path, "rb") as f:  # stdin is the file itself
        assert _decrypt(carol, stdin=f).stdout == expected
    piped = subprocess.run(["cat", str(path)], capture_output=True, check=True).stdout
    p = subprocess.run([sys.executable, "-m", "autosmime", "decrypt", "--key", str(carol.key_path),
                        "--cert", str(carol.cert_path)], input=piped, capture_output=True, timeout=60)
    assert p.returncode == 0 and p.stdout == expected
    p = _decrypt(carol, "--in", path, "--out", tmp_path / "out.eml")
    assert p.returncode == 0 and p.stdout == b"", p.stderr
    assert (tmp_path / "out.eml").read_bytes() == expected


def test_failure_writes_nothing(pki, big, tmp_path):
    path, _ = big
    alice = pki["alice"]  # RSA, not a recipient
    p = _decrypt(alice, "--in", path, "--out", tmp_path / "out.eml")
    assert p.returncode == 1 and p.stdout == b""
    assert not (tmp_path / "out.eml").exists() and list(tmp_path.iterdir()) == []
    broken = tmp_path / "broken.eml"
    broken.write_bytes(path.read_bytes()[:-5000])
    with open(broken, "rb") as f:
        p = _decrypt(pki["carol"], stdin=f)
    assert p.returncode == 1 and p.stdout == b""
    assert p.stderr.decode().startswith("autosmime: error:") and len(p.stderr.splitlines()) == 1
