"""decrypt_stream: the same messages and the same errors as decrypt, the ciphertext spooled, not held."""

from __future__ import annotations

import importlib
import io
import os
import subprocess

import pytest

from autosmime.errors import DecryptionError, MalformedMessage, NotForMe
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.smime import decrypt, encrypt, mime, sign
from autosmime.smime._cms import enveloped as _enveloped
from autosmime.smime._cms.enveloped import encrypt as cms_encrypt
from autosmime.smime.decrypt import decrypt_stream

FROM = b"From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: s\r\n"


@pytest.fixture(scope="module")
def people():
    ca_key, ca = make_ca("Stream Test CA")
    out = {}
    for name, kind in (("bob", "rsa"), ("eve", "rsa"), ("ec", "ec")):
        key = new_key(kind)
        out[name] = (key, make_mailbox_cert(f"{name}@example.test", key.public_key(), ca_key, ca))
    return out


class Pipe(io.BytesIO):
    """Input that can be read only once, as from a pipe."""

    def seekable(self) -> bool:
        return False


def _stream(message: bytes, keys, source=io.BytesIO) -> bytes:
    report, pieces = decrypt_stream(source(message), keys)
    return b"".join(pieces)


def _same(message: bytes, keys) -> bytes:
    expected = decrypt(message, keys).message
    assert _stream(message, keys) == expected
    assert _stream(message, keys, Pipe) == expected
    return expected


@pytest.fixture(params=[1 << 20, 97, 4096])  # the real read size, and odd ones that cut everywhere
def read_size(request, monkeypatch):
    module = importlib.import_module("autosmime.smime.decrypt")  # the package's "decrypt" is the function
    monkeypatch.setattr(module, "_READ", request.param)
    monkeypatch.setattr(_enveloped, "_HEAD", 64 if request.param < 1000 else _enveloped._HEAD)
    return request.param


@pytest.mark.parametrize("body", [
    b"Content-Type: text/plain\r\n\r\nhello\r\n",
    b"Content-Type: text/plain\n\nbare LF\nlines\n",  # made CRLF, as decrypt does
    b"Content-Type: text/plain\r\n\r\n" + b"x\r" * 5000 + b"\n",  # CRs on every cut
    b"plain words without a header block\r\nsecond line\r\n",
    b"Content-Type: text/plain\r\nMIME-Version: 1.0\r\n\r\nown MIME-Version\r\n",
    b"\r\n",
], ids=["crlf", "lf", "cr-everywhere", "no-header", "own-mime-version", "empty"])
def test_same_message_as_decrypt(people, read_size, body):
    # Wrapped by hand: what another client may put inside, not only what encrypt() writes.
    bob = people["bob"]
    message = mime.pkcs7_mime([FROM], cms_encrypt(body, [bob[1]]), "enveloped-data")
    _same(message, [bob])


def test_large_message_round_trip(people, read_size):
    bob = people["bob"]
    body = b"Content-Type: application/octet-stream\r\n\r\n" + b"\r\n".join([os.urandom(30).hex().encode()] * 10_000) + b"\r\n"
    message = encrypt(FROM + b"MIME-Version: 1.0\r\n" + body, [bob[1], people["eve"][1]])
    assert _same(message, [people["eve"], bob]).endswith(body[-1000:])


def test_other_layouts_take_the_general_path(people, read_size, tmp_path):
    # Key agreement (EC), AuthEnvelopedData, BER from openssl -stream, bare DER: all as decrypt reads them.
    bob, ec = people["bob"], people["ec"]
    inner = FROM + b"Content-Type: text/plain\r\n\r\nhi\r\n"
    _same(encrypt(inner, [ec[1]]), [ec])
    _same(encrypt(inner, [bob[1]], profile="modern"), [bob])
    from cryptography.hazmat.primitives import serialization

    (tmp_path / "bob.pem").write_bytes(bob[1].public_bytes(serialization.Encoding.PEM))
    ber = subprocess.run(["openssl", "cms", "-encrypt", "-stream", "-aes-256-cbc", str(tmp_path / "bob.pem")],
                         input=inner, capture_output=True, check=True).stdout
    _same(ber, [bob])
    der = subprocess.run(["openssl", "cms", "-encrypt", "-outform", "DER", "-aes-256-cbc",
                          str(tmp_path / "bob.pem")], input=inner, capture_output=True, check=True).stdout
    _same(der, [bob])


