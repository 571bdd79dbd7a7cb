"""`autosmime ca init` / `autosmime ca serve`: the contract's flags, output and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autosmime", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_init_writes_the_ca_and_refuses_a_second_time(tmp_path: Path) -> None:
    d = tmp_path / "ca"
    env = {k: v for k, v in os.environ.items() if k != "AUTOSMIME_CA_PASSPHRASE"}
    r = subprocess.run([sys.executable, "-m", "autosmime", "ca", "init", "--dir", str(d), "--name", "Example Mail CA",
                        "--domain", "example.test"], capture_output=True, text=True, timeout=60,
                       env={**env, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    lines = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert lines["CA_TRUST"] == str(d / "ca.pem") and Path(lines["CA_TRUST"]).exists()
    assert lines["CA_DNS_ZONE"] == str(d / "dns.zone")
    assert lines["CA_PASSPHRASE_FROM"] == str(d / "passphrase")
    assert "_domainkey.example.test." in (d / "dns.zone").read_text()
    again = run("ca", "init", "--dir", str(d))
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and again.stderr.startswith("autosmime: ") and "already" in again.stderr


def test_serve_errors_are_one_line(tmp_path: Path) -> None:
    r = run("ca", "serve", "--dir", str(tmp_path / "none"), "--db", "sqlite://", "--listen", "127.0.0.1:0",
            "--smtp", "127.0.0.1:25")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not a CA directory" in r.stderr
    r = run("ca", "serve", "--dir", str(tmp_path), "--db", "sqlite://", "--listen", "127.0.0.1:0",
            "--smtp", "127.0.0.1:25", "--inbound-smtp", "127.0.0.1:0", "--inbound-imap", "imaps://a@b:993")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    r = run("ca", "serve", "--dir", str(tmp_path), "--db", "sqlite://", "--listen", "nonsense", "--smtp", "x:1")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_serve_prints_its_urls_and_serves(ca_dir: Path, tmp_path: Path, zone_file: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "autosmime", "ca", "serve", "--dir", str(ca_dir),
                             "--db", f"sqlite:///{tmp_path / 'ca.db'}", "--listen", f"127.0.0.1:{port}",
                             "--smtp", "127.0.0.1:25", "--inbound-smtp", "127.0.0.1:0", "--dns-zone", str(zone_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first == f"CA_URL=http://127.0.0.1:{port}/acme/directory"
        assert proc.stdout.readline().strip() == f"CA_TRUST={ca_dir / 'ca.pem'}"
        directory = httpx.get(first.split("=", 1)[1], timeout=30).json()
        assert set(directory) >= {"newNonce", "newAccount", "newOrder", "revokeCert", "keyChange", "renewalInfo"}
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_inbound_imap_url_parsing(monkeypatch) -> None:
    import pytest

    from autosmime.cli.ca import _imap_poller
    from autosmime.errors import UsageError

    monkeypatch.setenv("AUTOSMIME_CA_IMAP_PASSWORD", "pw")
    poller = _imap_poller("imaps://acme%40ca.test@mail.ca.test:10993/Replies", None, None)
    assert (poller.host, poller.port, poller.user, poller.folder, poller.use_ssl) == \
        ("mail.ca.test", 10993, "acme@ca.test", "Replies", True)
    plain = _imap_poller("imap://acme@127.0.0.1", None, None)
    assert (plain.port, plain.folder, plain.use_ssl) == (143, "INBOX", False)
    with pytest.raises(UsageError):
        _imap_poller("http://x@y", None, None)
    monkeypatch.delenv("AUTOSMIME_CA_IMAP_PASSWORD")
    with pytest.raises(UsageError):
        _imap_poller("imaps://a@b", None, None)


def test_oversized_request_refused(ca) -> None:
    r = httpx.post(ca.directory_url.replace("directory", "new-order"), content=b"x" * 70000,
                   headers={"Content-Type": "application/jose+json"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
