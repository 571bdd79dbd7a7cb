"""Helpers for the command-line tests: a real ``python -m autosmime`` process, certificates made on the spot."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from autosmime.mailbox.account import Account, save_account
from autosmime.pki.pkcs12 import build_pfx
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key

NOW = dt.datetime.now(dt.UTC)
_CA = make_ca("CLI Test CA", new_key("ec"))


def run(home: Path | None, *args: str, input: str | None = None, env: dict[str, str] | None = None,
        home_first: bool = True) -> subprocess.CompletedProcess:
    """``autosmime [--home HOME] ARGS``, nobody at a terminal."""
    head = ["--home", str(home)] if home is not None and home_first else []
    return subprocess.run([sys.executable, "-m", "autosmime", *head, *args], capture_output=True, text=True,
                          timeout=120, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


def ca_issued(email: str, *, days_ago: int = 1, days: int = 365):
    """(key, cert, chain) of a certificate from the test CA."""
    key = new_key("ec")
    cert = make_mailbox_cert(email, key.public_key(), _CA[0], _CA[1], not_before=NOW - dt.timedelta(days=days_ago),
                             days=days)
    return key, cert, (_CA[1],)


def self_signed(email: str, *, days: int = 365):
    """(key, cert, chain) of a self-signed mailbox certificate, newer than anything ca_issued made."""
    key = new_key("ec")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, email),
                      x509.NameAttribute(NameOID.EMAIL_ADDRESS, email)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(minutes=1))
            .not_valid_after(NOW + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert, ()


def p12(path: Path, *items) -> Path:
    path.write_bytes(build_pfx(list(items), b"pw", iterations=1000))
    (path.parent / "pw").write_text("pw\n")
    return path


def offline_account(home: Path, email: str) -> None:
    """An account whose servers refuse connections: backups queue, nothing waits."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "mailpw").write_text("x\n")
    save_account(home, Account(email=email, imap_host="127.0.0.1", imap_port=9, smtp_host="127.0.0.1",
                               smtp_port=9, security="plain", password_file=str(home / "mailpw"), timeout=2))
