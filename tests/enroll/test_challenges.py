"""RFC 8823 token handling, the challenge mail's checks, DKIM, and the response mail."""

from __future__ import annotations

import base64
import email
import secrets
from pathlib import Path

import dkim
import josepy as jose
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from autosmime.enroll.challenges import (
    BEGIN,
    END,
    check_dkim,
    join_token,
    parse_challenge_mail,
    readings_agree,
    response_digest,
    response_mail,
    zone_dnsfunc,
)
from autosmime.errors import ChallengeMailInvalid

# The published acme4j-smime test vector (acme4j-smime/src/test/resources/key.pem and
# EmailReply00ChallengeTest), as measured in shared/research/certificate-automation.md §3.
ACME4J_KEY = b"""-----BEGIN RSA PRIVATE KEY-----
MIIBOgIBAAJBANu2drKTZw3HX3fi0l4yAG5RV/nwl4poPOR+03xHvtQSedLX1CSg
DC6ChkDJ4fqcNMX8LGCSgspj1d0b8gKQDu0CAwEAAQJAYlXkAkDe2tfk7q9iIC6Y
6scVbRQ1fwjwWAQ7e2BRFHDsLNdTvFacwGAhHci83DVIwq6kl7MudUNhXGYi2yvt
MQIhAOnwrcQvFc/g/RkFmWjcKFfzsZGYO2tP2vW4CqDhoFGzAiEA8G5Vw/Yl25vs
QrF8RqouarLghHRG+qN4BpVYQwxZjN8CIQDKRVBpdXC9mcIc1WuMb/bt/QYGZgLS
SWx/0s5VxmAQ4wIgIDT3gi+X9KoXZPu3hRPI8fwSPUwCMhLxwhgBYcHmwQsCIDX5
IpHdsed3vjY69bjID8LgkIK7BUDGeIkQTMLxKtGb
-----END RSA PRIVATE KEY-----
"""
PART1 = "LgYemJLy3F1LDkiJrdIGbEzyFJyOyf6vBdyZ1TG3sME="
PART2 = "DGyRejmCefe7v4NfDGDKfA"
STRING_DIGEST = "AjXW0h9_4YMP6Sv-9tKQNUrapI0us7ayBn0nCGOkUsk"   # acme4j's expected value
BYTES_DIGEST = "xyC6Z01DHFuV0pZgacdI2xN9nIKkPSARDv1gLbxY8Xk"


@pytest.fixture(scope="module")
def acme4j_jwk() -> jose.JWK:
    key = serialization.load_pem_private_key(ACME4J_KEY, None, unsafe_skip_rsa_key_validation=True)
    return jose.JWKRSA(key=key)


def test_acme4j_vector_string_reading(acme4j_jwk: jose.JWK) -> None:
    assert response_digest(PART1, PART2, acme4j_jwk, "string") == STRING_DIGEST


def test_acme4j_vector_bytes_reading(acme4j_jwk: jose.JWK) -> None:
    assert response_digest(PART1, PART2, acme4j_jwk, "bytes") == BYTES_DIGEST


def test_folded_part1_whitespace_is_ignored(acme4j_jwk: jose.JWK) -> None:
    folded = "LgYemJLy3F1LDki JrdIGbEzyFJyOyf  6vBdyZ1TG3sME="
    assert response_digest(folded, PART2, acme4j_jwk, "string") == STRING_DIGEST


@pytest.mark.parametrize("size,agree", [(16, False), (18, True), (24, True), (32, False), (33, True)])
def test_readings_agree_exactly_for_whole_3_byte_groups(size: int, agree: bool) -> None:
    part1 = base64.urlsafe_b64encode(secrets.token_bytes(size)).rstrip(b"=").decode()
    part2 = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    assert readings_agree(part1) is agree
    assert (join_token(part1, part2, "string") == join_token(part1, part2, "bytes")) is agree


def test_padded_part1_never_counts_as_aligned() -> None:
    assert not readings_agree(PART1)


