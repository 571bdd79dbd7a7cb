"""Find a recipient's certificate, and learn certificates from verified mail.

    >>> from autosmime.agent import Agent
    >>> from autosmime.agent.lookup import lookup, harvest_verified
    >>> found = lookup(Agent(home), "bob@example.test")          # doctest: +SKIP
    >>> harvest_verified(Agent(home), read_result)               # doctest: +SKIP

Trust for recipients' chains: the roots of this vault's own chains (the CA
that issued my certificates) plus any ``extra_roots`` (the CLI's --trust).
The directory is used when one is configured (see agent.publish.directory_url).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography import x509

from autosmime.errors import UsageError
from autosmime.exchange.client import DirectoryClient
from autosmime.exchange.contacts import Contacts
from autosmime.exchange.harvest import Harvested, harvest
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


def lookup(agent: Agent, address: str, *, directory: str | None = None, extra_roots: Sequence[x509.Certificate] = (),
           ttl: int = DEFAULT_TTL, smimea: bool = False) -> Found:
    from autosmime.agent.publish import directory_url

    home = agent.home
    roots = [*vault_roots(agent), *extra_roots]
    contacts = Contacts(home)
    try:
        url: str | None = directory_url(home, directory)
    except UsageError:
        url = None
    if url is None:
        return find_certificate(address, contacts, roots, smimea=smimea, ttl=ttl)
    with DirectoryClient(url) as client:
        return find_certificate(address, contacts, roots, directory=lambda: LogWitness.open(home, client), ttl=ttl,
                                smimea=smimea)


def harvest_verified(agent: Agent, result: ReadResult | VerifyResult) -> list[Harvested]:
    """Add the From-matching signer of each good signature in ``result`` to the contacts."""
    return harvest(result, Contacts(agent.home))
