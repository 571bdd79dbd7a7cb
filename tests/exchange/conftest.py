"""A real directory (uvicorn on loopback, SQLite) for the client tests, and a way to tamper with its answers."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from autosmime.exchange.client import DirectoryClient
from autosmime.exchange.proofs import answer_challenge
from autosmime.servers.directory.run import RunningDirectory, start
from tests.servers.directory import support


@pytest.fixture(scope="module")
def pki() -> support.Pki:
    return support.Pki()


def start_directory(pki: support.Pki, tmp_path, name: str = "dir", **kw) -> RunningDirectory:
    cfg = support.config(pki, f"sqlite:///{tmp_path}/{name}.db", **kw)
    cfg.log_key = tmp_path / "log.key"   # shared by every directory of a test: a fork is signed by the same key
    return start(cfg)


@pytest.fixture
def directory(pki, tmp_path):
    running = start_directory(pki, tmp_path)
    yield running
    running.stop()


def publish_fast(url: str, pki: support.Pki, address: str, **kw) -> support.User:
    user = pki.user(address, issuer="fast", **kw)
    with DirectoryClient(url) as client:
        challenge = client.publish(user.chain_pem)
        client.confirm("publish", challenge["request"], proof=answer_challenge(challenge, user.key, user.cert))
    return user


class Tamper(httpx.BaseTransport):
    """Forwards to the real server; ``rewrite(path, json)`` may change a JSON answer on the way back."""

    def __init__(self, target: str, rewrite: Callable[[str, dict], dict] | None = None) -> None:
        self.target = target
        self.rewrite = rewrite
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = httpx.URL(self.target).join(request.url.raw_path.decode())
        forwarded = httpx.Request(request.method, url, headers=request.headers, content=request.content)
        response = self._inner.handle_request(forwarded)
        response.read()
        if self.rewrite is None or "json" not in response.headers.get("content-type", ""):
            return response
        data = self.rewrite(request.url.path, json.loads(response.content))
        return httpx.Response(response.status_code, json=data)