# --- the challenge mail ------------------------------------------------------------------

CA_FROM = "acme-generator@example.org"
ME = "alexey@example.com"


def challenge_raw(**override: str | None) -> bytes:
    headers = {
        "Auto-Submitted": "auto-generated; type=acme",
        "Date": "Sat, 5 Dec 2020 10:08:55 +0100",
        "Message-ID": "<A2299BB.FF7788@example.org>",
        "From": CA_FROM,
        "To": f"Alexey <{ME}>",
        "Reply-To": "acme-validator@example.org",
        # RFC 2047, folded inside the token, as in acme4j's test mail.
        "Subject": "=?UTF-8?Q?ACME:_LgYemJLy3F1LDki=20JrdIGbEzyFJyOyf=20=206vBdyZ1TG3sME=3D?=",
        "Content-Type": "text/plain",
        "MIME-Version": "1.0",
    }
    for name, value in override.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\nThis is an automatically generated ACME challenge.\r\n").encode()


def test_parses_the_rfc_example_with_an_encoded_folded_subject() -> None:
    mail = parse_challenge_mail(challenge_raw(), expected_from=CA_FROM, address=ME)
    assert mail.token_part1 == PART1
    assert mail.message_id == "<A2299BB.FF7788@example.org>"
    assert mail.reply_address == "acme-validator@example.org"


def test_without_reply_to_the_reply_goes_to_from() -> None:
    mail = parse_challenge_mail(challenge_raw(Reply_To=None), expected_from=CA_FROM, address=ME)
    assert mail.reply_address == CA_FROM


@pytest.mark.parametrize("override,why", [
    ({"From": "mallory@example.org"}, "not the CA"),
    ({"From": "Acme-Generator@example.org"}, "not the CA"),        # local parts are exact
    ({"To": "someone@example.com"}, "not addressed"),
    ({"Auto_Submitted": None}, "Auto-Submitted"),
    ({"Auto_Submitted": "no"}, "Auto-Submitted"),
    ({"Auto_Submitted": "auto-replied"}, "Auto-Submitted"),
    ({"Subject": f"Re: ACME: {PART1}"}, "Subject"),
    ({"Subject": "Hello"}, "Subject"),
    ({"Subject": "ACME: c2hvcnQ"}, "128 bits"),
    ({"Subject": "ACME: not*base64url*at*all*xxxxxxxxxxxx"}, "base64url"),
    ({"Message_ID": None}, "Message-ID"),
])
def test_rejects_mail_that_is_not_the_challenge(override: dict, why: str) -> None:
    with pytest.raises(ChallengeMailInvalid, match=why):
        parse_challenge_mail(challenge_raw(**override), expected_from=CA_FROM, address=ME)


def test_the_from_domain_compares_case_insensitively() -> None:
    mail = parse_challenge_mail(challenge_raw(From="acme-generator@EXAMPLE.org"), expected_from=CA_FROM,
                                address=ME)
    assert mail.sender == "acme-generator@EXAMPLE.org"


