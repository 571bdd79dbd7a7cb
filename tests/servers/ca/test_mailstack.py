"""The mail legs through the real loopback stack: the challenge mail goes through Postfix (or the relay) into
Dovecot and is read over IMAP; replies reach the CA through its SMTP listener or its polled IMAP mailbox."""

from __future__ import annotations

import email
import email.policy
import imaplib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from autosmime.devstack.mailserver import MailStack
from autosmime.servers.ca.dns import ZoneResolver, dkim_dnsfunc
from autosmime.servers.ca.inbound import IMAPPoller
from autosmime.servers.ca.reply import check_dkim
from autosmime.servers.ca.server import CAServer
from tests.servers.ca.support import (
    ACMETestClient,
    MailProvider,
    b64url,
    challenge_fields,
    compose_reply,
    make_csr,
    send_smtp,
)

pytestmark = pytest.mark.mailserver


def _inbox_messages(stack: MailStack, user: str, password: str) -> list[bytes]:
    with imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=10) as imap:
        imap.login(user, password)
        imap.select("INBOX")
        _, data = imap.search(None, "ALL")
        out = []
        for num in data[0].split():
            _, msg = imap.fetch(num, "(RFC822)")
            out.append(msg[0][1])  # type: ignore[index]
        return out


def _wait_for_challenge(stack: MailStack, user: str, password: str, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for raw in _inbox_messages(stack, user, password):
            if b"ACME: " in raw:
                return raw
        time.sleep(0.2)
    raise AssertionError(f"no challenge mail in {user}'s INBOX after {timeout:.0f} s")


@pytest.fixture
def stack_ca(ca_dir: Path, zone_file: Path, tmp_path: Path, mailstack: MailStack) -> Iterator[CAServer]:
    server = CAServer(ca_dir, f"sqlite:///{tmp_path / 'ca.db'}", listen=("127.0.0.1", 0),
                      smtp=("127.0.0.1", mailstack._ports.relay), inbound_smtp=("127.0.0.1", 0),
                      dns_zones=[zone_file]).start()
    yield server
    server.stop()


def _finish(client: ACMETestClient, chall_url: str, order: dict, address: str) -> x509.Certificate:
    assert client.post(chall_url, {}).json()["status"] == "valid"
    fin = client.post(order["finalize"], {"csr": b64url(make_csr(ec.generate_private_key(ec.SECP256R1()),
                                                                  address))})
    assert fin.status_code == 200, fin.text
    return x509.load_pem_x509_certificates(client.post(fin.json()["certificate"]).content)[0]


def test_challenge_through_dovecot_reply_to_listener(stack_ca: CAServer, mailstack: MailStack,
                                                     mail_user: tuple[str, str], provider: MailProvider) -> None:
    address, password = mail_user
    client = ACMETestClient(stack_ca.directory_url)
    client.register()
    r = client.new_order(address)
    order = r.json()
    authz = client.authz(order["authorizations"][0])
    raw = _wait_for_challenge(mailstack, address, password)
    # what arrived in the mailbox still carries a DKIM signature that verifies for the CA's domain
    resolver = ZoneResolver.from_files([stack_ca.authority.directory / "dns.zone"])
    assert check_dkim(raw, stack_ca.authority.domain, dkim_dnsfunc(resolver))[0] == stack_ca.authority.domain
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(msg["Auto-Submitted"]).startswith("auto-generated")
    token1, message_id, ca_from = challenge_fields(raw)
    chall = authz["challenges"][0]
    reply = provider.sign(compose_reply(sender=address, to=ca_from, token1=token1, in_reply_to=message_id,
                                        digest=client.digest(token1, chall["token"])))
    send_smtp(stack_ca.inbound_smtp_port, address, ca_from, reply)  # type: ignore[arg-type]
    cert = _finish(client, chall["url"], order, address)
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name) == [address]


def test_replies_from_a_polled_imap_mailbox(ca_dir: Path, zone_file: Path, tmp_path: Path, mailstack: MailStack,
                                            provider: MailProvider) -> None:
    ca_box, ca_password = mailstack.fresh_user()          # the CA's own mailbox
    address, password = mailstack.fresh_user()
    context = ssl.create_default_context(cafile=mailstack.ca_file)
    context.check_hostname = False                        # the stack's certificate names its own host
    poller = IMAPPoller(lambda raw: None, "127.0.0.1", mailstack.imap_port, ca_box, ca_password, use_ssl=False,
                        interval=3600, ssl_context=context)
    server = CAServer(ca_dir, f"sqlite:///{tmp_path / 'ca.db'}", listen=("127.0.0.1", 0),
                      smtp=("127.0.0.1", mailstack._ports.relay), inbound_imap=poller,
                      dns_zones=[zone_file]).start()
    try:
        client = ACMETestClient(server.directory_url)
        client.register()
        order = client.new_order(address).json()
        chall = client.authz(order["authorizations"][0])["challenges"][0]
        token1, message_id, _ = challenge_fields(_wait_for_challenge(mailstack, address, password))
        reply = provider.sign(compose_reply(sender=address, to=ca_box, token1=token1, in_reply_to=message_id,
                                            digest=client.digest(token1, chall["token"])))
        send_smtp(mailstack._ports.relay, address, ca_box, reply)
        deadline = time.monotonic() + 30
        handled = 0
        while not handled and time.monotonic() < deadline:
            handled = poller.poll_once()
            time.sleep(0.2)
        assert handled == 1
        assert _inbox_messages(mailstack, ca_box, ca_password) == []      # consumed
        _finish(client, chall["url"], order, address)
    finally:
        server.stop()
