"""Every refusal of the Proof list, each on its own, and each ends with no certificate issued.

A refused reply never validates the challenge, so the order never becomes
ready and finalize answers orderNotReady; a refused CSR gets badCSR. Either
way ``certificates_issued()`` stays 0 (every test has a fresh database).
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.servers.ca.conftest import CA, Pending, start_order
from tests.servers.ca.support import MailProvider, b64url, compose_reply, make_csr, send_smtp


def _good_csr(p: Pending) -> bytes:
    return make_csr(ec.generate_private_key(ec.SECP256R1()), p.address)


def assert_not_issued(ca: CA, p: Pending, reply_result: str | None = None) -> None:
    """The challenge is not valid, finalize is refused, no certificate exists; the audit says why."""
    p.post_challenge()
    chall = p.client.post(p.challenge["url"]).json()
    assert chall["status"] != "valid"
    r = p.finalize(_good_csr(p))
    assert r.status_code == 403 and r.json()["type"] == "urn:ietf:params:acme:error:orderNotReady", r.text
    assert ca.certificates_issued() == 0
    if reply_result is not None:
        results = [row["result"] for row in ca.server.store.audit_rows() if row["event"] == "reply"]
        assert reply_result in results, results


def test_wrong_from(ca: CA) -> None:
    p = start_order(ca)
    other = "mallory@example.test"   # signed by the right provider, but not the validated mailbox
    p.reply(ca, sender=other)
    assert_not_issued(ca, p, "from")


def test_no_dkim(ca: CA) -> None:
    p = start_order(ca)
    p.reply(ca, sign=False)
    assert_not_issued(ca, p, "no_dkim")


def test_dkim_domain_mismatch(ca: CA, tmp_path) -> None:
    # A valid signature (its key is in the zone) by a domain other than the From domain.
    p = start_order(ca)
    evil = MailProvider(domain="evil.test")
    ca.server.service.resolver.add_text(evil.zone)  # type: ignore[attr-defined]
    raw = compose_reply(sender=p.address, to=p.ca_from, token1=p.token1, in_reply_to=p.message_id,
                        digest=p.client.digest(p.token1, p.challenge["token"]))
    raw = evil.sign(raw)
    send_smtp(ca.server.inbound_smtp_port, p.address, p.ca_from, raw)  # type: ignore[arg-type]
    assert_not_issued(ca, p, "dkim_domain")


def test_dkim_signature_broken(ca: CA) -> None:
    p = start_order(ca)
    raw = compose_reply(sender=p.address, to=p.ca_from, token1=p.token1, in_reply_to=p.message_id,
                        digest=p.client.digest(p.token1, p.challenge["token"]))
    # signed by the right domain, then the body changed in transit: the body hash no longer matches
    tampered = ca.provider.sign(raw).replace(b"\r\n\r\n", b"\r\n\r\nPS: tampered\r\n", 1)
    send_smtp(ca.server.inbound_smtp_port, p.address, p.ca_from, tampered)  # type: ignore[arg-type]
    assert_not_issued(ca, p, "dkim_invalid")


def test_dkim_length_limit_refused(ca: CA) -> None:
    p = start_order(ca)
    p.reply(ca, sign_kw={"length": True})
    assert_not_issued(ca, p, "dkim_length_limit")


@pytest.mark.parametrize("ca", ["sqlite", "postgresql"], indirect=True)
def test_wrong_digest(ca: CA) -> None:
    p = start_order(ca)
    p.reply(ca, digest=b64url(b"\x00" * 32))
    # an aligned sender with the wrong answer fails the authorization for good
    assert p.client.post(p.authz_url).json()["status"] == "invalid"
    assert p.order_status() == "invalid"
    assert_not_issued(ca, p, "incorrect_response")


def test_digest_of_other_account_key(ca: CA) -> None:
    p = start_order(ca)
    other = ca.client()
    p.reply(ca, digest=other.digest(p.token1, p.challenge["token"]))
    assert_not_issued(ca, p, "incorrect_response")


@pytest.mark.parametrize("ca", ["sqlite", "postgresql"], indirect=True)
def test_replayed_token(ca: CA) -> None:
    # Order 1 completes; its reply mail is replayed while order 2 (same account, same address) waits.
    p1 = start_order(ca)
    reply1 = compose_reply(sender=p1.address, to=p1.ca_from, token1=p1.token1, in_reply_to=p1.message_id,
                           digest=p1.client.digest(p1.token1, p1.challenge["token"]))
    reply1 = ca.provider.sign(reply1)
    send_smtp(ca.server.inbound_smtp_port, p1.address, p1.ca_from, reply1)  # type: ignore[arg-type]
    p1.post_challenge()
    assert p1.finalize(_good_csr(p1)).status_code == 200
    assert ca.certificates_issued() == 1

    p2 = start_order(ca, client=p1.client, address=p1.address)
    assert p2.token1 != p1.token1 and p2.challenge["token"] != p1.challenge["token"]
    send_smtp(ca.server.inbound_smtp_port, p1.address, p1.ca_from, reply1)  # type: ignore[arg-type]
    # the old digest under the new token-part1's subject does not match either
    p2.reply(ca, digest=p1.client.digest(p1.token1, p1.challenge["token"]))
    p2.post_challenge()
    assert p2.client.post(p2.challenge["url"]).json()["status"] != "valid"
    r = p2.finalize(_good_csr(p2))
    assert r.status_code == 403
    assert ca.certificates_issued() == 1
    results = [row["result"] for row in ca.server.store.audit_rows() if row["event"] == "reply"]
    assert "stale" in results and "incorrect_response" in results


@pytest.mark.parametrize("ca", ["sqlite", "postgresql"], indirect=True)
def test_reply_after_expiry(ca: CA) -> None:
    p = start_order(ca)
    ca.clock.offset = 24 * 3600 + 1          # everything expires within 24 h
    p.client.forget_nonce()                  # (so do nonces: fetch a fresh one)
    p.reply(ca)
    assert p.client.post(p.authz_url).json()["status"] == "expired"
    assert p.order_status() == "invalid"
    assert_not_issued(ca, p, "expired")


def test_client_post_after_expiry(ca: CA) -> None:
    p = start_order(ca)
    p.reply(ca)
    ca.clock.offset = 24 * 3600 + 1
    p.client.forget_nonce()
    assert p.post_challenge()["status"] == "invalid"
    assert_not_issued(ca, p)


@pytest.mark.parametrize("ca", ["sqlite", "postgresql"], indirect=True)
def test_two_response_blocks(ca: CA) -> None:
    p = start_order(ca)
    good = p.client.digest(p.token1, p.challenge["token"])
    p.reply(ca, digest=[good, good])
    assert_not_issued(ca, p, "blocks")


def test_reply_without_response_block(ca: CA) -> None:
    p = start_order(ca)
    p.reply(ca, digest=[])
    assert_not_issued(ca, p, "blocks")


def _ready(ca: CA) -> Pending:
    p = start_order(ca)
    p.reply(ca)
    assert p.post_challenge()["status"] == "valid"
    return p


def _bad_csr(p: Pending, csr: bytes, ca: CA) -> None:
    r = p.finalize(csr)
    assert r.status_code == 400 and r.json()["type"] == "urn:ietf:params:acme:error:badCSR", r.text
    assert ca.certificates_issued() == 0


@pytest.mark.parametrize("ca", ["sqlite", "postgresql"], indirect=True)
def test_csr_with_extra_san(ca: CA) -> None:
    p = _ready(ca)
    _bad_csr(p, make_csr(ec.generate_private_key(ec.SECP256R1()), p.address, "other@example.test"), ca)


def test_csr_with_dns_san(ca: CA) -> None:
    p = _ready(ca)
    _bad_csr(p, make_csr(ec.generate_private_key(ec.SECP256R1()), p.address, dns=("example.test",)), ca)


def test_csr_missing_the_address(ca: CA) -> None:
    p = _ready(ca)
    _bad_csr(p, make_csr(ec.generate_private_key(ec.SECP256R1()), "other@example.test"), ca)


def test_weak_rsa_key(ca: CA) -> None:
    p = _ready(ca)
    _bad_csr(p, make_csr(rsa.generate_private_key(65537, 1024), p.address), ca)


def test_small_rsa_exponent(ca: CA) -> None:
    p = _ready(ca)
    _bad_csr(p, make_csr(rsa.generate_private_key(3, 2048), p.address), ca)


def test_disallowed_curve(ca: CA) -> None:
    p = _ready(ca)
    _bad_csr(p, make_csr(ec.generate_private_key(ec.SECP256K1()), p.address), ca)


def test_account_key_as_certificate_key(ca: CA) -> None:
    p = _ready(ca)
    _bad_csr(p, make_csr(p.client.key, p.address), ca)


@pytest.mark.parametrize("ca", ["sqlite", "postgresql"], indirect=True)
def test_replayed_nonce(ca: CA) -> None:
    p = _ready(ca)
    nonce = p.client.nonce()
    body = p.client.signed_body(p.order["finalize"], {"csr": b64url(_good_csr(p))}, nonce=nonce)
    assert p.client.post(p.order_url, nonce=nonce).status_code == 200     # the nonce is used here first
    r = p.client.post(p.order["finalize"], body=body)                    # a captured request, replayed
    assert r.status_code == 400 and r.json()["type"] == "urn:ietf:params:acme:error:badNonce", r.text
    assert "Replay-Nonce" in r.headers
    assert ca.certificates_issued() == 0
    # the same request again, word for word, after its own use: still refused
    ok = p.client.post(p.order["finalize"], {"csr": b64url(_good_csr(p))})
    assert ok.status_code == 200
    again = p.client.post(p.order["finalize"], body=ok.request.content)
    assert again.status_code == 400 and again.json()["type"].endswith("badNonce")
    assert ca.certificates_issued() == 1


def test_unknown_nonce(ca: CA) -> None:
    p = _ready(ca)
    r = p.client.post(p.order["finalize"], {"csr": b64url(_good_csr(p))}, nonce=b64url(b"made up nonce 16"))
    assert r.status_code == 400 and r.json()["type"].endswith("badNonce")
    assert ca.certificates_issued() == 0


def test_url_header_mismatch(ca: CA) -> None:
    p = _ready(ca)
    body = p.client.signed_body(p.order_url, {"csr": b64url(_good_csr(p))})   # signed for another URL
    r = p.client.post(p.order["finalize"], body=body)
    assert r.status_code == 403 and r.json()["type"].endswith("unauthorized")
    assert ca.certificates_issued() == 0


def test_forged_signature(ca: CA) -> None:
    p = _ready(ca)
    body = p.client.signed_body(p.order["finalize"], {"csr": b64url(_good_csr(p))})
    import json

    obj = json.loads(body)
    sig = bytearray(base64.urlsafe_b64decode(obj["signature"] + "=="))
    sig[5] ^= 1
    obj["signature"] = b64url(bytes(sig))
    r = p.client.post(p.order["finalize"], body=json.dumps(obj).encode())
    assert r.status_code == 400 and r.json()["type"].endswith("malformed")
    assert ca.certificates_issued() == 0


def test_other_account_cannot_finalize(ca: CA) -> None:
    p = _ready(ca)
    other = ca.client()
    r = other.post(p.order["finalize"], {"csr": b64url(_good_csr(p))})
    assert r.status_code == 403 and r.json()["type"].endswith("unauthorized")
    assert ca.certificates_issued() == 0


def test_non_email_identifiers_refused(ca: CA) -> None:
    c = ca.client()
    r = c.new_order("example.test", typ="dns")
    assert r.status_code == 400 and r.json()["type"].endswith("unsupportedIdentifier")
    r = c.new_order("*@example.test")
    assert r.status_code == 400 and r.json()["type"].endswith("rejectedIdentifier")


def test_mail_rate_limit_per_address(ca: CA) -> None:
    c = ca.client()
    address = "limited@example.test"
    for _ in range(ca.server.service.settings.mails_per_address_per_hour):
        start_order(ca, client=c, address=address)
    r = c.new_order(address)
    authz = c.post(r.json()["authorizations"][0])
    assert authz.status_code == 429 and authz.json()["type"].endswith("rateLimited")
    assert "Retry-After" in authz.headers


def test_unsupported_jws_algorithm(ca: CA) -> None:
    import json

    c = ca.client()
    body = json.loads(c.signed_body(c.directory["newOrder"], {"identifiers": []}))
    protected = json.loads(base64.urlsafe_b64decode(body["protected"] + "=="))
    protected["alg"] = "none"
    body["protected"] = b64url(json.dumps(protected).encode())
    r = c.post(c.directory["newOrder"], body=json.dumps(body).encode())
    assert r.status_code == 400 and r.json()["type"].endswith("badSignatureAlgorithm")


def test_rate_limits_per_account(ca_dir, tmp_path, sink, provider, zone_file) -> None:
    from tests.servers.ca.conftest import fresh_address, start_ca

    env = start_ca(ca_dir, f"sqlite:///{tmp_path / 'limits.db'}", sink, provider, zone_file,
                   mails_per_account_per_hour=2, orders_per_account_per_hour=3)
    try:
        c = env.client()
        start_order(env, client=c)
        start_order(env, client=c)
        r = c.new_order(fresh_address())                        # the third order is allowed ...
        assert r.status_code == 201
        authz = c.post(r.json()["authorizations"][0])            # ... but its mail is over the account's limit
        assert authz.status_code == 429 and "per account" in authz.json()["detail"]
        r = c.new_order(fresh_address())                         # and a fourth order is over the order limit
        assert r.status_code == 429 and r.json()["type"].endswith("rateLimited")
        other = env.client()                                     # another account is not affected
        start_order(env, client=other)
        env.clock.offset = 3601                                   # an hour later the account may mail again
        c.forget_nonce()
        assert c.new_order(fresh_address()).status_code == 201
    finally:
        env.server.stop()
