"""Fixed-window rate limits kept in the database, shared by every app process.

    >>> retry = directory.sql.hit(cur, [(hashed("a", address), 120, 60)], now)   # doctest: +SKIP
    >>> retry is None   # under the limit; else the seconds to wait (Retry-After)

The counting is one upsert per request for every key at once (RawSql.hit).
Keys for looked-up addresses are hashed so the table never lists who was
looked up.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, delete

from autosmime.servers.directory.schema import ratelimits


def hashed(kind: str, value: str) -> str:
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def sweep(conn: Connection, now: int, longest_window: int = 86400) -> None:
    """Forget windows that ended (any key idle for a day is gone)."""
    conn.execute(delete(ratelimits).where(ratelimits.c.window < now - longest_window))
