"""Every message the engine returns is canonical CRLF, whatever line endings it was given."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.smime import decrypt, encrypt, sign, sign_and_encrypt, verify


def _canonical_by_counts(data: bytes) -> bool:
    return data.count(b"\r\n") == data.count(b"\n") == data.count(b"\r")


@pytest.fixture(scope="module")
def ident():
    ca_key, ca = make_ca("Mark CA")
    key = new_key("rsa")
    return key, make_mailbox_cert("a@example.test", key.public_key(), ca_key, ca), ca


_LINE_ENDS = st.sampled_from(["\r\n", "\n", "\r", "\r\r\n", "\n\r"])
_BODIES = st.lists(st.tuples(st.text(alphabet="abc From:é\t", max_size=12), _LINE_ENDS), max_size=8).map(
    lambda lines: "".join(text + end for text, end in lines).encode())


@given(body=_BODIES, end=st.sampled_from(["\r\n", "\n"]))  # a header block ends at CRLF or LF only
@settings(max_examples=60, deadline=None)
def test_marked_outputs_are_canonical_and_equal_to_the_unmarked_path(ident, body, end):
    key, cert, ca = ident
    message = f"From: a@example.test{end}Subject: s{end}{end}".encode() + body
    signed = sign(message, key, cert)
    sealed = encrypt(signed, [cert])
    opened = decrypt(sealed, [(key, cert)]).message
    inner = verify(opened, [ca]).message
    for out in (signed, sealed, opened, inner):
        assert type(out) is bytes and _canonical_by_counts(out)
    assert decrypt(encrypt(signed, [cert]), [(key, cert)]).message == signed
    assert verify(bytes(opened), [ca]).message == inner
    assert verify(decrypt(sign_and_encrypt(message, key, cert, [cert]), [(key, cert)]).message, [ca]).message == inner


def test_large_outputs_are_canonical_too(ident):
    key, cert, ca = ident
    message = (b"From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
               + (b"y" * 76 + b"\n") * 15_000)
    signed = sign(message, key, cert)
    assert _canonical_by_counts(signed)
    inner = verify(signed, [ca]).message
    assert inner == message.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n") and _canonical_by_counts(inner)
