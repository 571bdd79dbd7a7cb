"""Find a mailbox's IMAP and SMTP settings from the address alone, the way Thunderbird does.

    >>> from autosmime.mailbox.autoconfig import discover
    >>> found = discover("someone@gmail.com", sources=("bundled",))
    >>> found.imap.host, found.imap.port, found.imap.security, found.source
    ('imap.gmail.com', 993, 'tls', 'bundled')

Sources, tried in this order until one answers (``sources`` picks a subset):

1. ``bundled``: provider entries shipped with autosmime (``providers/*.xml``), in
   Thunderbird's autoconfig format (``clientConfig`` version 1.1, the ISPDB format).
2. ``autoconfig``: the domain's own file, ``https://autoconfig.<domain>/mail/config-v1.1.xml``
   then ``https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml``, over verified HTTPS.
3. ``srv``: RFC 6186 and RFC 8314 SRV records: ``_imaps._tcp`` before ``_imap._tcp``,
   ``_submissions._tcp`` before ``_submission._tcp``; a target of ``.`` means "not offered".

Network access goes through two small injected functions (an HTTPS getter and an SRV
resolver), so tests drive the real parsing and ordering against loopback servers and
zone files. An answer that cannot be parsed is skipped, never half-used: a provider's
file is untrusted input (size-capped; expat refuses entity expansion bombs).
"""

from __future__ import annotations

import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal, Protocol

from autosmime.errors import DiscoveryError
from autosmime.mailbox.text import server_text

__all__ = ["DISCOVERY_SOURCES", "MailSettings", "ServerSetting", "SrvRecord", "discover", "https_getter", "parse_clientconfig"]

Security = Literal["tls", "starttls", "plain"]
DISCOVERY_SOURCES = ("bundled", "autoconfig", "srv")
_MAX_XML = 256 * 1024
# A DNS name (letters, digits, '-', '_', dots) or an IP literal: what a provider's file may name as a server.
_HOSTNAME = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?|\[?[0-9A-Fa-f:.]+\]?")
_SOCKET_TYPES: dict[str, Security] = {"SSL": "tls", "STARTTLS": "starttls", "plain": "plain"}


@dataclass(frozen=True)
class ServerSetting:
    host: str
    port: int
    security: Security
    username: str


@dataclass(frozen=True)
class MailSettings:
    """Where one address's mail lives; ``source`` says which discovery step found it."""

    imap: ServerSetting
    smtp: ServerSetting
    source: str


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


class SrvResolver(Protocol):
    def __call__(self, name: str) -> Sequence[SrvRecord]: ...


HttpsGet = Callable[[str], bytes]


def discover(address: str, *, sources: Iterable[str] = DISCOVERY_SOURCES, https_get: HttpsGet | None = None,
             resolve_srv: SrvResolver | None = None) -> MailSettings:
    """The first source that knows ``address``'s domain; DiscoveryError naming what was tried otherwise."""
    local, _, domain = address.strip().rpartition("@")
    if not local or not domain or "." not in domain:
        raise DiscoveryError(f"not an email address: {address!r}")
    domain = domain.lower().rstrip(".")
    tried: list[str] = []
    for source in sources:
        if source == "bundled":
            found = _bundled(address, domain)
        elif source == "autoconfig":
            found = _from_domain_file(address, domain, https_get or https_getter())
        elif source == "srv":
            found = _from_srv(address, domain, resolve_srv or _dns_srv)
        else:
            raise DiscoveryError(f"unknown discovery source {source!r}")
        if found is not None:
            return found
        tried.append(source)
    raise DiscoveryError(f"no mail settings found for {domain} (tried: {', '.join(tried) or 'nothing'}); "
                         "give --imap, --smtp and --security")


def parse_clientconfig(data: bytes, address: str, source: str) -> MailSettings | None:
    """The first usable IMAP and SMTP servers of a Thunderbird autoconfig file, or None for a file that has none."""
    if len(data) > _MAX_XML:
        return None
    try:
        root = ET.fromstring(data)  # expat >= 2.4 refuses entity bombs and fetches no external entity
    except ET.ParseError:
        return None
    provider = root.find("emailProvider")
    if root.tag != "clientConfig" or provider is None:
        return None
    imap = _first_server(provider.findall("incomingServer"), "imap", address)
    smtp = _first_server(provider.findall("outgoingServer"), "smtp", address)
    if imap is None or smtp is None:
        return None
    return MailSettings(imap, smtp, source)


def _first_server(elements: list[ET.Element], kind: str, address: str) -> ServerSetting | None:
    # Thunderbird's order is the provider's preference; plain servers come last whatever the file says.
    servers = [s for s in (_server(e, address) for e in elements if e.get("type") == kind) if s is not None]
    servers.sort(key=lambda s: s.security == "plain")
    return servers[0] if servers else None


