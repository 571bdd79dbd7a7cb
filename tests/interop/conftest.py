"""Fixtures for the interop matrix: a test PKI on disk, the three peers, the autosmime CLI.

    $ python -m pytest tests/interop -q
    $ AUTOSMIME_INTEROP_README=1 python -m pytest tests/interop -q   # also rewrites README.md

Every matrix test declares its cell with ``cell(direction, peer, algorithm,
gap=...)``. A ``gap`` is a known peer limitation: the test is then
``xfail(raises=PeerRefused, strict=True)``, so an autosmime failure still
fails and a peer that learns the feature turns the run red until the
expectation is updated.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

if str(Path(__file__).parents[2]) not in sys.path:  # for `pytest` run from elsewhere
    sys.path.insert(0, str(Path(__file__).parents[2]))

from autosmime.pki.pkcs12 import build_pfx
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from tests.interop import matrix
from tests.interop.peers import AutosmimeFailed, Gpgsm, Nss, OpenSSL, PeerRefused, User, tool_version

PASSWORD = b"interop-pw"


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    alice: User   # RSA-2048
    bob: User     # EC P-256

    def user(self, kind: str) -> User:
        return {"rsa": self.alice, "ec": self.bob}[kind]


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("interop-pki")
    ca_key, ca_cert = make_ca("autosmime Interop Test CA")
    ca = d / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pwfile = d / "password.txt"
    _write_secret(pwfile, PASSWORD)
    users = {}
    for name, kind in (("alice", "rsa"), ("bob", "ec")):
        email = f"{name}@example.test"
        key = new_key(kind)  # type: ignore[arg-type]
        cert = make_mailbox_cert(email, key.public_key(), ca_key, ca_cert)
        _write_secret(d / f"{name}.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        modern = serialization.BestAvailableEncryption(PASSWORD)
        _write_secret(d / f"{name}.p12",
                      pkcs12.serialize_key_and_certificates(name.encode(), key, cert, [ca_cert], modern))
        # autosmime's own legacy writer, not cryptography's: ~2% of cryptography's 3DES files
        # draw a salt that gpgsm 2.2.40 derives a wrong key for (see _gpgsm_misderives).
        _write_secret(d / f"{name}-legacy.p12",
                      build_pfx([(key, cert, (ca_cert,))], PASSWORD, legacy=True, iterations=20_000,
                                friendly_names=[name]))
        users[name] = User(name=name, email=email, kind=kind, key=d / f"{name}.key",
                           cert=d / f"{name}.pem", p12=d / f"{name}.p12",
                           p12_legacy=d / f"{name}-legacy.p12", password=PASSWORD, password_file=pwfile)
    return Pki(d, ca, users["alice"], users["bob"])


def _require(tool: str) -> None:
    if tool_version(tool) is None:
        message = f"{tool} is not installed (apt: openssl / gpgsm / libnss3-tools)"
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must run every peer")
        pytest.skip(message)


@pytest.fixture(scope="session")
def openssl(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> OpenSSL:
    _require("openssl")
    return OpenSSL(tmp_path_factory.mktemp("openssl"))


@pytest.fixture(scope="session")
def gpgsm(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gpgsm]:
    _require("gpgsm")
    peer = Gpgsm(tmp_path_factory.mktemp("gnupg"))
    try:
        peer.trust(pki.ca)
        yield peer
    finally:
        peer.close()


@pytest.fixture(scope="session")
def nss(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Nss:
    _require("nss")
    peer = Nss(tmp_path_factory.mktemp("nssdb"))
    peer.add_user(pki.alice)
    peer.add_user(pki.bob)
    peer.trust(pki.ca)
    return peer


@pytest.fixture(scope="session")
def autosmime_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # An empty home: no vault, so encrypt adds no sender and nothing is cached between runs.
    return tmp_path_factory.mktemp("autosmime-home")


Autosmime = Callable[..., bytes]


@pytest.fixture(scope="session")
def autosmime(autosmime_home: Path) -> Autosmime:
    """Run the CLI; return stdout, or raise AutosmimeFailed after checking the failure contract."""
    env = {**os.environ, "AUTOSMIME_HOME": str(autosmime_home)}

    def run(*args: str | os.PathLike, stdin: bytes) -> bytes:
        argv = [str(a) for a in args]
        proc = subprocess.run([sys.executable, "-m", "autosmime", *argv], input=stdin,
                              capture_output=True, timeout=120, env=env)
        if proc.returncode == 0:
            return proc.stdout
        stderr = proc.stderr.decode(errors="replace")
        assert proc.stdout == b"", f"autosmime {argv[0]} failed but wrote to stdout"
        assert len(stderr.strip().splitlines()) == 1, f"not one line on stderr: {stderr!r}"
        raise AutosmimeFailed(argv, proc.returncode, stderr)

    return run


@pytest.fixture
def cell(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Declare this test's matrix cell and, when the peer has a known gap, expect its refusal."""

    def declare(direction: str, peer: str, algorithm: str, gap: str | None = None) -> None:
        request.node.user_properties.append(("matrix", (direction, peer, algorithm)))
        if gap:
            request.node.add_marker(pytest.mark.xfail(reason=gap, raises=PeerRefused, strict=True))

    return declare


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    matrix.record(item, outcome.get_result(), call)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if os.environ.get("AUTOSMIME_INTEROP_README"):
        matrix.write_readme(session, Path(__file__).with_name("README.md"))
