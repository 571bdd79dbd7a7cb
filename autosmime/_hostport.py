"""The one parser of ``HOST:PORT`` for every command and server.

    >>> from autosmime._hostport import parse_hostport
    >>> parse_hostport("mail.example.test:993")
    ('mail.example.test', 993)
    >>> parse_hostport("[::1]:8443"), parse_hostport("::1", default_port=25)
    (('::1', 8443), ('::1', 25))
    >>> parse_hostport(":4000", default_host="127.0.0.1")
    ('127.0.0.1', 4000)
    >>> parse_hostport("127.0.0.1:38465:99999")
    Traceback (most recent call last):
    ...
    ValueError: '127.0.0.1:38465:99999' has several colons but is not an IPv6 address (write [ADDRESS]:PORT)

Errors are ValueError with the reason; each caller raises its own typed error around it.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["parse_hostport"]

# A DNS name or an IPv4 address: letters, digits, '-', '_' and dots (underscores occur in real names).
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$")


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def parse_hostport(value: str, *, default_host: str | None = None, default_port: int | None = None,
                   listen: bool = False) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, a bare host (``default_port``), ``:port`` or ``port`` (``default_host``).

    A value with several colons is a host only if it is an IPv6 address; with a port, the address goes in
    brackets. ``listen`` allows port 0 (any free port).
    """
    text = value.strip()
    host, port = text, ""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not _ipv6(host):
            raise ValueError(f"{value!r}: only an IPv6 address goes in brackets, [ADDRESS]:PORT")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{value!r}: expected [ADDRESS]:PORT")
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text:
        if not _ipv6(text):
            raise ValueError(f"{value!r} has several colons but is not an IPv6 address (write [ADDRESS]:PORT)")
    elif text.isdigit() and default_host is not None:
        host, port = "", text
    if not host:
        if default_host is None:
            raise ValueError(f"missing host in {value!r}")
        host = default_host
    elif ":" not in host and not _HOSTNAME.match(host):
        raise ValueError(f"{host!r} is not a host name or address")
    if not port:
        if default_port is None:
            raise ValueError(f"missing port in {value!r} (HOST:PORT)")
        return host, default_port
    if not port.isdigit() or not (0 if listen else 1) <= int(port) <= 65535:
        raise ValueError(f"bad port in {value!r}")
    return host, int(port)
