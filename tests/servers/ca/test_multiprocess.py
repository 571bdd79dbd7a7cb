"""Two `autosmime ca serve` processes share one PostgreSQL database: one order is driven across both
(order on A, mail sent by B, reply to A's listener, challenge POST on B, finalize on A, download on B), and
a nonce from one process is good exactly once on either."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.servers.ca.support import (
    ACMETestClient,
    MailProvider,
    MailSink,
    b64url,
    challenge_fields,
    compose_reply,
    make_csr,
    send_smtp,
)

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, ca_dir: Path, db: str, sink: MailSink, zone: Path) -> None:
        self.http, self.smtp = _free_port(), _free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autosmime", "ca", "serve", "--dir", str(ca_dir), "--db", db,
             "--listen", f"127.0.0.1:{self.http}", "--smtp", f"127.0.0.1:{sink.port}",
             "--inbound-smtp", f"127.0.0.1:{self.smtp}", "--dns-zone", str(zone)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.base = f"http://127.0.0.1:{self.http}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.base + "/acme/directory").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"ca serve did not start: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.1)

    def on(self, url: str) -> str:
        """The same resource on this process."""
        path = url.split("/", 3)[3]
        return f"{self.base}/{path}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def two_processes(ca_dir: Path, postgres_cluster, sink: MailSink, zone_file: Path) -> Iterator[tuple[Proc, Proc]]:
    db = postgres_cluster.url(f"ca_multi_{os.getpid()}_{int(time.time())}")
    a = Proc(ca_dir, db, sink, zone_file)
    b = Proc(ca_dir, db, sink, zone_file)
    yield a, b
    a.stop()
    b.stop()


def test_one_order_across_two_processes(two_processes: tuple[Proc, Proc], sink: MailSink,
                                        provider: MailProvider) -> None:
    a, b = two_processes
    client = ACMETestClient(a.base + "/acme/directory")
    kid = client.register()
    address = f"multi{os.getpid()}@example.test"
    r = client.new_order(address)                                       # A
    assert r.status_code == 201, r.text
    order = r.json()
    authz = client.authz(b.on(order["authorizations"][0]))               # B sends the mail
    chall = authz["challenges"][0]
    assert chall["url"].startswith(b.base)
    raw = sink.find(address)
    assert raw is not None
    token1, message_id, ca_from = challenge_fields(raw)
    reply = provider.sign(compose_reply(sender=address, to=ca_from, token1=token1, in_reply_to=message_id,
                                        digest=client.digest(token1, chall["token"])))
    send_smtp(a.smtp, address, ca_from, reply)                         # A's listener
    assert client.post(chall["url"], {}).json()["status"] == "valid"   # B
    assert client.post(a.on(r.headers["Location"])).json()["status"] == "ready"
    fin = client.post(a.on(order["finalize"]), {"csr": b64url(make_csr(ec.generate_private_key(ec.SECP256R1()),
                                                                        address))})          # A
    assert fin.status_code == 200, fin.text
    pem = client.post(b.on(fin.json()["certificate"]))                 # B
    assert pem.status_code == 200
    cert = x509.load_pem_x509_certificates(pem.content)[0]
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name) == [address]
    assert sum(1 for m in sink.messages if token1.encode() in m) == 1  # one mail, though two processes
    assert kid.startswith(a.base)


def test_a_nonce_is_good_once_across_processes(two_processes: tuple[Proc, Proc]) -> None:
    a, b = two_processes
    client = ACMETestClient(a.base + "/acme/directory")
    client.register()
    nonce = httpx.head(a.base + "/acme/new-nonce").headers["Replay-Nonce"]
    assert client.post(b.on(client.kid or ""), nonce=nonce).status_code == 200    # issued by A, used on B
    r = client.post(a.on(client.kid or ""), nonce=nonce)
    assert r.status_code == 400 and r.json()["type"].endswith("badNonce")


def test_concurrent_authorization_fetches_send_one_mail(two_processes: tuple[Proc, Proc], sink: MailSink) -> None:
    import threading

    a, b = two_processes
    client = ACMETestClient(a.base + "/acme/directory")
    client.register()
    address = f"race{os.getpid()}@example.test"
    authz_url = client.new_order(address).json()["authorizations"][0]
    targets = [a.on(authz_url), b.on(authz_url)] * 3
    bodies = [client.signed_body(url, None) for url in targets]     # six requests, six fresh nonces
    results: list[int] = []
    barrier = threading.Barrier(len(targets))

    def fetch(url: str, body: bytes) -> None:
        barrier.wait()
        r = httpx.post(url, content=body, headers={"Content-Type": "application/jose+json"}, timeout=30)
        results.append(r.status_code)

    threads = [threading.Thread(target=fetch, args=pair) for pair in zip(targets, bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * len(targets)
    assert sum(1 for m in sink.messages if f"To: {address}".encode() in m) == 1
