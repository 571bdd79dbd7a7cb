"""ACME message additions, the client's URL policy, and the renewal decision."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from autosmime.enroll.client import check_ca_url
from autosmime.enroll.messages import EmailReply00, ari_cert_id, email_order
from autosmime.enroll.renewal import renewal_due, renewal_time
from autosmime.errors import UsageError


def test_new_order_carries_an_email_identifier_and_replaces() -> None:
    body = json.loads(email_order("alice@example.test", replaces="aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE").json_dumps())
    assert body == {"identifiers": [{"type": "email", "value": "alice@example.test"}],
                    "replaces": "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"}


@pytest.mark.parametrize("bad", ["", "example.test", "*@example.test"])
def test_new_order_refuses_non_mailboxes(bad: str) -> None:
    with pytest.raises(ValueError):
        email_order(bad)


def test_email_reply_challenge_parses_acme4j_json() -> None:
    # acme4j-smime src/test/resources/json/emailReplyChallenge.json
    challb = messages.ChallengeBody.from_json({
        "type": "email-reply-00", "url": "https://example.com/acme/chall/ABprV_B7yEyA4f", "status": "pending",
        "from": "acme-generator@example.org", "token": "DGyRejmCefe7v4NfDGDKfA"})
    assert isinstance(challb.chall, EmailReply00)
    assert challb.chall.token == "DGyRejmCefe7v4NfDGDKfA"
    assert challb.chall.from_addr == "acme-generator@example.org"
    assert challb.uri == "https://example.com/acme/chall/ABprV_B7yEyA4f"


def test_ari_cert_id_matches_the_rfc_9773_example() -> None:
    # RFC 9773 §4.1: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4, serial 0x0087654321.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = dt.datetime.now(dt.UTC)
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x87654321).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
            .sign(key, hashes.SHA256()))
    assert ari_cert_id(cert) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


@pytest.mark.parametrize("url", ["https://ca.example/dir", "http://127.0.0.1:8080/dir", "http://localhost/d",
                                 "http://[::1]:80/d"])
def test_allowed_ca_urls(url: str) -> None:
    check_ca_url(url)


@pytest.mark.parametrize("url", ["http://ca.example/dir", "http://10.0.0.1/dir", "ftp://ca.example/", "ca.example"])
def test_refused_ca_urls(url: str) -> None:
    with pytest.raises(UsageError):
        check_ca_url(url)


START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_default_renewal_at_two_thirds() -> None:
    end = START + dt.timedelta(days=365)
    assert renewal_time(START, end, None, seed=b"a") == START + (end - START) * (2 / 3)
    assert renewal_due(START, end, None, seed=b"a", now=START + dt.timedelta(days=243))[0] is False
    assert renewal_due(START, end, None, seed=b"a", now=START + dt.timedelta(days=244))[0] is True


def test_short_certificates_renew_at_half() -> None:
    end = START + dt.timedelta(days=6)
    assert renewal_time(START, end, None, seed=b"a") == START + dt.timedelta(days=3)


def test_ari_window_wins_and_is_stable_per_certificate() -> None:
    end = START + dt.timedelta(days=365)
    window = (START + dt.timedelta(days=10), START + dt.timedelta(days=12))
    first = renewal_time(START, end, window, seed=b"cert-1")
    assert window[0] <= first <= window[1]
    assert renewal_time(START, end, window, seed=b"cert-1") == first
    assert renewal_due(START, end, window, seed=b"cert-1", now=window[1])[0] is True
    assert renewal_due(START, end, window, seed=b"cert-1", now=window[0] - dt.timedelta(seconds=1))[0] is False


def test_expired_is_always_due() -> None:
    end = START + dt.timedelta(days=1)
    window = (end + dt.timedelta(days=5), end + dt.timedelta(days=6))
    assert renewal_due(START, end, window, seed=b"x", now=end)[0] is True
