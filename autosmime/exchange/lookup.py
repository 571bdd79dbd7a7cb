"""Find the certificate to encrypt to: local contacts first, then the directory (cached), then SMIMEA, then LDAP.

    >>> from autosmime.exchange.lookup import find_certificate
    >>> found = find_certificate("bob@example.test", contacts, roots, directory=lambda: witness)   # doctest: +SKIP
    >>> found.source, found.cert.serial_number                                          # doctest: +SKIP
    ('directory', 1234...)

1. Local contacts: certificates harvested from verified mail (not held back),
   and those the directory gave within the cache TTL.
2. The directory, when nothing local is usable or its cache entry is stale:
   every certificate must be proven in the transparency log (LogWitness), else
   the error is raised, never a certificate used. A 404 is cached as "none" for
   the TTL too; a 304 (ETag) only renews the cache entry.
3. SMIMEA in DNS (``smimea=True``), for a domain that publishes it.
4. An LDAP directory (``ldap``: e.g. ``LdapSource(url).certificates``), last:
   it proves nothing about who put a certificate there (research §6: directory
   with proof > harvested > LDAP). Like SMIMEA's, its certificates are neither
   added to the contacts nor cached; its failures (LDAPError) are raised.
Every candidate, from any source, goes through choose_recipient_cert: the
address, EKU, key usage, the chain to ``roots``, validity.
The choice among everything usable is autosmime.pki.select's: the owner's
preference, then the newest.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509

from autosmime.errors import NoKey, NoRecipientCertificate, NotPublished, RecipientNotFound
from autosmime.exchange.contacts import Contacts
from autosmime.exchange.transparency import LogWitness
from autosmime.pki.select import choose_recipient_cert, normalize_address

DEFAULT_TTL = 6 * 3600


@dataclass
class Found:
    address: str
    cert: x509.Certificate
    source: str                      # contacts | directory | smimea | ldap
    candidates: list[x509.Certificate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def find_certificate(address: str, contacts: Contacts, roots: Sequence[x509.Certificate], *,
                     directory: Callable[[], LogWitness] | None = None, ttl: int = DEFAULT_TTL, smimea: bool = False,
                     smimea_lookup: Callable[[str], list[x509.Certificate]] | None = None,
                     ldap: Callable[[str], list[x509.Certificate]] | None = None,
                     now: int | None = None) -> Found:
    """The certificate to encrypt to for ``address``.

    Raises RecipientNotFound when no source has any certificate for it (exit 3), and
    NoRecipientCertificate, with a reason per source, when some were found but none is usable.

    ``directory`` opens the log witness of the directory, called only when the directory is needed;
    ``ldap`` returns an LDAP directory's certificates for an address (all of them: they also serve as
    intermediates for one another's chains), called only when nothing before it is usable.
    """
    address = normalize_address(address)
    when = int(now if now is not None else time.time())
    notes: list[str] = []
    cache = contacts.cached_lookup(address, ttl, when) if directory is not None else None
    tried = False

    def attempt(source: str, certs: list[x509.Certificate], info: dict | None,
                pool: Sequence[x509.Certificate] = ()) -> Found | None:
        nonlocal tried
        tried = True
        statuses = {f["sha256"]: f.get("status", "unknown") for f in (info or {}).get("found", [])}
        preferred = {f["sha256"] for f in (info or {}).get("found", []) if f.get("preferred")}
        try:
            chosen = choose_recipient_cert(address, certs, roots, pool, statuses=statuses, preferred=preferred)
        except NoKey as e:
            notes.append(f"{source}: {e}")
            return None
        return Found(address, chosen, source, certs, notes)

    local = [c for c in contacts.certificates(address) if not c.held and (c.source != "directory" or cache)]
    held = [c for c in contacts.certificates(address) if c.held]
    for c in held:
        notes.append(f"a newer certificate {c.sha256[:16]}… for {address} is held back until confirmed")
    if local:
        found = attempt("contacts", [c.cert for c in local], cache, [i for c in local for i in c.issuers])
        if found is not None:
            return found
    if directory is not None and cache is not None and not cache["found"]:
        kept = f"{ttl // 3600} h" if ttl % 3600 == 0 else f"{ttl} s"
        asked = _dt.datetime.fromtimestamp(int(cache["fetched"]), _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        notes.append(f"directory: nothing published for {address} (its answer of {asked}, kept for {kept})")
    if directory is not None and cache is None:
        info = _ask_directory(address, contacts, directory(), when)
        listed = [c for c in contacts.certificates(address) if c.sha256 in {f["sha256"] for f in info["found"]}]
        if listed:
            found = attempt("directory", [c.cert for c in listed], info, [i for c in listed for i in c.issuers])
            if found is not None:
                return found
        else:
            notes.append(f"directory: nothing published for {address}")
    if directory is None:
        notes.append("directory: none in use (`autosmime publish --directory URL` sets one)")
    if smimea:
        from autosmime.exchange.smimea import smimea_certificates

        certs = (smimea_lookup or smimea_certificates)(address)
        if certs:
            found = attempt("smimea", certs, None)
            if found is not None:
                return found
    if ldap is not None:
        certs = ldap(address)
        if certs:
            found = attempt("ldap", certs, None)
            if found is not None:
                return found
        else:
            notes.append(f"ldap: no certificate for {address}")
    if not tried and not held:
        raise RecipientNotFound(address, notes)
    raise NoRecipientCertificate(address, notes)


def _ask_directory(address: str, contacts: Contacts, witness: LogWitness, when: int) -> dict:
    old = contacts.cached_lookup(address, 10 ** 9, when)  # any age: only its ETag is reused
    try:
        answer, etag = witness.client.lookup(address, old.get("etag") if old and old["found"] else None)
    except NotPublished:
        contacts.remember_lookup(address, [], None, when)
        return {"found": []}
    if answer is None and old is not None:  # 304: what we had is still what the directory says
        contacts.remember_lookup(address, old["found"], etag, when)
        return old
    assert answer is not None
    proven = witness.verify_lookup(address, answer)
    found = []
    for p in proven:
        contacts.add(address, p.cert, source="directory", vouched=True, seen_at=when, issuers=p.issuers)
        found.append({"sha256": p.sha256, "status": p.status, "checked_at": p.checked_at, "preferred": p.preferred,
                      "leaf_index": p.leaf_index})
    contacts.remember_lookup(address, found, etag, when)
    return {"found": found}
