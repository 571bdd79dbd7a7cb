"""Learn certificates from mail autosmime verified: the signer that matches From, nothing else.

    >>> from autosmime.exchange.harvest import harvest
    >>> harvest(read_result, Contacts(home))               # doctest: +SKIP
    [Harvested(address='alice@example.test', sha256='…', outcome='new')]

Takes what the engine returns (a ReadResult from ``read`` or a VerifyResult
from ``verify``); both exist only for good signatures, since a bad one raises.
For each signature layer with a From address, the one SignerInfo whose
certificate names that address is added, with the signing time (or now) as the
time it was seen. Other SignerInfos of the same message are never harvested:
anyone can add a signature, only the From-matching one is the correspondent's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from autosmime.exchange.contacts import Contacts
from autosmime.pki.certs import fingerprint
from autosmime.pki.select import normalize_address
from autosmime.smime.models import ReadResult, VerifyResult

__all__ = ["Harvested", "harvest"]


@dataclass(frozen=True)
class Harvested:
    address: str
    sha256: str
    outcome: str  # new | known | changed


def harvest(result: ReadResult | VerifyResult, contacts: Contacts) -> list[Harvested]:
    layers = result.signatures if isinstance(result, ReadResult) else (result,)
    out: list[Harvested] = []
    for layer in layers:
        if not layer.from_address:
            continue
        sender = normalize_address(layer.from_address)
        for signer in layer.signers:
            if sender not in {normalize_address(a) for a in signer.addresses}:
                continue
            seen = signer.signing_time.timestamp() if signer.signing_time else time.time()
            outcome = contacts.add(sender, signer.cert, source="harvested", seen_at=int(min(seen, time.time())),
                                   issuers=signer.chain[1:])
            out.append(Harvested(sender, fingerprint(signer.cert), outcome))
            break
    return out
