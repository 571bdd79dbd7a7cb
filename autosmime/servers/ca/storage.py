"""All CA state in one database, through SQLAlchemy Core: SQLite by default, PostgreSQL by URL.

    >>> from autosmime.servers.ca.storage import Store
    >>> store = Store("sqlite://")            # in memory; files get WAL mode
    >>> store.new_nonce(now=0.0, ttl=60) != store.new_nonce(now=0.0, ttl=60)
    True

Any number of ``ca serve`` processes may share one PostgreSQL database: no
state lives in a process. Every change that must happen once is a single
conditional UPDATE or DELETE whose row count decides (a nonce is consumed by
the DELETE that removes it; the challenge mail is claimed by the UPDATE that
sets ``mail_claimed``; a challenge turns valid in the same statement that
records the second of the two events it waits for). Times are POSIX seconds
(floats) so both databases compare them the same way.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from autosmime.errors import CAServerError

metadata = sa.MetaData()

nonces = sa.Table(
    "acme_nonces", metadata,
    sa.Column("value", sa.String(64), primary_key=True),
    sa.Column("expires", sa.Float, nullable=False, index=True),
)

accounts = sa.Table(
    "acme_accounts", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("thumbprint", sa.String(64), nullable=False, unique=True),
    sa.Column("jwk", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("contact", sa.Text, nullable=False, default="[]"),
    sa.Column("created", sa.Float, nullable=False),
)

orders = sa.Table(
    "acme_orders", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(32), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("identifiers", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False, index=True),
    sa.Column("expires", sa.Float, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("cert_id", sa.String(64)),
    sa.Column("replaces", sa.String(200)),
)

authzs = sa.Table(
    "acme_authzs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("order_id", sa.String(32), nullable=False, index=True),
    sa.Column("account_id", sa.String(32), nullable=False, index=True),
    sa.Column("identifier", sa.String(320), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
    sa.Column("token1", sa.String(64), nullable=False, unique=True),
    sa.Column("token2", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(200), nullable=False, unique=True),
    sa.Column("mail_claimed", sa.Float),     # when a process took on sending the challenge mail
    sa.Column("mail_sent", sa.Float, index=True),
    sa.Column("client_posted", sa.Float),
    sa.Column("reply_ok", sa.Float),
    sa.Column("validated", sa.Float),
    sa.Column("error", sa.Text),
)

certificates = sa.Table(
    "acme_certificates", metadata,
    sa.Column("id", sa.String(64), primary_key=True),          # serial, lower-case hex
    sa.Column("account_id", sa.String(32), nullable=False, index=True),
    sa.Column("order_id", sa.String(32), nullable=False),
    sa.Column("ari_id", sa.String(200), nullable=False, unique=True),
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("not_before", sa.Float, nullable=False),
    sa.Column("not_after", sa.Float, nullable=False),
    sa.Column("revoked", sa.Float),
    sa.Column("reason", sa.Integer),
)

crls = sa.Table(
    "acme_crls", metadata,
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("this_update", sa.Float, nullable=False),
    sa.Column("der", sa.LargeBinary, nullable=False),
)

audit = sa.Table(
    "acme_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("result", sa.String(40), nullable=False),
    sa.Column("authz_id", sa.String(32), index=True),
    sa.Column("account_id", sa.String(32)),
    sa.Column("identifier", sa.String(320)),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),
)


# The statements every request runs, written once (building SQLAlchemy expressions per call costs more
# than SQLite's work on these).
_CONSUME_NONCE = sa.text("DELETE FROM acme_nonces WHERE value = :v AND expires > :now")
_INSERT_NONCE = sa.text("INSERT INTO acme_nonces (value, expires) VALUES (:v, :e)")
_SELECT_ACCOUNT = sa.text("SELECT id, thumbprint, jwk, status, contact, created FROM acme_accounts WHERE id = :id")


def new_id(nbytes: int = 12) -> str:
    return secrets.token_urlsafe(nbytes)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Store:
    """The database behind one CA; thread-safe (one short transaction per call)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        self.url = url
        try:
            if url.startswith("sqlite"):
                memory = url in ("sqlite://", "sqlite:///:memory:")
                kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
                if memory:
                    kwargs["poolclass"] = sa.pool.StaticPool
                self.engine: Engine = sa.create_engine(url, **kwargs)
                if not memory:
                    sa.event.listen(self.engine, "connect", _sqlite_pragmas)
                self.is_sqlite = True
            else:
                self.engine = sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
                self.is_sqlite = False
            if create:
                self._create()
        except sa.exc.SQLAlchemyError as e:
            raise CAServerError(f"cannot open the CA database: {type(e).__name__}: {e.args[0] if e.args else ''}") from None
        # SQLite allows one writer; serialising writers here avoids busy waits inside one process.
        self._write_lock = threading.Lock() if self.is_sqlite else None

    def _create(self) -> None:
        try:
            metadata.create_all(self.engine)
        except sa.exc.IntegrityError:
            metadata.create_all(self.engine)   # another process created them at the same moment
        except sa.exc.ProgrammingError:
            metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One transaction (committed at the end of the block, rolled back on error)."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
        else:
            with self._write_lock, self.engine.begin() as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    # --- nonces --------------------------------------------------------------

    def new_nonce(self, *, now: float, ttl: float) -> str:
        value = secrets.token_urlsafe(16)
        with self.tx() as c:
            c.execute(_INSERT_NONCE, {"v": value, "e": now + ttl})
        return value

    def consume_nonce(self, value: str, *, now: float) -> bool:
        """True exactly once for a nonce this CA issued and that has not expired."""
        with self.tx() as c:
            n = c.execute(_CONSUME_NONCE, {"v": value, "now": now}).rowcount
        return n == 1

    def consume_and_renew_nonce(self, value: str, *, now: float, ttl: float) -> tuple[bool, str]:
        """Consume ``value`` (True exactly once) and issue the next nonce, in one transaction."""
        fresh = secrets.token_urlsafe(16)
        with self.tx() as c:
            n = c.execute(_CONSUME_NONCE, {"v": value, "now": now}).rowcount
            c.execute(_INSERT_NONCE, {"v": fresh, "e": now + ttl})
            if secrets.randbelow(1000) == 0:     # now and then, forget expired nonces
                c.execute(nonces.delete().where(nonces.c.expires <= now))
        return n == 1, fresh

    def account(self, account_id: str) -> dict[str, Any] | None:
        with self.read() as c:
            row = c.execute(_SELECT_ACCOUNT, {"id": account_id}).first()
        return dict(row._mapping) if row is not None else None

    def purge(self, *, now: float) -> None:
        """Drop expired nonces (called now and then; correctness never depends on it)."""
        with self.tx() as c:
            c.execute(nonces.delete().where(nonces.c.expires <= now))

    # --- audit ----------------------------------------------------------------

    def audit(self, c: Connection | None, *, now: float, event: str, result: str, authz_id: str | None = None,
              account_id: str | None = None, identifier: str | None = None, **detail: Any) -> None:
        row = dict(at=now, event=event, result=result, authz_id=authz_id, account_id=account_id,
                   identifier=identifier, detail=json.dumps(detail, sort_keys=True, default=str))
        if c is not None:
            c.execute(audit.insert().values(**row))
        else:
            with self.tx() as c2:
                c2.execute(audit.insert().values(**row))

    def audit_rows(self, authz_id: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(audit).order_by(audit.c.id)
        if authz_id is not None:
            q = q.where(audit.c.authz_id == authz_id)
        with self.read() as c:
            return [dict(r._mapping) | {"detail": json.loads(r.detail)} for r in c.execute(q)]

    def count_certificates(self) -> int:
        with self.read() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(certificates)).scalar() or 0)
