"""The ACME client's HTTPS: certificates verified, a private CA's TLS root via ``trust`` (--ca-trust)."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from autosmime.devstack._tls import make_server_tls
from autosmime.enroll.client import AcmeClient, new_account_key
from autosmime.errors import CAError, CAUnreachable


class _Directory(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/acme/directory":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"broken")
            return
        base = f"https://127.0.0.1:{self.server.server_address[1]}/acme"
        body = json.dumps({"newNonce": f"{base}/new-nonce", "newAccount": f"{base}/new-account",
                           "newOrder": f"{base}/new-order", "revokeCert": f"{base}/revoke-cert",
                           "keyChange": f"{base}/key-change"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_ca(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca_pem, cert_pem, key_pem = make_server_tls()
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Directory)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", tmp_path / "ca.pem"
    finally:
        server.shutdown()
        server.server_close()


def test_an_untrusted_tls_certificate_is_refused(https_ca: tuple[str, Path]) -> None:
    url, _trust = https_ca
    client = AcmeClient(f"{url}/acme/directory", new_account_key())
    with pytest.raises(CAUnreachable, match="TLS certificate not trusted.*--ca-trust"):
        client.acme


def test_ca_trust_makes_a_private_ca_verifiable(https_ca: tuple[str, Path]) -> None:
    url, trust = https_ca
    client = AcmeClient(f"{url}/acme/directory", new_account_key(), trust=str(trust))
    assert client.acme.directory["newOrder"] == f"{url}/acme/new-order"


def test_a_broken_answer_is_a_ca_error(https_ca: tuple[str, Path]) -> None:
    url, trust = https_ca
    client = AcmeClient(f"{url}/nowhere", new_account_key(), trust=str(trust))
    with pytest.raises(CAError, match="reading the directory"):
        client.acme
