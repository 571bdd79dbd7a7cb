"""The directory's append-only transparency log, kept in its database.

    >>> log = TransparencyLog(engine, key, "dir.example/log")          # doctest: +SKIP
    >>> with engine.begin() as conn:                                     # doctest: +SKIP
    ...     index = log.append(conn, event("publish", label, sha, now))

Every publish, unpublish, preference and revocation is a leaf (canonical JSON,
see :func:`event`). Appending stores the leaf's hash and the hash of every
perfect subtree it completes, then signs a checkpoint for the new size; all in
the caller's transaction, serialised on the log head row, so any number of app
processes append to one history. The signing key never leaves this module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Connection, Engine, insert, select, update

from autosmime.pki import tlog
from autosmime.servers.directory.rawsql import RawSql
from autosmime.servers.directory.schema import checkpoints, log_head, log_leaves, log_nodes, upsert

# Nodes of these levels and above are cached in memory (n / 2**6 of them at most; 16,000 for a million leaves).
CACHE_FROM_LEVEL = 6
CACHE_MAX = 1 << 20


def event(op: str, label: bytes, sha256_hex: str, when: int) -> dict:
    """A log event before its index is known (``append`` adds ``idx``)."""
    return {"v": 1, "op": op, "label": label.hex(), "cert": sha256_hex, "ts": when}


def encode_event(ev: dict) -> bytes:
    return json.dumps(ev, sort_keys=True, separators=(",", ":")).encode()


def node_id(level: int, index: int) -> int:
    return (level << 40) | index


class TransparencyLog:
    def __init__(self, engine: Engine, key: ed25519.Ed25519PrivateKey, origin: str) -> None:
        self.engine = engine
        self._key = key
        self.origin = origin
        self.public_key = key.public_key()
        self.sql = RawSql(engine)
        self._node_cache: dict[tuple[int, int], bytes] = {}
        with engine.begin() as conn:
            if conn.execute(select(log_head.c.size).where(log_head.c.id == 1)).first() is None:
                note = tlog.sign_checkpoint(origin, 0, tlog.EMPTY_ROOT, key).note
                conn.execute(upsert(engine, log_head).values(id=1, size=0, note=note).on_conflict_do_nothing())
        # Another process with another key or origin would sign a different history.
        with self.sql.session() as cur:
            size, note = self.head(cur)
        tlog.open_checkpoint(note, origin, self.public_key)

    # --- writing ---------------------------------------------------------------------

    def append(self, conn: Connection, ev: dict) -> int:
        """Append ``ev`` (inside the caller's transaction); returns its leaf index."""
        size = conn.execute(update(log_head).where(log_head.c.id == 1).values(size=log_head.c.size + 1)
                            .returning(log_head.c.size)).scalar_one()
        index = size - 1
        data = encode_event({**ev, "idx": index})
        conn.execute(insert(log_leaves).values(idx=index, data=data, label=bytes.fromhex(ev["label"])))
        cur = conn.connection.cursor()  # the same transaction, for the node reads
        h = tlog.leaf_hash(data)
        level, i = 0, index
        rows = [{"id": node_id(0, index), "hash": h}]
        while i & 1:  # this leaf completes perfect subtrees up the right edge
            left = self.nodes(cur, [(level, i - 1)])[(level, i - 1)]
            h = tlog.node_hash(left, h)
            level, i = level + 1, i >> 1
            rows.append({"id": node_id(level, i), "hash": h})
        conn.execute(insert(log_nodes), rows)
        parts = tlog.perfect_parts(0, size)
        got = {**self.nodes(cur, parts[:-1]), parts[-1]: h}
        root = tlog.fold_parts([got[p] for p in parts])
        note = tlog.sign_checkpoint(self.origin, size, root, self._key).note
        conn.execute(update(log_head).where(log_head.c.id == 1).values(note=note))
        conn.execute(insert(checkpoints).values(size=size, note=note, created=int(time.time())))
        return index

    # --- reading ---------------------------------------------------------------------

    def head(self, cur: Any) -> tuple[int, str]:
        """(size, signed note) of the latest checkpoint, read now (lookups read it with their rows instead)."""
        return self.sql.head(cur)

    def checkpoint_note(self, conn: Connection, size: int) -> str | None:
        return conn.execute(select(checkpoints.c.note).where(checkpoints.c.size == size)).scalar()

    def nodes(self, cur: Any, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Stored perfect subtree hashes by (level, index), read on a DB-API cursor.

        A perfect subtree's hash never changes once written (the log only grows), so the upper levels,
        which every proof shares, are kept in memory; only the lowest CACHE_FROM_LEVEL levels are read.
        """
        found: dict[tuple[int, int], bytes] = {}
        ids: dict[int, tuple[int, int]] = {}
        cache = self._node_cache
        for key in keys:
            h = cache.get(key) if key[0] >= CACHE_FROM_LEVEL else None
            if h is None:
                ids[node_id(*key)] = key
            else:
                found[key] = h
        if ids:
            for i, h in self.sql.nodes(cur, list(ids)).items():
                key = ids[i]
                found[key] = h
                if key[0] >= CACHE_FROM_LEVEL and len(cache) < CACHE_MAX:
                    cache[key] = h
        return found

    def proofs(self, cur: Any, indexes: Sequence[int], size: int) -> list[list[bytes]]:
        """Inclusion proofs of several leaves in the tree of ``size``, from one query."""
        wanted = [tlog.inclusion_ranges(i, size) for i in indexes]
        keys = {p for ranges in wanted for a, b in ranges for p in tlog.perfect_parts(a, b)}
        got = self.nodes(cur, list(keys))
        return [tlog.ranges_hashes(ranges, lambda lv, ix: got[(lv, ix)]) for ranges in wanted]

    def consistency(self, cur: Any, old: int, new: int) -> list[bytes]:
        ranges = tlog.consistency_ranges(old, new)
        keys = {p for a, b in ranges for p in tlog.perfect_parts(a, b)}
        got = self.nodes(cur, list(keys))
        return tlog.ranges_hashes(ranges, lambda lv, ix: got[(lv, ix)])

    def leaves_for(self, conn: Connection, label: bytes) -> list[tuple[int, bytes]]:
        rows = conn.execute(select(log_leaves.c.idx, log_leaves.c.data).where(log_leaves.c.label == label)
                            .order_by(log_leaves.c.idx))
        return [(int(r[0]), bytes(r[1])) for r in rows]
