"""Rate limits (429 + Retry-After, counted in the database) and revocation status from the CA's CRL."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from autosmime.servers.directory.app import make_app
from autosmime.servers.directory.service import Directory, Limits
from tests.servers.directory import support
from tests.servers.directory.test_publish_lookup import confirm, publish, publish_fast


def test_lookup_limits_per_client_and_per_address(pki, db_url):
    limits = Limits(lookups_per_client=(5, 60), lookups_per_address=(3, 60), writes_per_client=(100, 3600))
    directory = Directory(support.config(pki, db_url, limits=limits))
    try:
        with TestClient(make_app(directory)) as api:
            codes = [api.get("/v1/certs/by-email/a@example.test").status_code for _ in range(4)]
            assert codes == [404, 404, 404, 429]
            r = api.get("/v1/certs/by-email/a@example.test")
            assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= 60
            # Another address is still allowed for this client, until the client's own limit.
            assert api.get("/v1/certs/by-email/b@example.test").status_code == 429   # 6th request of this client
        # A second app process on the same database sees the same counters.
        with TestClient(make_app(Directory(support.config(pki, db_url, limits=limits)))) as other:
            assert other.get("/v1/certs/by-email/c@example.test").status_code == 429
    finally:
        directory.engine.dispose()


def test_client_limit_before_address_limit(pki, db_url):
    limits = Limits(lookups_per_client=(100, 60), lookups_per_address=(2, 60))
    directory = Directory(support.config(pki, db_url, limits=limits))
    try:
        with TestClient(make_app(directory)) as api:
            assert [api.get("/v1/certs/by-email/x@example.test").status_code for _ in range(3)] == [404, 404, 429]
            assert api.get("/v1/certs/by-email/y@example.test").status_code == 404
    finally:
        directory.engine.dispose()


@pytest.fixture
def crl_server():
    server = support.CrlServer()
    yield server
    server.close()


def test_revoked_certificate_is_refused_and_status_is_swept(api, pki, directory, crl_server):
    crl_server.crl = support.make_crl(pki.fast_key, pki.fast_ca, [])
    good = pki.user("rita@example.test", issuer="fast", crl_url=crl_server.url)
    revoked = pki.user("sam@example.test", issuer="fast", crl_url=crl_server.url)
    crl_server.crl = support.make_crl(pki.fast_key, pki.fast_ca, [revoked.cert.serial_number])
    r = api.post("/v1/publish", json={"chain_pem": revoked.chain_pem})
    assert r.status_code == 422 and r.json()["error"] == "revoked"

    challenge = publish(api, good)
    assert confirm(api, challenge, support.proof_for(good, challenge)).status_code == 200
    entry = api.get("/v1/certs/by-email/rita@example.test").json()["certificates"][0]
    assert entry["status"]["state"] == "good"
    # The CA revokes it; the next sweep says so and logs it.
    crl_server.crl = support.make_crl(pki.fast_key, pki.fast_ca, [good.cert.serial_number])
    assert directory.sweep()["revoked"] == 1
    entry = api.get("/v1/certs/by-email/rita@example.test").json()["certificates"][0]
    assert entry["status"]["state"] == "revoked"
    assert api.get("/v1/log/checkpoint").text.split("\n")[1] == "2"   # publish, then revoked


def test_crl_signed_by_someone_else_means_unknown(api, pki, directory, crl_server):
    crl_server.crl = support.make_crl(pki.evil_key, pki.evil_ca, [])
    user = pki.user("tina@example.test", issuer="fast", crl_url=crl_server.url)
    crl_server.crl = support.make_crl(pki.evil_key, pki.evil_ca, [user.cert.serial_number])
    _, done = publish_fast(api, pki, "tina2@example.test", crl_url=crl_server.url)  # unknown, accepted
    challenge = publish(api, user)
    assert confirm(api, challenge, support.proof_for(user, challenge)).status_code == 200
    entry = api.get("/v1/certs/by-email/tina@example.test").json()["certificates"][0]
    assert entry["status"]["state"] == "unknown"