# --- DKIM ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dkim_zone(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    """An RSA DKIM key for example.org and a zone file publishing it (split into 255-byte strings)."""
    key = rsa.generate_private_key(65537, 2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"
    chunks = " ".join(f'"{record[i:i + 250]}"' for i in range(0, len(record), 250))
    zone = tmp_path_factory.mktemp("zone") / "example.zone"
    zone.write_text(
        "$TTL 300\n"
        "example.org. IN SOA ns.example.org. hostmaster.example.org. 1 3600 600 86400 300\n"
        "example.org. IN NS ns.example.org.\n"
        f"sel._domainkey.example.org. IN TXT {chunks}\n"
    )
    return pem, zone


SIGNED = [b"from", b"to", b"subject", b"date", b"message-id", b"auto-submitted", b"reply-to",
          b"content-type", b"mime-version"]


def _sign(raw: bytes, pem: bytes, *, domain: bytes = b"example.org", headers: list[bytes] = SIGNED,
          length: bool = False) -> bytes:
    return dkim.sign(raw, b"sel", domain, pem, include_headers=headers, length=length) + raw


def test_dkim_pass(dkim_zone: tuple[bytes, Path]) -> None:
    pem, zone = dkim_zone
    check_dkim(_sign(challenge_raw(), pem), "example.org", zone_dnsfunc(zone))


def test_dkim_unsigned_is_refused(dkim_zone: tuple[bytes, Path]) -> None:
    with pytest.raises(ChallengeMailInvalid, match="not DKIM-signed"):
        check_dkim(challenge_raw(), "example.org", zone_dnsfunc(dkim_zone[1]))


def test_dkim_tampered_subject_is_refused(dkim_zone: tuple[bytes, Path]) -> None:
    pem, zone = dkim_zone
    signed = _sign(challenge_raw(), pem).replace(b"LgYemJLy3F1LDki", b"LgYemJLy3F1LDkj")
    with pytest.raises(ChallengeMailInvalid, match="does not verify"):
        check_dkim(signed, "example.org", zone_dnsfunc(zone))


def test_dkim_other_domain_is_refused(dkim_zone: tuple[bytes, Path]) -> None:
    pem, zone = dkim_zone
    with pytest.raises(ChallengeMailInvalid, match="signed by other.example"):
        check_dkim(_sign(challenge_raw(), pem, domain=b"other.example"), "example.org", zone_dnsfunc(zone))


def test_dkim_must_cover_the_rfc_8823_headers(dkim_zone: tuple[bytes, Path]) -> None:
    pem, zone = dkim_zone
    with pytest.raises(ChallengeMailInvalid, match="auto-submitted"):
        check_dkim(_sign(challenge_raw(), pem, headers=[h for h in SIGNED if h != b"auto-submitted"]),
                   "example.org", zone_dnsfunc(zone))


def test_dkim_length_tag_is_refused(dkim_zone: tuple[bytes, Path]) -> None:
    pem, zone = dkim_zone
    with pytest.raises(ChallengeMailInvalid, match="l="):
        check_dkim(_sign(challenge_raw(), pem, length=True), "example.org", zone_dnsfunc(zone))


def test_dkim_unknown_selector_is_a_failure(tmp_path: Path, dkim_zone: tuple[bytes, Path]) -> None:
    empty = tmp_path / "empty.zone"
    empty.write_text("example.org. 300 IN SOA ns.example.org. h.example.org. 1 1 1 1 1\n")
    with pytest.raises(ChallengeMailInvalid, match="DKIM"):
        check_dkim(_sign(challenge_raw(), dkim_zone[0]), "example.org", zone_dnsfunc(empty))


# --- the response mail -----------------------------------------------------------------


def test_response_mail_shape() -> None:
    mail = parse_challenge_mail(challenge_raw(), expected_from=CA_FROM, address=ME)
    raw, msgid = response_mail(mail, ME, STRING_DIGEST)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw)
    assert msg["To"] == "acme-validator@example.org"
    assert msg["From"] == ME
    assert msg["In-Reply-To"] == msg["References"] == "<A2299BB.FF7788@example.org>"
    assert msg["Subject"] == f"Re: ACME: {PART1}"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"] == msgid and msgid.endswith("@example.com>")
    body = msg.get_payload().splitlines()
    assert body == [BEGIN, STRING_DIGEST, END]


def test_long_digests_wrap_at_72_columns() -> None:
    mail = parse_challenge_mail(challenge_raw(), expected_from=CA_FROM, address=ME)
    raw, _ = response_mail(mail, ME, "A" * 100)
    lines = email.message_from_bytes(raw).get_payload().splitlines()
    assert lines[1:3] == ["A" * 72, "A" * 28]


def test_ec_account_keys_work() -> None:
    jwk = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    assert len(response_digest("A" * 32, PART2, jwk, "string")) == 43
