"""A small test PKI written to disk: one CA, users with RSA and EC keys, an expired and a foreign signer."""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key


@dataclass
class User:
    email: str
    key: object
    cert: object
    key_path: Path
    cert_path: Path

    @property
    def pair(self):
        return (self.key, self.cert)


@dataclass
class Pki:
    dir: Path
    ca_cert: object
    ca_path: Path
    other_ca_path: Path
    users: dict

    def __getitem__(self, name: str) -> User:
        return self.users[name]


def _write_user(d: Path, name: str, email: str, key, cert) -> User:
    kp, cp = d / f"{name}.key", d / f"{name}.pem"
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return User(email, key, cert, kp, cp)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    # The root predates the signers so that old mail can be validated "as of" a past time.
    root_start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    ca_key, ca_cert = make_ca("autosmime Test Root", new_key("rsa"), not_before=root_start, days=365 * 30)
    other_key, other_cert = make_ca("Some Other Root", new_key("ec"))
    (d / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (d / "other-ca.pem").write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
    users = {}
    for name, kind in (("alice", "rsa"), ("bob", "ec"), ("carol", "rsa"), ("dave", "ec384")):
        key = new_key(kind)
        email = f"{name}@example.test"
        users[name] = _write_user(d, name, email, key, make_mailbox_cert(email, key.public_key(), ca_key, ca_cert))
    # Alice's previous (retired) key: old mail was encrypted to it.
    old = new_key("rsa")
    users["alice_old"] = _write_user(d, "alice_old", "alice@example.test", old,
                                     make_mailbox_cert("alice@example.test", old.public_key(), ca_key, ca_cert))
    past = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
    ek = new_key("rsa")
    users["expired"] = _write_user(d, "expired", "expired@example.test", ek,
                                   make_mailbox_cert("expired@example.test", ek.public_key(), ca_key, ca_cert,
                                                     not_before=past, days=30))
    mk = new_key("rsa")
    users["mallory"] = _write_user(d, "mallory", "alice@example.test", mk,
                                   make_mailbox_cert("alice@example.test", mk.public_key(), other_key, other_cert))
    return Pki(d, ca_cert, d / "ca.pem", d / "other-ca.pem", users)


# Signed now, dated now: a Date more than an hour from the signing time is a time-mismatch (Thunderbird's rule).
_NOW = email.utils.format_datetime(dt.datetime.now(dt.UTC).replace(microsecond=0))
MESSAGE = (b"From: Alice <alice@example.test>\r\n"
           b"To: Bob <bob@example.test>\r\n"
           b"Cc: carol@example.test\r\n"
           b"Subject: quarterly numbers\r\n"
           b"Date: " + _NOW.encode() + b"\r\n"
           b"Message-ID: <1@example.test>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=us-ascii\r\n"
           b"\r\n"
           b"Hello Bob,\r\nthe numbers are attached.\r\n")


@pytest.fixture(scope="session")
def message() -> bytes:
    return MESSAGE
