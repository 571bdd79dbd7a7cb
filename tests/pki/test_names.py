"""Name constraints (RFC 5280 §4.2.1.10) as autosmime.pki.names applies them."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from autosmime.pki.names import dns_matches, rfc822_matches, violation


@pytest.mark.parametrize("address,constraint,expected", [
    ("alice@example.test", "example.test", True),
    ("alice@EXAMPLE.test", "example.test", True),          # host names compare case-insensitively
    ("alice@mail.example.test", "example.test", False),    # a host is only that host
    ("alice@mail.example.test", ".example.test", True),    # ".domain": any host under it
    ("alice@example.test", ".example.test", False),
    ("alice@evilexample.test", ".example.test", False),
    ("alice@example.test", "alice@example.test", True),    # one mailbox
    ("bob@example.test", "alice@example.test", False),
    ("Alice@example.test", "alice@example.test", False),   # the local part is case-sensitive
    ("not-an-address", "example.test", False),
])
def test_rfc822(address, constraint, expected):
    assert rfc822_matches(address, constraint) is expected


@pytest.mark.parametrize("name,constraint,expected", [
    ("example.test", "example.test", True), ("a.example.test", "example.test", True),
    ("badexample.test", "example.test", False), ("example.test", ".example.test", False),
    ("anything.test", "", True),
])
def test_dns(name, constraint, expected):
    assert dns_matches(name, constraint) is expected


def _nc(permitted=None, excluded=None):
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded)


def test_excluded_wins_over_permitted():
    nc = _nc([x509.RFC822Name(".example.test")], [x509.RFC822Name("secret.example.test")])
    assert violation(nc, x509.Name([]), [x509.RFC822Name("a@mail.example.test")]) is None
    assert "excluded" in violation(nc, x509.Name([]), [x509.RFC822Name("a@secret.example.test")])


def test_only_constrained_types_are_checked():
    nc = _nc([x509.RFC822Name("example.test")])
    # a dNSName is not constrained by an rfc822Name-only extension
    assert violation(nc, x509.Name([]), [x509.RFC822Name("a@example.test"), x509.DNSName("evil.test")]) is None


def test_directory_name_and_subject_email():
    org = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Lab")])
    nc = _nc([x509.DirectoryName(org), x509.RFC822Name("example.test")])
    inside = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "example  lab"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "Alice")])
    assert violation(nc, inside, []) is None
    outside = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Other")])
    assert "outside" in violation(nc, outside, [])
    with_mail = x509.Name([*inside.rdns[0], x509.NameAttribute(NameOID.EMAIL_ADDRESS, "eve@evil.test")])
    assert "eve@evil.test" in violation(nc, with_mail, [])


def test_ip_addresses():
    nc = _nc([x509.IPAddress(ipaddress.ip_network("192.0.2.0/24"))])
    assert violation(nc, x509.Name([]), [x509.IPAddress(ipaddress.ip_address("192.0.2.7"))]) is None
    assert violation(nc, x509.Name([]), [x509.IPAddress(ipaddress.ip_address("198.51.100.1"))])


def test_a_name_of_an_uncheckable_constrained_type_is_refused():
    nc = _nc([x509.UniformResourceIdentifier("example.test")])
    assert "cannot be checked" in violation(nc, x509.Name([]), [x509.UniformResourceIdentifier("https://x.test/")])
    assert violation(nc, x509.Name([]), [x509.RFC822Name("a@evil.test")]) is None
