"""Property-based: malformed input never raises anything but autosmime's typed errors."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autosmime.errors import AutosmimeError
from autosmime.smime import decrypt, mime, read, sign, verify

_settings = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@_settings
@given(st.binary(max_size=4000))
def test_parse_and_entity_never_crash(data):
    try:
        mime.Message.parse(data).entity()
    except AutosmimeError:
        pass


@pytest.fixture(scope="module")
def samples(pki, message):
    from autosmime.smime import encrypt

    MESSAGE = message
    a = pki["alice"]
    return [sign(MESSAGE, a.key, a.cert), sign(MESSAGE, a.key, a.cert, opaque=True),
            encrypt(MESSAGE, [a.cert])]


@_settings
@given(data=st.data())
def test_mutated_smime_messages_raise_only_typed_errors(pki, samples, data):
    raw = bytearray(data.draw(st.sampled_from(samples)))
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[pos: pos + data.draw(st.integers(1, 64))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
    for op in (lambda m: verify(m, [pki.ca_cert]), lambda m: decrypt(m, [pki["alice"].pair]),
               lambda m: read(m, keys=[pki["alice"].pair], trust_roots=[pki.ca_cert])):
        try:
            op(bytes(raw))
        except AutosmimeError:
            pass
