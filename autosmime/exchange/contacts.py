"""This device's contacts: certificates learnt from verified mail and from the directory.

    >>> from autosmime.exchange.contacts import Contacts
    >>> contacts = Contacts(home)                                           # doctest: +SKIP
    >>> contacts.add("bob@example.test", cert, source="harvested")          # doctest: +SKIP
    'new'

One JSON file (``<home>/contacts.json``, 0600, written atomically under a
lock). Per address, each certificate with where it came from, when it was first
and last seen, and whether it is ``held``: a certificate that arrives for an
address that already has another one is kept but held back (reported as
"changed") until the user accepts it or the directory's log vouches for it, so
a newer certificate is never silently preferred. Also the directory cache:
per address, when the directory was last asked, its ETag and what it said
(certificates or "none").
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from autosmime._files import ensure_home, locked, write_private
from autosmime.errors import ContactsError
from autosmime.pki.select import normalize_address

FILE = "contacts.json"
LOCK = ".contacts.lock"


@dataclass(frozen=True)
class Contact:
    address: str
    cert: x509.Certificate
    sha256: str
    source: str          # harvested | directory | smimea | manual
    first_seen: int
    last_seen: int
    held: bool
    issuers: tuple[x509.Certificate, ...] = ()   # intermediates seen with it, to build its path


class Contacts:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / FILE

    def _load(self) -> dict:
        if not self.path.exists():
            return {"version": 1, "addresses": {}, "directory": {}}
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("addresses"), dict):
                raise ValueError("not a contacts object")
        except (OSError, ValueError) as e:
            raise ContactsError(
                f"{self.path} cannot be read ({getattr(e, 'strerror', None) or e}): move it away; it holds only "
                "certificates learnt from mail and the key directory, which are learnt again") from None
        return data

    def _update(self, change) -> object:
        ensure_home(self.home)
        with locked(self.home / LOCK):
            data = self._load()
            result = change(data)
            write_private(self.path, json.dumps(data, indent=1, sort_keys=True).encode())
        return result

    def add(self, address: str, cert: x509.Certificate, *, source: str, seen_at: int | None = None,
            vouched: bool = False, issuers: Sequence[x509.Certificate] = ()) -> str:
        """Record ``cert`` for ``address``: "new" (first for the address), "known", or "changed" (held back).

        ``vouched`` (the directory's log shows it) never holds a certificate back, and releases a held one.
        """
        address = normalize_address(address)
        der = cert.public_bytes(serialization.Encoding.DER)
        digest = hashlib.sha256(der).hexdigest()
        chain = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in issuers]
        when = int(seen_at if seen_at is not None else time.time())

        def change(data: dict) -> str:
            entries = data["addresses"].setdefault(address, {})
            if digest in entries:
                e = entries[digest]
                e["last_seen"] = max(e["last_seen"], when)
                if vouched and e.get("held"):
                    e["held"] = False
                if chain and not e.get("issuers_b64"):
                    e["issuers_b64"] = chain
                return "known"
            held = bool(entries) and not vouched
            entries[digest] = {"der_b64": base64.b64encode(der).decode(), "source": source, "first_seen": when,
                               "last_seen": when, "held": held,
                               "issuers_b64": chain}
            return "changed" if held else "new"

        return str(self._update(change))

    def accept(self, address: str, sha256_hex: str) -> bool:
        """Release a held certificate (the user confirmed the change)."""
        address = normalize_address(address)

        def change(data: dict) -> bool:
            e = data["addresses"].get(address, {}).get(sha256_hex)
            if e is None:
                return False
            e["held"] = False
            return True

        return bool(self._update(change))

    def certificates(self, address: str) -> list[Contact]:
        address = normalize_address(address)
        entries = self._load()["addresses"].get(address, {})
        return [Contact(address, x509.load_der_x509_certificate(base64.b64decode(e["der_b64"])), digest, e["source"],
                        e["first_seen"], e["last_seen"], bool(e.get("held")),
                        tuple(x509.load_der_x509_certificate(base64.b64decode(i)) for i in e.get("issuers_b64", [])))
                for digest, e in entries.items()]

    # --- directory cache -----------------------------------------------------------------

    def cached_lookup(self, address: str, ttl: int, now: int | None = None) -> dict | None:
        """The directory's last word on ``address`` if younger than ``ttl`` s: {"found", "etag", "fetched"}."""
        entry = self._load()["directory"].get(normalize_address(address))
        if entry is None or (now if now is not None else time.time()) - entry["fetched"] > ttl:
            return None
        return dict(entry)

    def remember_lookup(self, address: str, found: list[dict], etag: str | None, now: int | None = None) -> None:
        address = normalize_address(address)
        when = int(now if now is not None else time.time())

        def change(data: dict) -> None:
            data["directory"][address] = {"found": list(found), "etag": etag, "fetched": when}

        self._update(change)
