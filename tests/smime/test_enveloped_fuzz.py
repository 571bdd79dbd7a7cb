"""decrypt() on hostile bytes: only autosmime.errors may come out, and BER parses like DER."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autosmime.errors import AutosmimeError
from autosmime.pki.keys import load_certificates, load_p12, load_private_key
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.smime._cms.enveloped import DecryptResult, decrypt, encrypt

MESSAGE = b"Content-Type: text/plain\r\n\r\nfuzz me\r\n"
VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"  # shared/ lies beside the checkout


def _header(data: bytes, i: int) -> tuple[int, int, int, int]:
    """(tag byte, header length, content length, constructed) of the definite-length TLV at i."""
    tag = data[i]
    first = data[i + 1]
    if first < 0x80:
        return tag, 2, first, tag & 0x20
    n = first & 0x7F
    return tag, 2 + n, int.from_bytes(data[i + 2:i + 2 + n], "big"), tag & 0x20


def to_ber(der: bytes, depth: int = 0, max_depth: int = 99) -> bytes:
    """Indefinite lengths down to ``max_depth`` and the encrypted content split into chunks.

    Streaming encoders (NSS, gpgsm, ``openssl cms -stream``) write the outer
    levels this way; everywhere is harsher than any of them.
    """
    out = bytearray()
    i = 0
    while i < len(der):
        tag, hlen, clen, constructed = _header(der, i)
        body = der[i + hlen:i + hlen + clen]
        if constructed and depth < max_depth:
            out += bytes([tag, 0x80]) + to_ber(body, depth + 1, max_depth) + b"\0\0"
        elif tag == 0x80 and clen > 16 and depth < max_depth:
            chunks = b"".join(b"\x04" + bytes([16 if len(c) == 16 else len(c)]) + c
                              for c in (body[j:j + 16] for j in range(0, len(body), 16)))
            out += b"\xa0\x80" + chunks + b"\0\0"
        else:
            out += der[i:i + hlen + clen]
        i += hlen + clen
    return bytes(out)


@cache
def _material() -> tuple[list, list[bytes]]:
    ca_key, ca = make_ca("Fuzz CA")
    rsa_key, ec_key = new_key("rsa"), new_key("ec")
    rsa_cert = make_mailbox_cert("rsa@example.test", rsa_key.public_key(), ca_key, ca)
    ec_cert = make_mailbox_cert("ec@example.test", ec_key.public_key(), ca_key, ca)
    keys: list = [(rsa_key, rsa_cert), (ec_key, ec_cert), (ec_key, None)]
    seeds = [
        encrypt(MESSAGE, [rsa_cert]),
        encrypt(MESSAGE, [rsa_cert, ec_cert]),
        encrypt(MESSAGE, [ec_cert, rsa_cert], "modern"),
    ]
    seeds.append(to_ber(seeds[0]))
    seeds.append(to_ber(seeds[2]))
    if VECTORS.is_dir():
        nss = VECTORS / "nss-interop-openssl"
        fran = load_p12((nss / "Fran-ec.p12").read_bytes(), b"nss")
        keys.append((fran.key, fran.cert))
        seeds.append((nss / "fran-ec_ossl-aes192-sha384.env").read_bytes())
        certs = VECTORS / "rfc9216/examples-cms/certs-and-keys"
        dana_key = load_private_key((certs / "lamps-dana.decrypt.p8.pem").read_bytes())
        keys.append((dana_key, load_certificates((certs / "lamps-dana.encrypt.crt").read_bytes())[0]))
        for name in ("authEnvelopedForDanaX25519HKDF", "encryptedForBobAndDana", "encryptedKekri"):
            seeds.append((VECTORS / "rfc9216/examples-cms/binary-files" / f"{name}.p7m").read_bytes())
    return keys, seeds


def _only_typed_errors(data: bytes) -> None:
    keys, _ = _material()
    try:
        result = decrypt(data, keys)
    except AutosmimeError:
        return
    assert isinstance(result, DecryptResult) and isinstance(result.content, bytes)


def test_ber_decrypts_like_der():
    keys, seeds = _material()
    for der in seeds[:3]:
        ber = to_ber(der)
        assert ber != der
        assert decrypt(ber, keys).content == MESSAGE


def test_seeds_decrypt():
    keys, seeds = _material()
    assert all(decrypt(seed, keys).content for seed in seeds if b"keyid" not in seed)


@st.composite
def mutated(draw) -> bytes:
    _, seeds = _material()
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "length"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[pos] = draw(st.sampled_from([0x00, 0x80, 0xFF, 0x30, 0x04, 0xA0, 0x81, 0x84]))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        else:  # make a length byte lie
            data[pos] = (data[pos] + draw(st.sampled_from([-1, 1, 2, 0x40]))) % 256
    return bytes(data)


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated())
def test_mutated_messages_raise_only_typed_errors(data):
    _only_typed_errors(data)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_typed_errors(data):
    _only_typed_errors(data)


@FUZZ
@given(st.data())
def test_random_bytes_inside_a_valid_header(data):
    # Get past the ContentInfo/OID checks so the inner parsers see the garbage.
    _, seeds = _material()
    seed = data.draw(st.sampled_from(seeds))
    cut = data.draw(st.integers(15, min(200, len(seed))))
    _only_typed_errors(seed[:cut] + data.draw(st.binary(max_size=300)))


@pytest.mark.slow
@settings(max_examples=5_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_messages_long_campaign(data):
    _only_typed_errors(data)


# --- the BER normaliser on its own ------------------------------------------------------


def test_definite_lengths_flattens_and_keeps_what_asn1crypto_needs():
    from autosmime.smime._cms.enveloped_ber import definite_lengths

    # SEQUENCE(indef){ OCTET STRING(constructed, definite){ "ab", "c" }, [0](indef){ "de" } }
    ber = bytes.fromhex("3080" "2407" "04026162" "040163" "a080" "04026465" "0000" "0000")
    assert definite_lengths(ber) == bytes.fromhex("300d" "0403616263" "a080" "04026465" "0000")
    for bad in ["3080", "3080020105", "0280", "3005020105", "300302010500", "2403020105", "1f"]:
        with pytest.raises(ValueError):
            definite_lengths(bytes.fromhex(bad))
    with pytest.raises(ValueError, match="nested too deeply"):
        definite_lengths(b"\x30\x80" * 100 + b"\x00\x00" * 100)


def test_deep_nesting_is_malformed_not_a_crash():
    keys, _ = _material()
    with pytest.raises(AutosmimeError):
        decrypt(b"\x30\x80" * 5000 + b"\x00\x00" * 5000, keys)
