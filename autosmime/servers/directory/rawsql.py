"""The read path in plain DB-API: what every lookup runs, without SQLAlchemy's per-statement machinery.

    >>> sql = RawSql(engine)                                   # doctest: +SKIP
    >>> with sql.session() as cur:                             # doctest: +SKIP
    ...     rows = sql.lookup(cur, "address", "bob@example.test")

SQLAlchemy Core built and executed a statement in ~90 us; the same query on the
driver's cursor costs ~15 us, and a lookup runs two: the rate limits, and the
certificates with the log head they are proven against (one statement, so one
snapshot: the head is never older than the leaves). The certificates' DER, the
leaves and the proof's nodes are read only when the answer is not in the
directory's memo (service.Answers). So reads and the rate-limit upsert are plain
SQL that SQLite and PostgreSQL both accept, with the driver's placeholder
("?" for sqlite3, "%s" for psycopg); writes stay in Core (service.py). A cursor
of a Core connection (``conn.connection.cursor()``) works here too, inside
that connection's transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine

T = TypeVar("T")
Limit = tuple[str, int, int]  # key, allowed per window, window seconds

# What a lookup reads every time: the small, changing columns, from covering indexes (schema.py), so a million
# certificates cost about what a thousand do. The large immutable ones (DER, issuers, leaf) are read by
# ``details`` only when the answer is not memoised.
LOOKUP_COLUMNS = ("address", "sha256", "preferred", "leaf_index", "not_before", "not_after", "status", "checked_at",
                  "size", "note")


class ConnectionLost(Exception):
    """The database connection died under a statement (it is dropped; a new one may succeed)."""


class RawSql:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        m = "?" if engine.dialect.name == "sqlite" else "%s"
        self.mark = m
        # SQLite's planner prefers the primary key's unique index to the covering one; PostgreSQL's cost model
        # picks the index-only scan by itself.
        indexed = " INDEXED BY certs_lookup" if m == "?" else ""
        select = ("SELECT b.address, b.sha256, b.preferred, b.leaf_index, c.not_before, c.not_after, c.status, "
                  f"c.checked_at, h.size, h.note FROM bindings b JOIN certs c{indexed} ON c.sha256 = b.sha256 "
                  "JOIN log_head h ON h.id = 1 WHERE b.published = 1 AND ")
        self._lookup = {"address": select + f"b.address = {m}", "sha256": select + f"b.sha256 = {m}"}
        self._head = "SELECT size, note FROM log_head WHERE id = 1"
        self._ins: dict[tuple[str, int], str] = {}
        self._upserts: dict[int, str] = {}
        self._counteds: dict[tuple[str, int], str] = {}

    @contextlib.contextmanager
    def session(self, *, autocommit: bool = False) -> Iterator[Any]:
        """A pooled DB-API cursor; its transaction is committed at the end (rolled back on error).

        ``autocommit``: on PostgreSQL each statement is its own transaction, with no BEGIN and COMMIT round
        trips (what a lookup's two statements need). A connection found dead (the server restarted) is
        dropped from the pool and the error raised; the pool does not ping before each use (schema.py).
        """
        raw = self.engine.raw_connection()
        dbapi: Any = raw.dbapi_connection
        flip = autocommit and self.mark == "%s"
        try:
            if flip:
                dbapi.autocommit = True
            cur = raw.cursor()
            try:
                yield cur
                raw.commit()
            except BaseException as e:
                if self.dead(e, dbapi, cur):
                    # The others in the pool are likely dead too (a restart): start a new pool, as SQLAlchemy
                    # does when a Core statement meets a disconnect.
                    raw.invalidate(e)
                    self.engine.dispose(close=False)
                    raise ConnectionLost(str(e)) from e
                raw.rollback()
                raise
            finally:
                cur.close()
        finally:
            if flip and not dbapi.closed:
                dbapi.autocommit = False
            raw.close()

    def dead(self, e: BaseException, dbapi: Any, cur: Any) -> bool:
        """Whether ``e`` means the database connection is lost (a new one may succeed)."""
        dialect = self.engine.dialect
        return isinstance(e, dialect.loaded_dbapi.Error) and bool(dialect.is_disconnect(e, dbapi, cur))

    def read(self, work: Callable[[Any], T]) -> T:
        """``work(cursor)`` in an autocommit session, once more on a fresh connection if the first was dead."""
        try:
            with self.session(autocommit=True) as cur:
                return work(cur)
        except ConnectionLost:
            pass
        with self.session(autocommit=True) as cur:
            return work(cur)

    def commit(self, cur: Any) -> None:
        cur.connection.commit()

    def lookup(self, cur: Any, column: str, value: str, limits: Sequence[Limit] = (),
               now: int = 0) -> tuple[int | None, list[tuple]]:
        """Count the request against ``limits`` (see hit), then the LOOKUP_COLUMNS rows: (Retry-After, rows).

        On PostgreSQL in an autocommit session both are one statement, so one round trip: the upsert in a
        data-modifying WITH, its counts and the rows in one UNION ALL (the rows read the snapshot the statement
        started with, which is all a lookup needs). Pipeline mode would do it too, but psycopg polls the
        socket while it waits there, costing more server CPU than the extra round trip saved.
        """
        if limits and self.mark == "%s" and cur.connection.autocommit:
            cur.execute(self._counted(column, len(limits)), self._upsert(limits, now)[1] + (value,))
            counts, rows = {}, []
            for row in cur.fetchall():
                if row[0] is None:
                    rows.append(row[2:])
                else:
                    counts[row[0]] = row[1]
            return self._retry(counts, limits, now), rows
        retry = self.hit(cur, limits, now)
        if retry is not None:
            return retry, []
        cur.execute(self._lookup[column], (value,))
        return None, list(cur.fetchall())

    def details(self, cur: Any, shas: Sequence[str], leaves: Sequence[int]) -> tuple[dict, dict]:
        """({sha256: (der, issuers JSON)}, {leaf index: leaf data}): what never changes once written."""
        cur.execute(self._in("SELECT sha256, der, issuers FROM certs WHERE sha256", len(shas)), tuple(shas))
        found = {str(sha): (bytes(der), str(issuers)) for sha, der, issuers in cur.fetchall()}
        cur.execute(self._in("SELECT idx, data FROM log_leaves WHERE idx", len(leaves)), tuple(leaves))
        return found, {int(i): bytes(data) for i, data in cur.fetchall()}

    def _in(self, prefix: str, n: int) -> str:
        key = (prefix, n)
        sql = self._ins.get(key)
        if sql is None:
            sql = self._ins[key] = f"{prefix} IN ({', '.join([self.mark] * n)})"
        return sql

    def head(self, cur: Any) -> tuple[int, str]:
        cur.execute(self._head)
        size, note = cur.fetchone()
        return int(size), str(note)

    def nodes(self, cur: Any, ids: Sequence[int]) -> dict[int, bytes]:
        if not ids:
            return {}
        cur.execute(self._in("SELECT id, hash FROM log_nodes WHERE id", len(ids)), tuple(ids))
        return {int(i): bytes(h) for i, h in cur.fetchall()}

    def hit(self, cur: Any, limits: Sequence[Limit], now: int) -> int | None:
        """Count one request against each limit and commit; None if all allow it, else the longest Retry-After."""
        if not limits:
            return None
        cur.execute(*self._upsert(limits, now))
        counts = dict(cur.fetchall())
        cur.connection.commit()
        return self._retry(counts, limits, now)

    def _counted(self, column: str, n: int) -> str:
        key = (column, n)
        sql = self._counteds.get(key)
        if sql is None:
            upsert = self._upsert([("", 0, 1)] * n, 0)[0]
            nulls = ", ".join(["NULL"] * len(LOOKUP_COLUMNS))
            sql = self._counteds[key] = (
                f'WITH hits AS ({upsert}), found AS ({self._lookup[column]}) '
                f'SELECT "key", "count", {nulls} FROM hits UNION ALL SELECT NULL, NULL, found.* FROM found')
        return sql

    def _upsert(self, limits: Sequence[Limit], now: int) -> tuple[str, tuple]:
        n = len(limits)
        sql = self._upserts.get(n)
        if sql is None:
            # "window" and "count" quoted: WINDOW is reserved in PostgreSQL. SQLite >= 3.35 reads the same.
            values = ", ".join(f"({self.mark}, {self.mark}, 1)" for _ in range(n))
            sql = self._upserts[n] = (
                f'INSERT INTO ratelimits ("key", "window", "count") VALUES {values} ON CONFLICT ("key") DO UPDATE '
                'SET "count" = CASE WHEN ratelimits."window" = excluded."window" THEN ratelimits."count" + 1 ELSE 1 END,'
                ' "window" = excluded."window" RETURNING "key", "count"')
        params: list[object] = []
        for key, _, window in limits:
            params += [key, now - now % window]  # the window's start
        return sql, tuple(params)

    @staticmethod
    def _retry(counts: dict, limits: Sequence[Limit], now: int) -> int | None:
        retry = 0
        for key, allowed, window in limits:
            if counts.get(key, 0) > allowed:
                retry = max(retry, window - now % window)
        return retry or None
