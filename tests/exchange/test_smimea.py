"""SMIMEA (RFC 8162) from a real DNS answer: a loopback UDP responder built from dnspython's message classes."""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization

from autosmime.exchange.contacts import Contacts
from autosmime.exchange.lookup import find_certificate
from autosmime.exchange.smimea import smimea_certificates, smimea_name


@pytest.fixture
def dns_server():
    records: dict[str, list[str]] = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            q = query.question[0]
            name = q.name.to_text()
            if name in records and dns.rdatatype.to_text(q.rdtype) == "SMIMEA":
                response.answer.append(dns.rrset.from_text_list(name, 300, "IN", "SMIMEA", records[name]))
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield records, sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


def test_smimea_full_certificate_is_found_and_chosen(dns_server, pki, tmp_path):
    records, port = dns_server
    user = pki.user("hugh@example.test")
    der = user.cert.public_bytes(serialization.Encoding.DER).hex()
    records[smimea_name("hugh@example.test") + "."] = [f"3 0 0 {der}", f"3 0 1 {'ab' * 32}"]   # a hash-only one too
    certs = smimea_certificates("hugh@example.test", nameservers=["127.0.0.1"], port=port)
    assert certs == [user.cert]
    assert smimea_certificates("nobody@example.test", nameservers=["127.0.0.1"], port=port) == []

    def lookup(address: str) -> list:
        return smimea_certificates(address, nameservers=["127.0.0.1"], port=port)

    found = find_certificate("hugh@example.test", Contacts(tmp_path), [pki.ca], smimea=True, smimea_lookup=lookup)
    assert found.source == "smimea" and found.cert == user.cert
