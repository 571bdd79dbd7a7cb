"""Fixed-window rate limits kept in the database, shared by every app process.

    >>> retry = limiter.hit(conn, [("ip:127.0.0.1", 600, 60)], now)   # doctest: +SKIP
    >>> retry is None   # under the limit; else the seconds to wait (Retry-After)

One upsert per request counts every key at once. Keys for looked-up
addresses are hashed so the table never lists who was looked up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import Connection, Engine, case, delete

from autosmime.servers.directory.schema import ratelimits, upsert

Limit = tuple[str, int, int]  # key, allowed per window, window seconds


def hashed(kind: str, value: str) -> str:
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


class RateLimiter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def hit(self, conn: Connection, limits: Sequence[Limit], now: int) -> int | None:
        """Count one request against each limit; None if all allow it, else the longest Retry-After."""
        if not limits:
            return None
        rows = [{"key": k, "window": now - now % w, "count": 1} for k, _, w in limits]  # window start
        stmt = upsert(self.engine, ratelimits).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=[ratelimits.c.key],
            set_={"count": case((ratelimits.c.window == stmt.excluded.window, ratelimits.c.count + 1), else_=1),
                  "window": stmt.excluded.window},
        ).returning(ratelimits.c.key, ratelimits.c.count)
        counts = dict(conn.execute(stmt).all())
        retry = 0
        for key, allowed, window in limits:
            if counts.get(key, 0) > allowed:
                retry = max(retry, window - now % window)
        return retry or None

    def sweep(self, conn: Connection, now: int, longest_window: int = 86400) -> None:
        """Forget windows that ended (any key idle for a day is gone)."""
        conn.execute(delete(ratelimits).where(ratelimits.c.window < now - longest_window))
