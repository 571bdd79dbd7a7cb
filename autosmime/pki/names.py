"""Name constraints (RFC 5280 §4.2.1.10): does a CA's nameConstraints allow a certificate's names?

    >>> from cryptography import x509
    >>> from autosmime.pki.names import rfc822_matches, violation
    >>> rfc822_matches("alice@mail.example.org", ".example.org"), rfc822_matches("alice@example.org", ".example.org")
    (True, False)
    >>> nc = x509.NameConstraints(permitted_subtrees=[x509.RFC822Name("example.org")], excluded_subtrees=None)
    >>> violation(nc, x509.Name([]), [x509.RFC822Name("eve@evil.test")])
    'the address eve@evil.test is outside the permitted names'

Checked types: rfc822Name (also applied to the subject's emailAddress
attributes, as §4.2.1.10 requires), dNSName, iPAddress and directoryName
(applied to the subject DN). A constraint of any other type cannot be checked:
it is refused only when the certificate carries a name of that type, which is
what RFC 5280 §6.1.3 (b)/(c) asks of names it cannot compare.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["certificate_names", "dns_matches", "rfc822_matches", "violation"]

_CHECKED = (x509.RFC822Name, x509.DNSName, x509.IPAddress, x509.DirectoryName)


def rfc822_matches(address: str, constraint: str) -> bool:
    """§4.2.1.10: "a@host" names one mailbox, "host" every mailbox at that host, ".domain" every host under it."""
    local, at, host = address.rpartition("@")
    if not at or not local:
        return False
    if "@" in constraint:
        c_local, _, c_host = constraint.rpartition("@")
        return local == c_local and host.lower() == c_host.lower()
    host, constraint = host.lower(), constraint.lower()
    if constraint.startswith("."):
        return host.endswith(constraint)
    return host == constraint


def dns_matches(name: str, constraint: str) -> bool:
    """A host and every host under it ("example.org" matches "a.example.org"); an empty constraint matches all."""
    name, constraint = name.lower().rstrip("."), constraint.lower().rstrip(".")
    if not constraint:
        return True
    if constraint.startswith("."):
        return name.endswith(constraint)
    return name == constraint or name.endswith("." + constraint)


def _dn_within(subject: x509.Name, base: x509.Name) -> bool:
    """Is ``subject`` ``base`` or below it, RDN by RDN (values compared case- and space-insensitively)?"""
    ours, theirs = list(subject.rdns), list(base.rdns)
    if len(theirs) > len(ours):
        return False
    return all(_rdn_key(a) == _rdn_key(b) for a, b in zip(ours, theirs, strict=False))


def _rdn_key(rdn: x509.RelativeDistinguishedName) -> frozenset[tuple[str, object]]:
    return frozenset((a.oid.dotted_string, " ".join(a.value.split()).casefold() if isinstance(a.value, str)
                      else a.value) for a in rdn)


def _matches(name: x509.GeneralName, base: x509.GeneralName) -> bool:
    if isinstance(name, x509.RFC822Name):
        return rfc822_matches(name.value, base.value)
    if isinstance(name, x509.DNSName):
        return dns_matches(name.value, base.value)
    if isinstance(name, x509.IPAddress):
        net = base.value
        return (isinstance(net, (ipaddress.IPv4Network, ipaddress.IPv6Network))
                and isinstance(name.value, (ipaddress.IPv4Address, ipaddress.IPv6Address))
                and name.value.version == net.version and name.value in net)
    if isinstance(name, x509.DirectoryName):
        return _dn_within(name.value, base.value)
    return False


def certificate_names(subject: x509.Name, san: Sequence[x509.GeneralName]) -> list[x509.GeneralName]:
    """The names constraints apply to: the SAN entries, the subject DN and its emailAddress attributes."""
    names: list[x509.GeneralName] = list(san)
    if len(subject.rdns):
        names.append(x509.DirectoryName(subject))
    for attr in subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        if isinstance(attr.value, str):
            names.append(x509.RFC822Name(attr.value))
    return names


def _describe(name: x509.GeneralName) -> str:
    if isinstance(name, x509.RFC822Name):
        return f"the address {name.value}"
    if isinstance(name, x509.DNSName):
        return f"the host name {name.value}"
    if isinstance(name, x509.IPAddress):
        return f"the IP address {name.value}"
    if isinstance(name, x509.DirectoryName):
        return f"the name {name.value.rfc4514_string() or '(empty)'}"
    return f"a {type(name).__name__}"


def violation(nc: x509.NameConstraints, subject: x509.Name, san: Sequence[x509.GeneralName]) -> str | None:
    """Why the names in ``subject`` and ``san`` break ``nc``, or None when they keep to it."""
    permitted = list(nc.permitted_subtrees or ())
    excluded = list(nc.excluded_subtrees or ())
    for name in certificate_names(subject, san):
        kind = type(name)
        if not isinstance(name, _CHECKED):
            if any(type(b) is kind for b in [*permitted, *excluded]):
                return f"{_describe(name)} cannot be checked against name constraints of that type"
            continue
        if any(type(b) is kind and _matches(name, b) for b in excluded):
            return f"{_describe(name)} is within the excluded names"
        bases = [b for b in permitted if type(b) is kind]
        if bases and not any(_matches(name, b) for b in bases):
            return f"{_describe(name)} is outside the permitted names"
    return None
