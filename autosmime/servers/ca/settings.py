"""Tunable limits of one CA (defaults are the production values).

    >>> from autosmime.servers.ca.settings import Settings
    >>> Settings().authz_ttl
    86400.0
    >>> Settings(authz_ttl=10**6).authz_ttl        # never beyond 24 h (S/MIME BR §3.2.2.4)
    86400.0
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

DAY = 86400.0


@dataclass
class Settings:
    base_url: str = ""                       # public URL of the HTTP listener (CRL/AIA URLs in certificates)
    validity_days: int | None = None         # None: the CA directory's default (365)
    authz_ttl: float = DAY                   # orders, authorizations and challenges expire within 24 h
    nonce_ttl: float = 3600.0
    mails_per_address_per_hour: int = 5
    mails_per_account_per_hour: int = 30
    orders_per_account_per_hour: int = 300
    crl_days: int = 7
    prelint: bool = True                     # pkilint before signing (S/MIME BR §4.3.1.2)
    clock: Callable[[], float] = field(default=time.time)

    def __post_init__(self) -> None:
        self.authz_ttl = float(min(max(self.authz_ttl, 1.0), DAY))
        if self.validity_days is not None and not 1 <= self.validity_days <= 825:
            raise ValueError("validity_days must be 1..825")
