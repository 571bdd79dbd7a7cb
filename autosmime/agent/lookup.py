"""Find a recipient's certificate, and learn certificates from verified mail.

    >>> from autosmime.agent import Agent
    >>> from autosmime.agent.lookup import lookup, harvest_verified
    >>> found = lookup(Agent(home), "bob@example.test")          # doctest: +SKIP
    >>> harvest_verified(Agent(home), read_result)               # doctest: +SKIP

Trust for recipients' chains: the roots of this vault's own chains (the CA
that issued my certificates) plus any ``extra_roots`` (the CLI's --trust).
The directory is used when one is configured (see agent.publish.directory_url);
an LDAP directory when one is given (``ldap=LdapSetting(url)``, remembered in
the home for later lookups and ``send``) or set in $AUTOSMIME_LDAP (see
ldap_setting).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from autosmime.errors import LDAPError, NoRecipientCertificate, UsageError
from autosmime.exchange.client import DirectoryClient
from autosmime.exchange.contacts import Contacts
from autosmime.exchange.harvest import Harvested, harvest
from autosmime.exchange.ldap import LdapSource
from autosmime.exchange.lookup import DEFAULT_TTL, Found, find_certificate
from autosmime.exchange.transparency import LogWitness
from autosmime.smime.models import ReadResult, VerifyResult

if TYPE_CHECKING:
    from autosmime.agent.context import Agent


def vault_roots(agent: Agent) -> list[x509.Certificate]:
    """The self-signed ends of the chains this vault holds; for a chain that stops short of its root
    (an ACME CA may send only its issuing CA), the top of that chain: the CA we enrolled with is
    trusted as far as we received it from it (pki.validate checks an anchor for nothing else)."""
    if not agent.has_vault():
        return []
    roots: list[x509.Certificate] = []
    for e in agent.vault(create=False).entries():
        tops = [c for c in e.chain if c.issuer == c.subject] or list(e.chain[-1:])
        roots += [c for c in tops if c not in roots]
    return roots


LDAP_FILE = "ldap/source.json"
LDAP_ENV = "AUTOSMIME_LDAP"
LDAP_BASE_ENV = "AUTOSMIME_LDAP_BASE"
#: ``--ldap off``: forget the remembered LDAP directory
LDAP_OFF = "off"


@dataclass(frozen=True)
class LdapSetting:
    """An LDAP directory to ask last; paths (CA, password file) are kept as absolute paths, never the password."""

    url: str
    base: str | None = None
    ca_file: str | None = None
    bind_dn: str | None = None
    password_file: str | None = None

    def source(self) -> LdapSource:
        """The source to search (reads the password file now); LDAPBadURL/LDAPError when unusable."""
        password = None
        if self.password_file is not None:
            try:
                password = Path(self.password_file).read_text().rstrip("\r\n")
            except OSError as e:
                raise LDAPError(f"cannot read the LDAP password file {self.password_file}: {e.strerror}") from None
        return LdapSource(self.url, base=self.base, ca_file=Path(self.ca_file) if self.ca_file else None,
                          bind_dn=self.bind_dn, password=password)


def ldap_setting(home: Path, given: LdapSetting | None = None, base: str | None = None) -> LdapSetting | None:
    """The LDAP directory to use: ``given`` (the CLI's --ldap), else $AUTOSMIME_LDAP (base: $AUTOSMIME_LDAP_BASE),
    else the one remembered in the home, else None. ``base`` (--ldap-base) overrides the base DN of any of them."""
    setting = given
    if setting is None and os.environ.get(LDAP_ENV, "").strip():
        setting = LdapSetting(os.environ[LDAP_ENV].strip(), os.environ.get(LDAP_BASE_ENV) or None)
    if setting is None and (home / LDAP_FILE).exists():
        try:
            setting = LdapSetting(**json.loads((home / LDAP_FILE).read_text()))
        except (ValueError, TypeError) as e:
            raise LDAPError(f"the remembered LDAP setting {home / LDAP_FILE} is unreadable ({e}): give --ldap again") from None
    if setting is not None and base:
        setting = LdapSetting(**{**asdict(setting), "base": base})
    return setting


def _remember_ldap(home: Path, setting: LdapSetting) -> None:
    from autosmime._files import ensure_home, write_private

    ensure_home(home)
    (home / "ldap").mkdir(mode=0o700, exist_ok=True)
    absolute = {k: str(Path(v).resolve()) if k in ("ca_file", "password_file") and v else v
                for k, v in asdict(setting).items()}
    write_private(home / LDAP_FILE, json.dumps(absolute, indent=2).encode() + b"\n")


def forget_ldap(home: Path) -> bool:
    """Remove the remembered LDAP directory; False if there was none."""
    try:
        (home / LDAP_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def lookup(agent: Agent, address: str, *, directory: str | None = None, extra_roots: Sequence[x509.Certificate] = (),
           ttl: int = DEFAULT_TTL, smimea: bool = False, ldap: LdapSetting | None = None,
           ldap_base: str | None = None) -> Found:
    """Find ``address``'s certificate (exchange.lookup.find_certificate) with this home's sources.

    An ``ldap`` given here is remembered in the home (0600) for later lookups and ``send``, unless the URL
    is unusable or the search failed (LDAPError); ``LdapSetting("off")`` forgets it and uses none.
    """
    from autosmime.agent.publish import directory_url

    home = agent.home
    roots = [*vault_roots(agent), *extra_roots]
    contacts = Contacts(home)
    if ldap is not None and ldap.url.strip() == LDAP_OFF:
        forget_ldap(home)
        setting = None
    else:
        setting = ldap_setting(home, ldap, ldap_base)
    by_ldap = None
    if ldap is not None and setting is not None:
        by_ldap = setting.source().certificates     # given now: checked now, before it is remembered
    elif setting is not None:
        # from the environment or the home: checked only when LDAP is needed, so a broken setting does
        # not stop finding the certificates the contacts or the directory have
        def by_ldap(address: str) -> list[x509.Certificate]:
            return setting.source().certificates(address)
    try:
        url: str | None = directory_url(home, directory)
    except UsageError:
        url = None
    try:
        if url is None:
            found = find_certificate(address, contacts, roots, smimea=smimea, ttl=ttl, ldap=by_ldap)
        else:
            with DirectoryClient(url) as client:
                found = find_certificate(address, contacts, roots, directory=lambda: LogWitness.open(home, client),
                                         ttl=ttl, smimea=smimea, ldap=by_ldap)
    except NoRecipientCertificate:  # the LDAP directory answered (or was not needed): a good setting
        if ldap is not None and setting is not None:
            _remember_ldap(home, setting)
        raise
    if ldap is not None and setting is not None:
        _remember_ldap(home, setting)
    return found


def harvest_verified(agent: Agent, result: ReadResult | VerifyResult) -> list[Harvested]:
    """Add the From-matching signer of each good signature in ``result`` to the contacts."""
    return harvest(result, Contacts(agent.home))