def _errors(message: bytes, keys):
    with pytest.raises(Exception) as whole:
        decrypt(message, keys)
    with pytest.raises(Exception) as streamed:
        decrypt_stream(io.BytesIO(message), keys)  # raised before any piece exists
    with pytest.raises(type(streamed.value)):
        decrypt_stream(Pipe(message), keys)
    return whole.value, streamed.value


def test_same_errors_as_decrypt(people, read_size):
    bob, eve = people["bob"], people["eve"]
    message = encrypt(FROM + b"Content-Type: text/plain\r\n\r\n" + b"words " * 3000, [bob[1]])
    cases = {
        "not for me": (message, [eve]),
        "truncated": (message[:-300], [bob]),
        "bad base64 inside": (message[:800] + b"*" + message[801:], [bob]),
        "data after the end": (message[:-2] + b"QUJD\r\n", [bob]),
        "signed, not encrypted": (sign(FROM + b"Content-Type: text/plain\r\n\r\nhi\r\n", bob[0], bob[1],
                                       opaque=True), [bob]),
        "plain": (FROM + b"\r\nhello\r\n", [bob]),
    }
    for name, (data, keys) in cases.items():
        whole, streamed = _errors(data, keys)
        assert isinstance(streamed, type(whole)) or isinstance(whole, type(streamed)), name
        assert isinstance(streamed, (MalformedMessage, DecryptionError)), name
        if isinstance(whole, NotForMe):
            assert type(streamed) is NotForMe and str(streamed) == str(whole), name


def test_a_wrong_key_fails_before_any_piece(people):
    # The CBC padding is checked from the last two blocks before the first piece is made.
    bob, eve = people["bob"], people["eve"]
    refused = 0
    for _ in range(4):
        message = encrypt(FROM + b"Content-Type: text/plain\r\n\r\n" + b"secret " * 50_000, [bob[1]])
        try:
            _, pieces = decrypt_stream(io.BytesIO(message), [(eve[0], bob[1])])
        except NotForMe:
            refused += 1
        else:  # the stand-in key passed the padding check (1 in 256): garbage, never the secret
            assert b"secret secret" not in b"".join(pieces)
    assert refused


def test_a_pipe_spools_its_ciphertext_or_keeps_it_when_the_disk_fails(people, monkeypatch):
    bob = people["bob"]
    message = encrypt(FROM + b"Content-Type: text/plain\r\n\r\n" + b"words\r\n" * 300_000, [bob[1]])
    expected = decrypt(message, [bob]).message
    assert _stream(message, [bob], Pipe) == expected  # through an unlinked temporary file

    class FullDisk(io.RawIOBase):  # takes 100 KB, then the disk is full
        def __init__(self, *args, **kwargs):
            self.data, self.pos = bytearray(), 0

        def writable(self):
            return True

        def write(self, b):
            if len(self.data) >= 100_000:
                raise OSError(28, "No space left on device")
            self.data += bytes(b[:7000])  # short writes too
            return min(len(b), 7000)

        def seek(self, pos, whence=0):
            self.pos = pos
            return pos

        def read(self, n=-1):
            out = bytes(self.data[self.pos:self.pos + n])
            self.pos += len(out)
            return out

    monkeypatch.setattr(_enveloped.tempfile, "TemporaryFile", FullDisk)
    assert _stream(message, [bob], Pipe) == expected

    def no_temp(*args, **kwargs):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(_enveloped.tempfile, "TemporaryFile", no_temp)
    assert _stream(message, [bob], Pipe) == expected
