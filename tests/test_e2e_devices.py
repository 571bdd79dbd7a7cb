"""End to end through the command line only, as a user would: two devices, one mailbox, real Dovecot and Postfix.

import an old and a new key -> automatic backup -> a second device restores
-> it decrypts mail (sent through SMTP, fetched over IMAP) encrypted to the
old and to the new certificate -> it signs with the vault's key -> export
imports into OpenSSL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from autosmime.mailbox.imap import ImapMailbox
from autosmime.mailbox.smtp import send
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key

pytestmark = pytest.mark.mailserver


def cli(home: Path, *args, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), *map(str, args)],
                          input=stdin, capture_output=True, timeout=120)


def ok(r: subprocess.CompletedProcess) -> bytes:
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


@pytest.fixture
def world(mailstack, mail_user, tmp_path):
    email, password = mail_user
    ca_key, ca = make_ca("e2e CA", new_key("rsa"), not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
                         days=365 * 20)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "imap-pw").write_text(password + "\n")
    p12s = {}
    for name, start in (("old", dt.datetime(2021, 1, 1, tzinfo=dt.UTC)), ("new", None)):
        key = new_key("rsa")
        cert = make_mailbox_cert(email, key.public_key(), ca_key, ca, not_before=start,
                                 days=365 if start else 365)
        (tmp_path / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        p12s[name] = tmp_path / f"{name}.p12"
        p12s[name].write_bytes(pkcs12.serialize_key_and_certificates(
            name.encode(), key, cert, [ca], serialization.BestAvailableEncryption(b"p12-pw")))
    (tmp_path / "p12-pw").write_text("p12-pw\n")
    return email, password, tmp_path, p12s


def account_add(home: Path, mailstack, email: str, tmp: Path) -> None:
    ok(cli(home, "account", "add", "--email", email, "--imap", f"127.0.0.1:{mailstack.imap_port}",
           "--smtp", f"127.0.0.1:{mailstack.smtp_port}", "--password-file", tmp / "imap-pw",
           "--security", "starttls", "--ca-file", mailstack.ca_file))


def test_two_devices_one_mailbox(mailstack, world):
    email, password, tmp, p12s = world
    laptop, phone = tmp / "laptop", tmp / "phone"

    # Device 1: account, import an old and a new key; each import backs up by itself.
    account_add(laptop, mailstack, email, tmp)
    r = cli(laptop, "import", p12s["old"], "--password-file", tmp / "p12-pw", "--recovery-code-out", tmp / "code")
    ok(r)
    assert b"key backup 1 stored" in r.stderr, r.stderr
    code = (tmp / "code").read_text().strip()
    assert code and code.encode() not in r.stderr + r.stdout
    ok(cli(laptop, "import", p12s["new"], "--password-file", tmp / "p12-pw"))
    keys = json.loads(ok(cli(laptop, "keys", "--json")))
    assert sorted(k["status"] for k in keys["keys"]) == ["active", "expired"]
    assert not keys["backup"].get("backup_pending")

    # Mail encrypted to the old and to the new certificate travels through SMTP into the INBOX.
    account = mailstack.account(email)
    for name in ("old", "new"):
        body = (f"From: {email}\r\nTo: {email}\r\nSubject: to the {name} key\r\n"
                f"Message-ID: <{name}@e2e.test>\r\n\r\nsecret for the {name} key\r\n").encode()
        enc = ok(cli(tmp / "nobody", "encrypt", "--to", tmp / f"{name}.pem", stdin=body))
        send(account, password, enc, email, [email])

    # Device 2: only the account and the recovery code.
    account_add(phone, mailstack, email, tmp)
    ok(cli(phone, "restore", "--recovery-code-file", tmp / "code"))
    status = json.loads(ok(cli(phone, "status", "--json")))
    assert status["keys"] == {"active": 1, "expired": 1} and status["recovery_code_stored"] is True
    assert status["account"]["email"] == email and status["signing"]["fingerprint"]
    assert code.encode() not in ok(cli(phone, "status"))
    assert {k["fingerprint"] for k in json.loads(ok(cli(phone, "keys", "--json")))["keys"]} == \
        {k["fingerprint"] for k in keys["keys"]}

    with ImapMailbox.connect(account, password) as box:
        deadline = time.monotonic() + 20
        while True:
            uids = box.search_header("INBOX", "Subject", "to the")
            if len(uids) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        fetched = box.fetch("INBOX", uids)
    assert len(fetched) == 2
    for raw in fetched.values():
        plain = ok(cli(phone, "decrypt", stdin=raw))  # the vault's keys, old and new
        assert b"secret for the" in plain

    # The phone signs with the vault's active key; the signature verifies to the CA.
    msg = f"From: {email}\r\nTo: x@example.test\r\nSubject: hi\r\n\r\nsigned on the phone\r\n".encode()
    signed = ok(cli(phone, "sign", stdin=msg))
    assert ok(cli(phone, "verify", "--trust", tmp / "ca.pem", stdin=signed)).endswith(b"signed on the phone\r\n")

    # Encrypting on the phone adds the phone's own certificate: the Sent copy stays readable.
    enc = ok(cli(phone, "encrypt", "--to", tmp / "ca.pem", stdin=msg))  # any cert as "the other side"
    assert b"signed on the phone" in ok(cli(phone, "decrypt", stdin=enc))
    # Signed and encrypted in one pass with the vault's keys, and read back through both layers.
    enc = ok(cli(phone, "encrypt", "--sign", "--to", tmp / "ca.pem", stdin=msg))
    assert ok(cli(phone, "read", "--trust", tmp / "ca.pem", stdin=enc)).endswith(b"signed on the phone\r\n")

    # Everything exports as one PKCS#12 that OpenSSL reads with every key.
    (tmp / "export-pw").write_text("export-pw\n")
    ok(cli(phone, "export", "--out", tmp / "export", "--password-file", tmp / "export-pw"))
    p12 = next((tmp / "export").glob("*.p12"))
    info = subprocess.run(["openssl", "pkcs12", "-in", p12, "-info", "-nodes", "-passin", "pass:export-pw"],
                          capture_output=True, timeout=60)
    assert info.returncode == 0, info.stderr
    assert info.stdout.count(b"-----BEGIN PRIVATE KEY-----") == 2
    assert oct(os.stat(p12).st_mode & 0o777) == "0o600"