def _server(element: ET.Element, address: str) -> ServerSetting | None:
    host = (element.findtext("hostname") or "").strip()
    port_text = (element.findtext("port") or "").strip()
    security = _SOCKET_TYPES.get((element.findtext("socketType") or "").strip())
    if not host or not port_text.isdigit() or security is None or not 0 < int(port_text) < 65536:
        return None
    username = (element.findtext("username") or "%EMAILADDRESS%").strip()
    if not _HOSTNAME.fullmatch(_substitute(host, address)) or server_text(username) != username:
        return None  # the provider's text is stored in account.json and shown: no escapes or controls in it
    auth = {(a.text or "").strip() for a in element.findall("authentication")}
    if auth and not auth & {"password-cleartext", "plain", "password-encrypted", "secure"}:
        return None  # OAuth2-only servers: autosmime logs in with a password
    return ServerSetting(_substitute(host, address), int(port_text), security, _substitute(username, address))


def _substitute(template: str, address: str) -> str:
    local, _, domain = address.rpartition("@")
    return (template.replace("%EMAILADDRESS%", address).replace("%EMAILLOCALPART%", local)
            .replace("%EMAILDOMAIN%", domain))


def _bundled(address: str, domain: str) -> MailSettings | None:
    for entry in resources.files("autosmime.mailbox").joinpath("providers").iterdir():
        if not entry.name.endswith(".xml"):
            continue
        data = entry.read_bytes()
        root = ET.fromstring(data)
        provider = root.find("emailProvider")
        domains = {(d.text or "").strip().lower() for d in provider.findall("domain")} if provider is not None else set()
        if domain in domains:
            return parse_clientconfig(data, address, "bundled")
    return None


def _from_domain_file(address: str, domain: str, https_get: HttpsGet) -> MailSettings | None:
    query = urllib.parse.urlencode({"emailaddress": address})
    for url in (f"https://autoconfig.{domain}/mail/config-v1.1.xml?{query}",
                f"https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml?{query}"):
        try:
            data = https_get(url)
        except (OSError, ValueError):
            continue
        found = parse_clientconfig(data, address, "autoconfig")
        if found is not None:
            return found
    return None


def _from_srv(address: str, domain: str, resolve: SrvResolver) -> MailSettings | None:
    imap = _srv_server(resolve, domain, address, (("_imaps._tcp", "tls"), ("_imap._tcp", "starttls")))
    smtp = _srv_server(resolve, domain, address, (("_submissions._tcp", "tls"), ("_submission._tcp", "starttls")))
    if imap is None or smtp is None:
        return None
    return MailSettings(imap, smtp, "srv")


def _srv_server(resolve: SrvResolver, domain: str, address: str,
                services: tuple[tuple[str, Security], ...]) -> ServerSetting | None:
    for service, security in services:
        try:
            records = list(resolve(f"{service}.{domain}."))
        except (OSError, ValueError):
            continue
        records = [r for r in records if r.target not in ("", ".") and 0 < r.port < 65536]
        if records:
            best = min(records, key=lambda r: (r.priority, -r.weight))
            return ServerSetting(best.target.rstrip("."), best.port, security, address)
    return None


def https_getter(*, cafile: str | None = None, connect_to: dict[str, tuple[str, int]] | None = None) -> HttpsGet:
    """A size-capped HTTPS GET with certificate and host-name checks; no redirects are followed.

    ``cafile`` replaces the system roots and ``connect_to`` sends a host name to another address
    while still verifying the certificate for that name (what the embedded stack and tests need).
    """
    import http.client
    import socket
    import ssl

    context = ssl.create_default_context(cafile=cafile)
    overrides = dict(connect_to or {})

    def get(url: str) -> bytes:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("autoconfig is fetched over https only")
        host, port = overrides.get(parts.hostname, (parts.hostname, parts.port or 443))
        target = f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}"
        with socket.create_connection((host, port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
            conn = http.client.HTTPConnection(parts.hostname, timeout=10)
            conn.sock = tls
            conn.request("GET", target, headers={"User-Agent": "autosmime", "Host": parts.netloc})
            response = conn.getresponse()
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            return response.read(_MAX_XML + 1)

    return get


def _dns_srv(name: str) -> list[SrvRecord]:
    import dns.exception
    import dns.resolver

    try:
        answer = dns.resolver.resolve(name, "SRV", lifetime=5)
    except dns.exception.DNSException:
        return []
    return [SrvRecord(r.priority, r.weight, r.port, r.target.to_text()) for r in answer]
