"""The token-reading retry against a CA that joins the token *bytes* with a 16-byte token-part1.

Such CAs exist (CASTLE, acmez-based ones: shared/research/certificate-automation.md §3); the
project's own CA avoids the ambiguity with a 24-byte token-part1. Here the real CA server runs
in-process with its token-part1 shortened to 16 bytes and its expected digest computed with the
bytes reading, on a real mail stack: the client's first reply (string reading) is rejected, the
automatic retry with the other reading is accepted, and the reading is reported for remembering.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autosmime.devstack._procs import free_ports
from autosmime.devstack.mailserver import MailStack, dovecot_available
from tests.enroll.conftest import ca_available

CA_DOMAIN = "bytes-ca.example.test"


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _bytes_reading_digest(token1: str, token2: str, thumbprint: str) -> str:
    def dec(t: str) -> bytes:
        return base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))

    return _b64u(hashlib.sha256(f"{_b64u(dec(token1) + dec(token2))}.{thumbprint}".encode()).digest())


@pytest.fixture
def bytes_ca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[MailStack, str, Path]]:
    if not dovecot_available() or not ca_available():
        pytest.skip("needs dovecot and the CA server")
    from autosmime.servers.ca import mail as ca_mail
    from autosmime.servers.ca import service as ca_service
    from autosmime.servers.ca.authority import Authority
    from autosmime.servers.ca.server import CAServer

    monkeypatch.setattr(ca_mail, "new_token1", lambda: _b64u(secrets.token_bytes(16)))
    monkeypatch.setattr(ca_service, "key_authorization_digest", _bytes_reading_digest)
    http, inbound = free_ports(2)
    base = Path(tempfile.mkdtemp(prefix="autosmime-bytes-ca-"))
    os.chmod(base, 0o755)
    stack = MailStack.start(base / "mail", names=["alice"], pool=0, dkim=True, routes={CA_DOMAIN: inbound})
    server = None
    try:
        Authority.init(tmp_path / "ca", name="Bytes CA", domain=CA_DOMAIN)
        zone = tmp_path / "dns.zone"
        zone.write_text("$ORIGIN .\n" + stack.dkim_record() + (tmp_path / "ca" / "dns.zone").read_text())
        server = CAServer(tmp_path / "ca", f"sqlite:///{tmp_path / 'ca.sqlite'}", listen=("127.0.0.1", http),
                          smtp=("127.0.0.1", stack._ports.relay), inbound_smtp=("127.0.0.1", inbound),
                          dns_zones=[zone]).start()
        yield stack, f"http://127.0.0.1:{http}/acme/directory", zone
    finally:
        if server is not None:
            server.stop()
        stack.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_rejected_reading_is_retried_once_with_the_other(bytes_ca: tuple[MailStack, str, Path],
                                                           tmp_path: Path) -> None:
    from autosmime.agent.enrol import Timeouts, client_for, enrol
    from autosmime.enroll.challenges import zone_dnsfunc
    from autosmime.mailbox.imap import ImapMailbox
    from autosmime.mailbox.smtp import send as smtp_send
    from autosmime.vault.store import Vault

    stack, ca_url, zone = bytes_ca
    address, password = stack.user("alice")
    account = stack.account(address)
    vault = Vault.open(tmp_path / "home")
    acme, _record = client_for(vault, ca_url)
    replies: list[bytes] = []
    learned: list[str] = []

    def send(raw: bytes, sender: str, rcpts: list[str]) -> None:
        replies.append(raw)
        smtp_send(account, password, raw, sender, rcpts)

    with ImapMailbox.connect(account, password) as box:
        result = enrol(address=address, acme=acme, box=box, send=send, vault=vault, key_type="p256",
                       reading="string", dnsfunc=zone_dnsfunc(zone), on_reading=learned.append,
                       timeouts=Timeouts(mail=30, early_post_after=10, validation=30))
    assert result.reading == "bytes" and learned == ["bytes"]
    assert len(replies) == 2                               # one rejected reply, one accepted
    assert [e.email for e in vault.entries()] == [address]
    with ImapMailbox.connect(account, password) as box:    # both challenges cleaned up
        assert box.search_header("INBOX", "Subject", "ACME:") == []


def test_the_right_reading_needs_no_retry(bytes_ca: tuple[MailStack, str, Path], tmp_path: Path) -> None:
    from autosmime.agent.enrol import Timeouts, client_for, enrol
    from autosmime.enroll.challenges import zone_dnsfunc
    from autosmime.mailbox.imap import ImapMailbox
    from autosmime.mailbox.smtp import send as smtp_send
    from autosmime.vault.store import Vault

    stack, ca_url, zone = bytes_ca
    address, password = stack.user("alice")
    account = stack.account(address)
    vault = Vault.open(tmp_path / "home")
    acme, _record = client_for(vault, ca_url)
    replies: list[bytes] = []

    def send(raw: bytes, sender: str, rcpts: list[str]) -> None:
        replies.append(raw)
        smtp_send(account, password, raw, sender, rcpts)

    with ImapMailbox.connect(account, password) as box:
        result = enrol(address=address, acme=acme, box=box, send=send, vault=vault, key_type="p256",
                       reading="bytes", dnsfunc=zone_dnsfunc(zone),
                       timeouts=Timeouts(mail=30, early_post_after=10, validation=30))
    assert result.reading == "bytes" and len(replies) == 1
