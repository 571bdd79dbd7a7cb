"""When to renew: the CA's ARI window (RFC 9773) if it gives one, else at 2/3 of the lifetime.

    >>> import datetime as dt
    >>> from autosmime.enroll.renewal import renewal_time
    >>> start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> renewal_time(start, start + dt.timedelta(days=300), None, seed=b"x") == start + dt.timedelta(days=200)
    True

certbot's rule: 2/3 of the lifetime, half for certificates shorter than ten days
(shared/research/certificate-automation.md §9). Within an ARI window the time is
spread uniformly (so a fleet does not renew at one instant) but fixed per
certificate (``seed``), so asking twice gives one answer instead of flapping.
"""

from __future__ import annotations

import datetime as _dt
import hashlib


def default_renewal_time(not_before: _dt.datetime, not_after: _dt.datetime) -> _dt.datetime:
    """2/3 of the way through the validity (1/2 if it is under ten days)."""
    lifetime = not_after - not_before
    fraction = 0.5 if lifetime < _dt.timedelta(days=10) else 2 / 3
    return not_before + lifetime * fraction


def renewal_time(not_before: _dt.datetime, not_after: _dt.datetime,
                 window: tuple[_dt.datetime, _dt.datetime] | None, *, seed: bytes) -> _dt.datetime:
    """The moment to renew: a point in the ARI window chosen by ``seed``, else the default."""
    if window is None:
        return default_renewal_time(not_before, not_after)
    start, end = window
    if end <= start:
        return start
    fraction = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") / 2**64
    return start + (end - start) * fraction


def renewal_due(not_before: _dt.datetime, not_after: _dt.datetime,
                window: tuple[_dt.datetime, _dt.datetime] | None, *, seed: bytes,
                now: _dt.datetime | None = None) -> tuple[bool, _dt.datetime]:
    """(due now?, when) for a certificate valid ``not_before``..``not_after``."""
    when = renewal_time(not_before, not_after, window, seed=seed)
    now = now or _dt.datetime.now(_dt.UTC)
    return now >= when or now >= not_after, when
