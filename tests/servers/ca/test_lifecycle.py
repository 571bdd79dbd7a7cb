"""After issuance: revocation (owner's kid or the certificate key's jwk), the CRL, ARI, keyChange, accounts."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import josepy as jose
from acme import jws as acme_jws
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from autosmime.servers.ca.service import ari_cert_id
from tests.servers.ca.conftest import CA, Pending, start_order
from tests.servers.ca.support import ACMETestClient, b64url, make_csr


def _issued(ca: CA) -> tuple[Pending, x509.Certificate, ec.EllipticCurvePrivateKey]:
    p = start_order(ca)
    p.reply(ca)
    p.post_challenge()
    key = ec.generate_private_key(ec.SECP256R1())
    r = p.finalize(make_csr(key, p.address))
    assert r.status_code == 200, r.text
    cert = x509.load_pem_x509_certificates(p.client.post(r.json()["certificate"]).content)[0]
    return p, cert, key


def _crl(ca: CA) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(httpx.get(ca.server.url + "/crl/issuing.crl").content)


def _der(cert: x509.Certificate) -> str:
    return b64url(cert.public_bytes(serialization.Encoding.DER))


def test_revoke_by_owner_reissues_crl(ca: CA) -> None:
    p, cert, _ = _issued(ca)
    n0 = _crl(ca).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    r = p.client.post(p.client.directory["revokeCert"], {"certificate": _der(cert), "reason": 1})
    assert r.status_code == 200, r.text
    crl = _crl(ca)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == n0 + 1
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    again = p.client.post(p.client.directory["revokeCert"], {"certificate": _der(cert)})
    assert again.status_code == 400 and again.json()["type"].endswith("alreadyRevoked")


def test_revoke_with_the_certificate_key(ca: CA) -> None:
    _, cert, key = _issued(ca)
    stranger = ACMETestClient(ca.directory_url, key=key)       # no account: signs with the cert key's jwk
    r = stranger.post(stranger.directory["revokeCert"], {"certificate": _der(cert)}, use_jwk=True)
    assert r.status_code == 200, r.text
    assert _crl(ca).get_revoked_certificate_by_serial_number(cert.serial_number) is not None


def test_revoke_refused_for_others(ca: CA) -> None:
    _, cert, _ = _issued(ca)
    other = ca.client()
    r = other.post(other.directory["revokeCert"], {"certificate": _der(cert)})
    assert r.status_code == 403 and r.json()["type"].endswith("unauthorized")
    random_key = ACMETestClient(ca.directory_url)
    r = random_key.post(random_key.directory["revokeCert"], {"certificate": _der(cert)}, use_jwk=True)
    assert r.status_code == 403
    assert _crl(ca).get_revoked_certificate_by_serial_number(cert.serial_number) is None


def test_revoke_bad_reason(ca: CA) -> None:
    p, cert, _ = _issued(ca)
    for reason in (6, 2, 8, 42):   # certificateHold, cACompromise, removeFromCRL, nonsense
        r = p.client.post(p.client.directory["revokeCert"], {"certificate": _der(cert), "reason": reason})
        assert r.status_code == 400 and r.json()["type"].endswith("badRevocationReason")


def test_renewal_info(ca: CA) -> None:
    p, cert, _ = _issued(ca)
    cert_id = ari_cert_id(cert)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert cert_id.split(".")[0] == b64url(aki)
    url = f"{p.client.directory['renewalInfo']}/{cert_id}"
    r = httpx.get(url)
    assert r.status_code == 200 and "Retry-After" in r.headers
    window = r.json()["suggestedWindow"]
    start = dt.datetime.fromisoformat(window["start"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(window["end"].replace("Z", "+00:00"))
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert cert.not_valid_before_utc + life / 2 < start < end < cert.not_valid_after_utc
    p.client.post(p.client.directory["revokeCert"], {"certificate": _der(cert)})
    end_after = httpx.get(url).json()["suggestedWindow"]["end"]
    assert dt.datetime.fromisoformat(end_after.replace("Z", "+00:00")) <= dt.datetime.now(dt.UTC) + \
        dt.timedelta(minutes=1)
    assert httpx.get(f"{p.client.directory['renewalInfo']}/AAAA.AAAA").status_code == 404


def test_key_change(ca: CA) -> None:
    c = ca.client()
    new_key = ec.generate_private_key(ec.SECP256R1())
    new_jwk = jose.JWKEC(key=new_key)
    url = c.directory["keyChange"]
    inner = acme_jws.JWS.sign(json.dumps({"account": c.kid, "oldKey": c.jwk.public_key().to_partial_json()})
                              .encode(), key=new_jwk, alg=jose.ES256, nonce=None, url=url)
    r = c.post(url, json.loads(inner.json_dumps()))
    assert r.status_code == 200, r.text
    # the old key no longer works, the new one does, with the same account URL
    r = c.new_order("x@example.test")
    assert r.status_code == 400 and r.json()["type"].endswith("malformed")
    c2 = ACMETestClient(ca.directory_url, key=new_key)
    assert c2.register() == c.kid


def test_account_lookup_and_deactivation(ca: CA) -> None:
    c = ca.client()
    r = c.post(c.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert r.status_code == 200 and r.headers["Location"] == c.kid
    unknown = ACMETestClient(ca.directory_url)
    r = unknown.post(unknown.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert r.status_code == 400 and r.json()["type"].endswith("accountDoesNotExist")
    r = c.post(c.kid, {"status": "deactivated"})
    assert r.status_code == 200 and r.json()["status"] == "deactivated"
    r = c.new_order("y@example.test")
    assert r.status_code == 403 and r.json()["type"].endswith("unauthorized")


def test_order_with_two_addresses_needs_both(ca: CA) -> None:
    c = ca.client()
    a1, a2 = "pair-a@example.test", "pair-b@example.test"
    r = c.new_order(a1, a2)
    order = r.json()
    assert len(order["authorizations"]) == 2
    pendings = []
    from tests.servers.ca.support import challenge_fields

    for url in order["authorizations"]:
        authz = c.authz(url)
        raw = ca.sink.find(authz["identifier"]["value"])
        assert raw is not None
        t1, mid, frm = challenge_fields(raw)
        pendings.append(Pending(c, authz["identifier"]["value"], r.headers["Location"], order, url,
                                authz["challenges"][0], t1, mid, frm))
    pendings[0].reply(ca)
    pendings[0].post_challenge()
    assert pendings[0].order_status() == "pending"
    key = ec.generate_private_key(ec.SECP256R1())
    assert pendings[0].finalize(make_csr(key, a1, a2)).status_code == 403
    pendings[1].reply(ca)
    pendings[1].post_challenge()
    assert pendings[0].order_status() == "ready"
    assert pendings[0].finalize(make_csr(key, a1)).status_code == 400     # must name both
    fin = pendings[0].finalize(make_csr(key, a1, a2))
    assert fin.status_code == 200, fin.text
    cert = x509.load_pem_x509_certificates(c.post(fin.json()["certificate"]).content)[0]
    assert sorted(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                  .get_values_for_type(x509.RFC822Name)) == [a1, a2]


def test_ca_certificates_served(ca: CA) -> None:
    der = httpx.get(ca.server.url + "/ca/issuing.der").content
    assert x509.load_der_x509_certificate(der) == ca.server.authority.issuing_cert
    pem = httpx.get(ca.server.url + "/ca/root.pem").content
    assert x509.load_pem_x509_certificate(pem) == ca.server.authority.root_cert


def test_renewal_order_replaces(ca: CA) -> None:
    p, cert, _ = _issued(ca)
    cert_id = ari_cert_id(cert)
    order = {"identifiers": [{"type": "email", "value": p.address}], "replaces": cert_id}
    r = p.client.post(p.client.directory["newOrder"], order)
    assert r.status_code == 201 and r.json()["replaces"] == cert_id, r.text
    again = p.client.post(p.client.directory["newOrder"], order)          # the first renewal is still pending
    assert again.status_code == 409 and again.json()["type"].endswith("alreadyReplaced")
    other = ca.client()
    r = other.post(other.directory["newOrder"], order)                      # not the other account's certificate
    assert r.status_code == 400 and r.json()["type"].endswith("malformed")
    r = p.client.post(p.client.directory["newOrder"], order | {"replaces": "AAAA.AAAA"})
    assert r.status_code == 400
