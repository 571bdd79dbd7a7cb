"""The directory's database: tables, and an engine for SQLite (WAL) or PostgreSQL.

    >>> from autosmime.servers.directory.schema import open_engine
    >>> engine = open_engine("sqlite:///:memory:")   # doctest: +SKIP

Everything a request needs lives here, nothing in an app process: pending
challenges and their tokens, rate-limit windows, the log's leaves and node
hashes, the signing key when no key file is given. So any number of app
processes can serve one PostgreSQL database.

``log_nodes`` holds the hash of every perfect subtree of the log (id =
level << 40 | index), written once when the subtree completes; proofs are read
from it with one indexed query (see autosmime.pki.tlog).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url

from autosmime.errors import UsageError

metadata = MetaData()

# A 64-bit integer key; in SQLite spelled INTEGER so it is the table's rowid (one B-tree probe per lookup, not an
# index probe and then a table probe). SQLite's INTEGER is 64-bit anyway.
RowId = BigInteger().with_variant(Integer, "sqlite")

# One row per certificate ever accepted; ``chain`` is the PEM of it and its validated intermediates (for CRL checks).
certs = Table(
    "certs", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("der", LargeBinary, nullable=False),
    Column("chain", LargeBinary, nullable=False),
    Column("not_before", BigInteger, nullable=False),
    Column("not_after", BigInteger, nullable=False),
    Column("status", String(8), nullable=False),          # good | revoked | unknown
    Column("checked_at", BigInteger, nullable=False),
    Column("crl_url", Text),
    Column("issuers", Text, nullable=False),              # JSON list of the intermediates' base64 DER, as served
)

CERTS_LOOKUP = Index("certs_lookup", certs.c.sha256, certs.c.not_before, certs.c.not_after, certs.c.status, certs.c.checked_at)

# Address -> certificate, with the log leaf that made the binding public.
bindings = Table(
    "bindings", metadata,
    Column("address", String(254), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("published", Integer, nullable=False),         # 1 while listed, 0 after unpublish
    Column("preferred", Integer, nullable=False, default=0),
    Column("leaf_index", BigInteger, nullable=False),
    Column("created", BigInteger, nullable=False),
)
Index("bindings_by_sha", bindings.c.sha256)
# Covering indexes for what every lookup reads (rawsql.LOOKUP_COLUMNS): one index probe per table instead of an
# index probe plus a probe into the large table rows, which with a million certificates mostly miss the cache.
BINDINGS_LOOKUP = Index("bindings_lookup", bindings.c.address, bindings.c.published, bindings.c.sha256, bindings.c.preferred,
      bindings.c.leaf_index)

log_leaves = Table(
    "log_leaves", metadata,
    Column("idx", RowId, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
    Column("label", LargeBinary(32), nullable=False),
)
Index("log_leaves_by_label", log_leaves.c.label)

log_nodes = Table(
    "log_nodes", metadata,
    Column("id", RowId, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

# Row id=1 is the log head: appenders serialise on its UPDATE (a row lock in PostgreSQL, the write lock in SQLite).
log_head = Table(
    "log_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("note", Text, nullable=False),
)

checkpoints = Table(
    "checkpoints", metadata,
    Column("size", RowId, primary_key=True, autoincrement=False),
    Column("note", Text, nullable=False),
    Column("created", BigInteger, nullable=False),
)

# A publish / unpublish / prefer request waiting for its mailbox token and possession proof.
pending = Table(
    "pending", metadata,
    Column("id", String(32), primary_key=True),
    Column("op", String(10), nullable=False),
    Column("address", String(254), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("token_hash", LargeBinary(32)),                # None: no mail round trip needed (fast path, PoP unpublish)
    Column("nonce", LargeBinary(32), nullable=False),
    Column("chain", LargeBinary),                         # publish: leaf then issuers, DER concatenated
    Column("status", String(8)),
    Column("crl_url", Text),
    Column("needs_pop", Integer, nullable=False),
    Column("expires", BigInteger, nullable=False),
)
Index("pending_by_expiry", pending.c.expires)

ratelimits = Table(
    "ratelimits", metadata,
    Column("key", String(300), primary_key=True),
    Column("window", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
)

meta = Table(
    "meta", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)


def engine_url(db: str) -> str:
    """A SQLAlchemy URL for ``--db``: sqlite:///path, postgresql://..., or a bare file path (SQLite)."""
    if "://" not in db:
        return f"sqlite:///{db}"
    url = make_url(db)
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if url.drivername.startswith(("sqlite", "postgresql+psycopg")):
        return db
    raise UsageError(f"unsupported database URL {url.drivername}:// (use sqlite:/// or postgresql://)")


def open_engine(db: str, *, create: bool = True) -> Engine:
    """An engine for ``db`` with the tables created; SQLite in WAL mode with a busy timeout."""
    url = engine_url(db)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            # Lookups touch four B-trees at random places; with a million certificates the default 2 MB page
            # cache misses on most of them. Memory-mapped reads share the OS page cache between connections.
            cur.execute("PRAGMA mmap_size=1073741824")
            cur.execute("PRAGMA cache_size=-32768")
            cur.close()
    else:
        # No ping before each use (a round trip per lookup): a connection found dead is dropped when it fails
        # (SQLAlchemy for Core statements, RawSql.session for the raw ones), and lookups retry once.
        engine = create_engine(url, pool_size=8, max_overflow=8)
    if create:
        metadata.create_all(engine)
        # create_all makes a missing table with its indexes, not an index added later to an existing table.
        for index in (BINDINGS_LOOKUP, CERTS_LOOKUP):
            index.create(engine, checkfirst=True)
    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def upsert(engine: Engine, table: Table):
    """The dialect's INSERT with ON CONFLICT support (SQLite and PostgreSQL spell it the same)."""
    if is_sqlite(engine):
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert(table)
