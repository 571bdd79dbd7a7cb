"""Learn certificates from mail autosmime verified: the signer that matches From, nothing else.

    >>> from autosmime.exchange.harvest import harvest
    >>> harvest(read_result, Contacts(home))               # doctest: +SKIP
    [Harvested(address='alice@example.test', sha256='…', outcome='new')]

Takes what the engine returns (a ReadResult from ``read`` or a VerifyResult
from ``verify``); only layers and signers whose verdict is "good" count.
For each signature layer with a From address, the one SignerInfo whose
certificate names that address is added, with the signing time (or now) as the
time it was seen. Other SignerInfos of the same message are never harvested:
anyone can add a signature, only the From-matching one is the correspondent's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from autosmime.errors import UsageError
from autosmime.exchange.contacts import Contacts
from autosmime.pki.certs import fingerprint
from autosmime.pki.select import normalize_address
from autosmime.smime.models import ReadResult, VerifyResult

__all__ = ["Harvested", "harvest"]


def _addresses(names: tuple[str, ...]) -> set[str]:
    out = set()
    for name in names:
        try:
            out.add(normalize_address(name))
        except UsageError:
            continue
    return out


@dataclass(frozen=True)
class Harvested:
    address: str
    sha256: str
    outcome: str  # new | known | changed


def harvest(result: ReadResult | VerifyResult, contacts: Contacts) -> list[Harvested]:
    layers = result.signatures if isinstance(result, ReadResult) else (result,)
    out: list[Harvested] = []
    for layer in layers:
        if not layer.from_address or layer.verdict != "good":  # read() reports bad layers instead of raising
            continue
        try:
            sender = normalize_address(layer.from_address)
        except UsageError:
            continue
        for signer in layer.signers:
            if signer.cert is None or signer.verdict != "good" or sender not in _addresses(signer.addresses):
                continue
            seen = signer.signing_time.timestamp() if signer.signing_time else time.time()
            outcome = contacts.add(sender, signer.cert, source="harvested", seen_at=int(min(seen, time.time())),
                                   issuers=signer.chain[1:])
            out.append(Harvested(sender, fingerprint(signer.cert), outcome))
            break
    return out
