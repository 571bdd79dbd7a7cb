"""Fixtures for the CA tests: a CA directory, a mail provider with DKIM keys in a zone file, a mail sink,
and a running CA server (uvicorn + aiosmtpd inbound) on SQLite or PostgreSQL."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autosmime.servers.ca.authority import Authority
from autosmime.servers.ca.server import CAServer
from autosmime.servers.ca.settings import Settings
from tests.servers.ca.support import (
    ACMETestClient,
    MailProvider,
    MailSink,
    challenge_fields,
    compose_reply,
    send_smtp,
)

_counter = itertools.count()


class Clock:
    """A settable clock for the CA (expiry tests move it; nothing sleeps)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(scope="session")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ca") / "ca"
    Authority.init(d, name="Test Mail CA", domain="ca.test")
    return d


@pytest.fixture(scope="session")
def provider() -> MailProvider:
    return MailProvider()


@pytest.fixture(scope="session")
def zone_file(tmp_path_factory: pytest.TempPathFactory, provider: MailProvider) -> Path:
    p = tmp_path_factory.mktemp("zone") / "mail.zone"
    p.write_text(provider.zone)
    return p


@pytest.fixture(scope="session")
def sink() -> Iterator[MailSink]:
    s = MailSink().start()
    yield s
    s.stop()


@dataclass
class CA:
    server: CAServer
    sink: MailSink
    provider: MailProvider
    clock: Clock

    @property
    def directory_url(self) -> str:
        return self.server.directory_url

    def client(self, **kw: Any) -> ACMETestClient:
        c = ACMETestClient(self.directory_url, **kw)
        c.register()
        return c

    def certificates_issued(self) -> int:
        return self.server.store.count_certificates()


def start_ca(ca_dir: Path, db_url: str, sink: MailSink, provider: MailProvider, zone_file: Path,
             **settings: Any) -> CA:
    clock = Clock()
    server = CAServer(ca_dir, db_url, listen=("127.0.0.1", 0), smtp=("127.0.0.1", sink.port),
                      inbound_smtp=("127.0.0.1", 0), dns_zones=[zone_file],
                      settings=Settings(clock=clock, **settings)).start()
    return CA(server, sink, provider, clock)


@pytest.fixture(params=["sqlite"])
def ca(request: pytest.FixtureRequest, ca_dir: Path, tmp_path: Path, sink: MailSink, provider: MailProvider,
       zone_file: Path) -> Iterator[CA]:
    if request.param == "postgresql":
        cluster = request.getfixturevalue("postgres_cluster")
        db = cluster.url(f"ca_{next(_counter)}_{int(time.time())}")
    else:
        db = f"sqlite:///{tmp_path / 'ca.db'}"
    env = start_ca(ca_dir, db, sink, provider, zone_file)
    yield env
    env.server.stop()


def fresh_address() -> str:
    return f"user{next(_counter)}-{int(time.time() * 1000) % 10**8}@example.test"


@dataclass
class Pending:
    """An order whose challenge mail has been delivered to the sink."""

    client: ACMETestClient
    address: str
    order_url: str
    order: dict[str, Any]
    authz_url: str
    challenge: dict[str, Any]
    token1: str
    message_id: str
    ca_from: str

    def reply(self, ca: CA, *, digest: str | list[str] | None = None, sender: str | None = None,
              sign: bool = True, sign_kw: dict[str, Any] | None = None, extra_body: str = "") -> None:
        raw = compose_reply(sender=sender or self.address, to=self.ca_from, token1=self.token1,
                            in_reply_to=self.message_id,
                            digest=digest if digest is not None else self.client.digest(self.token1,
                                                                                         self.challenge["token"]),
                            extra_body=extra_body)
        if sign:
            raw = ca.provider.sign(raw, **(sign_kw or {}))
        assert ca.server.inbound_smtp_port is not None
        send_smtp(ca.server.inbound_smtp_port, sender or self.address, self.ca_from, raw)

    def post_challenge(self) -> dict[str, Any]:
        r = self.client.post(self.challenge["url"], {})
        assert r.status_code == 200, r.text
        return r.json()

    def order_status(self) -> str:
        return str(self.client.post(self.order_url).json()["status"])

    def finalize(self, csr_der: bytes) -> Any:
        from tests.servers.ca.support import b64url

        return self.client.post(self.order["finalize"], {"csr": b64url(csr_der)})


def start_order(ca: CA, client: ACMETestClient | None = None, address: str | None = None) -> Pending:
    client = client or ca.client()
    address = address or fresh_address()
    r = client.new_order(address)
    assert r.status_code == 201, r.text
    order = r.json()
    authz_url = order["authorizations"][0]
    authz = client.authz(authz_url)
    chall = authz["challenges"][0]
    raw = ca.sink.find(address)
    assert raw is not None, "no challenge mail delivered"
    token1, message_id, ca_from = challenge_fields(raw)
    return Pending(client, address, r.headers["Location"], order, authz_url, chall, token1, message_id, ca_from)
