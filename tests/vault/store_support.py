"""Helpers for the vault tests (loaded by path; no tests here): a real CA and mailbox keys."""

from __future__ import annotations

import datetime as dt
import functools

from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key


@functools.cache
def issuing_ca(kind: str = "ec"):
    return make_ca(f"Vault Test CA {kind}", new_key(kind))


def mailbox(email: str, kind: str = "ec", *, days_ago: int = 0, days: int = 365, ca_kind: str = "ec"):
    """(key, cert, chain) for ``email``; ``days_ago`` moves notBefore into the past."""
    ca_key, ca = issuing_ca(ca_kind)
    key = new_key(kind)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=days_ago, minutes=5)
    cert = make_mailbox_cert(email, key.public_key(), ca_key, ca, not_before=start, days=days)
    return key, cert, (ca,)
