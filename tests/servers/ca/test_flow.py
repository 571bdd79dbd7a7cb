"""The whole RFC 8823 flow against a running CA: order, challenge mail over SMTP, DKIM-signed reply over SMTP,
challenge POST (either order), finalize, download; on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from autosmime.servers.ca.dns import ZoneResolver, dkim_dnsfunc
from autosmime.servers.ca.reply import check_dkim
from tests.servers.ca.conftest import CA, start_order
from tests.servers.ca.support import make_csr

pytestmark = pytest.mark.parametrize("ca", ["sqlite", "postgresql"], indirect=True)


def _issue(ca: CA, reply_first: bool) -> x509.Certificate:
    p = start_order(ca)
    if reply_first:
        p.reply(ca)
        assert p.order_status() == "pending"      # the reply alone is not enough
        chall = p.post_challenge()
    else:
        chall = p.post_challenge()
        assert chall["status"] == "processing"
        assert p.client.post(p.challenge["url"], {}).headers["Retry-After"] == "2"
        p.reply(ca)
        chall = p.client.post(p.challenge["url"]).json()
    assert chall["status"] == "valid"
    assert p.order_status() == "ready"
    key = rsa.generate_private_key(65537, 3072)
    r = p.finalize(make_csr(key, p.address))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "valid"
    pem = p.client.post(r.json()["certificate"])
    assert pem.status_code == 200 and pem.headers["content-type"].startswith("application/pem-certificate-chain")
    certs = x509.load_pem_x509_certificates(pem.content)
    assert len(certs) == 2
    leaf = certs[0]
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name) == [p.address]
    assert certs[1].subject == ca.server.authority.issuing_cert.subject
    return leaf


def test_reply_then_post_issues(ca: CA) -> None:
    _issue(ca, reply_first=True)


def test_post_then_reply_issues(ca: CA) -> None:
    _issue(ca, reply_first=False)


def test_challenge_mail_is_rfc8823_and_dkim_signed(ca: CA) -> None:
    p = start_order(ca)
    raw = ca.sink.find(p.address)
    assert raw is not None
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(msg["Auto-Submitted"]) == "auto-generated; type=acme"
    assert str(msg["From"]) == p.challenge["from"] == ca.server.authority.mail_from
    assert str(msg["To"]) == p.address
    assert msg["Message-ID"] and msg["Date"]
    assert p.token1 not in msg.get_content() and p.challenge["token"] not in msg.get_content()
    assert len(p.token1) == 32 and "=" not in p.token1       # 24 bytes: both concatenation readings agree
    resolver = ZoneResolver.from_files([ca.server.authority.directory / "dns.zone"])
    assert check_dkim(raw, "ca.test", dkim_dnsfunc(resolver))[0] == "ca.test"
    # one mail per authorization, however often it is fetched
    p.client.authz(p.authz_url)
    assert sum(1 for m in ca.sink.messages if p.token1.encode() in m) == 1


def test_ec_key_and_audit(ca: CA) -> None:
    p = start_order(ca)
    p.reply(ca)
    p.post_challenge()
    r = p.finalize(make_csr(ec.generate_private_key(ec.SECP256R1()), p.address))
    assert r.status_code == 200, r.text
    rows = [row for row in ca.server.store.audit_rows() if row["identifier"] == p.address]
    accepted = [row for row in rows if row["event"] == "reply"]
    assert accepted and accepted[-1]["result"] == "accepted"
    assert accepted[-1]["detail"]["dkim_domain"] == "example.test"
    assert "RFC 8823" in accepted[-1]["detail"]["method"]
