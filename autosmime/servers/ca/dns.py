"""DNS TXT look-ups for DKIM, pluggable: real DNS by default, zone files for tests and the devstack.

    >>> from autosmime.servers.ca.dns import ZoneResolver
    >>> r = ZoneResolver.from_text('$ORIGIN .\\n'
    ...     'sel._domainkey.example.test. 300 IN TXT "v=DKIM1; k=rsa; " "p=MIIB"\\n')
    >>> r.txt("sel._domainkey.Example.TEST")
    [b'v=DKIM1; k=rsa; p=MIIB']

Zone files (``ca serve --dns-zone FILE``, repeatable) are RFC 1035 master
files read with dnspython (``dns.zone.from_file(..., relativize=False,
check_origin=False)``):

- owner names absolute (ending in ``.``) under ``$ORIGIN .``, or relative to
  an ``$ORIGIN example.test.`` line; no SOA or NS records are needed;
- one file may hold any number of domains, and several files are merged
  (their records for the same name are added together);
- DKIM keys are TXT records at ``<selector>._domainkey.<domain>.``; a record
  split into several quoted strings is joined without separators (RFC 6376
  §3.6.2.2), e.g.
  ``mail._domainkey.example.test. 300 IN TXT "v=DKIM1; k=rsa; " "p=MIIBIjANBg..."``;
- names are matched case-insensitively; other record types are ignored.

``ca init`` writes such a file (DIR/dns.zone) with the CA's own DKIM key, so
a stack can concatenate it with the zone of its mail domain.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from autosmime.errors import DNSZoneError


class TxtResolver(Protocol):
    """Anything that answers TXT queries: each record's strings joined, as bytes."""

    def txt(self, name: str) -> list[bytes]: ...


def _key(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


class ZoneResolver:
    """TXT records from RFC 1035 zone files, held in memory."""

    def __init__(self, records: dict[str, list[bytes]] | None = None) -> None:
        self._records: dict[str, list[bytes]] = defaultdict(list, records or {})

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> ZoneResolver:
        resolver = cls()
        for path in paths:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as e:
                raise DNSZoneError(f"cannot read DNS zone file {path}: {e.strerror}") from None
            resolver.add_text(text, source=str(path))
        return resolver

    @classmethod
    def from_text(cls, text: str) -> ZoneResolver:
        resolver = cls()
        resolver.add_text(text)
        return resolver

    def add_text(self, text: str, source: str = "zone") -> None:
        import dns.exception
        import dns.name
        import dns.rdatatype
        import dns.zone

        try:
            zone = dns.zone.from_text(text, origin=dns.name.root, relativize=False, check_origin=False)
        except (dns.exception.DNSException, ValueError) as e:
            raise DNSZoneError(f"bad DNS zone file {source}: {e}") from None
        for name, _ttl, rdata in zone.iterate_rdatas(dns.rdatatype.TXT):
            self._records[_key(name.to_text())].append(b"".join(rdata.strings))  # type: ignore[attr-defined]

    def txt(self, name: str) -> list[bytes]:
        return list(self._records.get(_key(name), ()))


class SystemResolver:
    """TXT records from the system's DNS resolver (dnspython)."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout

    def txt(self, name: str) -> list[bytes]:
        import dns.exception
        import dns.resolver

        try:
            answer = dns.resolver.resolve(name, "TXT", lifetime=self.timeout)
        except dns.exception.DNSException:
            return []
        return [b"".join(r.strings) for r in answer]


def dkim_dnsfunc(resolver: TxtResolver) -> Callable[..., bytes | None]:
    """The ``dnsfunc`` dkimpy wants: name (bytes) -> the DKIM key record, or None."""

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        records = resolver.txt(name.decode("ascii", "replace"))
        for record in records:
            if record.lstrip().startswith(b"v=DKIM1"):
                return record
        return records[0] if records else None

    return lookup


def dkim_txt_record(selector: str, domain: str, public_key_b64: str, key_type: str = "rsa") -> str:
    """One zone-file line publishing a DKIM public key (split in 250-character strings)."""
    value = f"v=DKIM1; k={key_type}; p={public_key_b64}"
    chunks = " ".join(f'"{value[i:i + 250]}"' for i in range(0, len(value), 250))
    return f"{selector}._domainkey.{domain.rstrip('.')}. 300 IN TXT {chunks}\n"
