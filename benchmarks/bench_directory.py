"""Key directory lookups per second per server core, with proofs, against a trivial endpoint on the same server.

    $ python3 benchmarks/bench_directory.py                    # SQLite and PostgreSQL, 1,000 and 1,000,000 certificates
    $ python3 benchmarks/bench_directory.py --sizes 1000 --backends sqlite --seconds 5

One directory process (uvicorn, one worker: one server core) on loopback; a
load generator in this process keeps 16 keep-alive HTTP/1.1 connections busy
with ``GET /v1/certs/by-email/<random published address>`` (every answer a 200
with the certificate, its status, its inclusion proof and the checkpoint; each
request also pays its two rate-limit counters in the database). The server's
CPU time is read from /proc before and after, so "per core" is lookups per
server CPU second. The bound is ``GET /healthz`` (plain Starlette, no database)
measured the same way, same server, same run: ratio = lookups/s per core ÷
healthz/s per core.

Populating: 20 certificates are published through the real API (mail token
skipped by the fast path, possession proven); the rest are filler rows written
straight into the tables (distinct addresses and certificate names, one real
certificate's DER, a real log: every leaf is an event, every perfect subtree
hash is computed), so the tree has the full size and proofs have full depth.

The server memoises its answers (autosmime.servers.directory.service.Answers,
validated against the database on every lookup); a warm-up asks for every
sampled address once, so the figures are its steady state. ``--answer-cache 0``
turns the memo off: every lookup then reads the certificate, the leaf and the
proof nodes and builds its JSON, the cost of a first lookup.

Targets (issue 12): >= 3,000 lookups/s per core with proofs, p99 <= 25 ms at 16
connections, and the 1,000,000-certificate rate within 20 % of the 1,000 one.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

RESULTS_ENV = "AUTOSMIME_BENCH_RESULTS"
CONNECTIONS = 16
ORIGIN = "autosmime-directory"  # the Config default the served directory signs with
REAL = 20


# --- the server process ---------------------------------------------------------------


def serve(db: str, port: int, ca_pem: str, answer_cache: int) -> None:
    from autosmime.pki.keys import load_certificates
    from autosmime.servers.directory.run import serve as run
    from autosmime.servers.directory.service import Config, Limits

    ca = load_certificates(Path(ca_pem).read_bytes())
    big = (10 ** 9, 60)
    config = Config(db=db, trust=ca, smtp=None, fast_path_cas=ca, crl_interval=0, answer_cache=answer_cache,
                    limits=Limits(lookups_per_client=big, lookups_per_address=big, writes_per_client=big))
    run(config, "127.0.0.1", port)


# --- populating -------------------------------------------------------------------------


def bulk(engine, table: str, columns: tuple[str, ...], rows) -> None:  # type: ignore[no-untyped-def]
    """Millions of rows fast: COPY on PostgreSQL, executemany on sqlite3 (both on the raw driver connection)."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "sqlite":
            cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
        else:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def populate(url: str, db: str, total: int, tmp: Path, pki) -> list[str]:  # type: ignore[no-untyped-def]
    """Publish REAL certificates through the API and ``total - REAL`` filler rows; returns every address."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from sqlalchemy import insert, select, update

    from autosmime.exchange.client import DirectoryClient
    from autosmime.exchange.proofs import answer_challenge
    from autosmime.pki import tlog
    from autosmime.pki.profiles import make_mailbox_cert, new_key
    from autosmime.servers.directory.schema import certs, checkpoints, log_head, log_nodes, meta, open_engine
    from autosmime.servers.directory.translog import encode_event, event, node_id

    ca_key, ca = pki
    addresses = []
    with DirectoryClient(url) as client:
        for i in range(REAL):
            address = f"real{i}@bench.test"
            key = new_key("ec")
            cert = make_mailbox_cert(address, key.public_key(), ca_key, ca)
            pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, ca)).decode()
            challenge = client.publish(pem)
            client.confirm("publish", challenge["request"], proof=answer_challenge(challenge, key, cert))
            addresses.append(address)
    engine = open_engine(db, create=False)
    with engine.connect() as conn:
        size = conn.execute(select(log_head.c.size)).scalar_one()
        der = conn.execute(select(certs.c.der)).first()[0]
        # Every perfect subtree hash so far, to continue the tree.
        level0 = [bytes(h) for (h,) in conn.execute(select(log_nodes.c.hash).where(log_nodes.c.id < (1 << 40))
                                                     .order_by(log_nodes.c.id))]
    filler = total - REAL
    now = int(time.time())
    hashes = list(level0)
    leaves: list[tuple] = []
    for j in range(filler):
        index = size + j
        address = f"user{j}@bench.test"
        # address_label without normalisation: these addresses are already normal.
        label = hashlib.sha256(b"smimedir/label/v1" + address.encode()).digest()
        data = encode_event({**event("publish", label, f"{j:064x}", now), "idx": index})
        leaves.append((index, data, label))
        hashes.append(tlog.leaf_hash(data))
        addresses.append(address)
    n = size + filler
    nodes: list[tuple] = []
    level, layer = 0, hashes
    while layer:  # every perfect subtree not already stored (the API stored those inside the first ``size`` leaves)
        nodes.extend((node_id(level, i), h) for i, h in enumerate(layer) if (i + 1) << level > size)
        layer = [tlog.node_hash(layer[i], layer[i + 1]) for i in range(0, len(layer) - 1, 2)]
        level += 1
    bulk(engine, "log_leaves", ("idx", "data", "label"), leaves)
    bulk(engine, "certs", ("sha256", "der", "chain", "not_before", "not_after", "status", "checked_at", "issuers"),
         ((f"{j:064x}", der, b"", now - 300, now + 86400 * 365, "good", now, "[]") for j in range(filler)))
    bulk(engine, "bindings", ("address", "sha256", "published", "preferred", "leaf_index", "created"),
         ((f"user{j}@bench.test", f"{j:064x}", 1, 0, size + j, now) for j in range(filler)))
    bulk(engine, "log_nodes", ("id", "hash"), nodes)
    with engine.begin() as conn:
        # A checkpoint for the full size, signed by the directory's own key (kept in its database).
        key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(conn.execute(select(meta.c.value)).scalar_one()))
        ids = [node_id(lv, ix) for lv, ix in tlog.perfect_parts(0, n)]
        got = dict(conn.execute(select(log_nodes.c.id, log_nodes.c.hash).where(log_nodes.c.id.in_(ids))).all())
        note = tlog.sign_checkpoint(ORIGIN, n, tlog.fold_parts([bytes(got[i]) for i in ids]), key).note
        conn.execute(update(log_head).values(size=n, note=note))
        conn.execute(insert(checkpoints).values(size=n, note=note, created=now))
    engine.dispose()
    return addresses


# --- the load generator -----------------------------------------------------------------


async def _worker(port: int, paths: list[str], stop: float, latencies: list[float], errors: list[int],
                  once: bool = False) -> None:
    """Requests on one keep-alive connection: random paths until ``stop``, or each path once."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    todo = iter(paths)
    try:
        while time.perf_counter() < stop or once:
            path = next(todo, None) if once else random.choice(paths)
            if path is None:
                break
            t0 = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(int(head[9:12]))
    finally:
        writer.close()


def warm(port: int, paths: list[str]) -> None:
    async def main() -> None:
        shares = [paths[i::CONNECTIONS] for i in range(CONNECTIONS)]
        await asyncio.gather(*(_worker(port, share, 0.0, [], [], once=True) for share in shares if share))

    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port: int, pid: int, paths: list[str], seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> float:
        stop = time.perf_counter() + seconds
        start = time.perf_counter()
        await asyncio.gather(*(_worker(port, paths, stop, latencies, errors) for _ in range(CONNECTIONS)))
        return time.perf_counter() - start

    cpu0 = cpu_seconds(pid)
    wall = asyncio.run(main())
    cpu = cpu_seconds(pid) - cpu0
    latencies.sort()
    n = len(latencies)
    return {"requests": n, "wall": wall, "cpu": cpu, "per_core": n / cpu if cpu else 0.0, "per_s": n / wall,
            "p50_ms": latencies[n // 2] * 1000, "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
            "errors": len(errors)}


# --- one configuration ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_one(backend: str, total: int, seconds: float, tmp: Path, pki, pg,  # type: ignore[no-untyped-def]
            answer_cache: int) -> dict:
    from cryptography.hazmat.primitives import serialization

    db = f"sqlite:///{tmp}/bench-{total}.db" if backend == "sqlite" else pg.url(f"bench_{total}")
    ca_pem = tmp / "ca.pem"
    ca_pem.write_bytes(pki[1].public_bytes(serialization.Encoding.PEM))
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", db, str(port), str(ca_pem), str(answer_cache)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"directory did not start: {proc.stderr.read().decode() if proc.stderr else ''}") from None
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        addresses = populate(url, db, total, tmp, pki)
        print(f"  {backend}, {total:,} certificates: populated in {time.perf_counter() - t0:.0f} s", flush=True)
        paths = [f"/v1/certs/by-email/{a}" for a in random.sample(addresses, min(len(addresses), 5000))]
        # Warm-up: every sampled address once, so each configuration is measured in its steady state (with the
        # memo on, every answer memoised; the 1,000-certificate run has 1,000 addresses, the larger ones 5,000).
        warm(port, paths)
        best_lookup = best_health = None
        for _ in range(3):  # in turns, best against best (see benchmarks/README.md)
            health = load(port, proc.pid, ["/healthz"], seconds)
            lookup = load(port, proc.pid, paths, seconds)
            if best_health is None or health["per_core"] > best_health["per_core"]:
                best_health = health
            if best_lookup is None or lookup["per_core"] > best_lookup["per_core"]:
                best_lookup = lookup
        assert best_lookup is not None and best_health is not None
        if best_lookup["errors"]:
            raise RuntimeError(f"{best_lookup['errors']} lookups did not answer 200")
        return {"backend": backend, "total": total, "lookup": best_lookup, "health": best_health}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def emit(rows: list[dict]) -> None:
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"benchmark": "directory", **r}) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", nargs=4, metavar=("DB", "PORT", "CA", "MEMO"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--answer-cache", type=int, default=8192,
                        help="answers the server memoises (0: every lookup builds its answer, the cold cost)")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2], int(args.serve[3]))
        return 0
    from autosmime.pki.profiles import make_ca, new_key

    pki = make_ca("Bench CA", new_key("ec"))
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    pg = None
    with tempfile.TemporaryDirectory(prefix="autosmime-bench-dir-") as tmp:
        for backend in args.backends.split(","):
            if backend == "postgres":
                from autosmime.devstack.postgres import PostgresCluster, postgres_available

                if not postgres_available():
                    print("  postgres: not installed, skipped")
                    continue
                pg = PostgresCluster.start()
            try:
                for total in sizes:
                    results.append(run_one(backend, total, args.seconds, Path(tmp), pki, pg, args.answer_cache))
            finally:
                if pg is not None:
                    pg.stop()
                    pg = None
    print(f"\n{'backend':<9} {'certs':>10} {'lookups/s/core':>15} {'healthz/s/core':>15} {'ratio':>6} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'wall/s':>8}")
    rows = []
    for r in results:
        lk, hz = r["lookup"], r["health"]
        ratio = lk["per_core"] / hz["per_core"]
        print(f"{r['backend']:<9} {r['total']:>10,} {lk['per_core']:>15,.0f} {hz['per_core']:>15,.0f} {ratio:>6.2f} "
              f"{lk['p50_ms']:>7.1f} {lk['p99_ms']:>7.1f} {lk['per_s']:>8,.0f}")
        rows.append({"figure": f"{r['backend']} {r['total']:,} certs: lookups/s per core", "value": f"{lk['per_core']:.0f}",
                     "bound": f"healthz {hz['per_core']:.0f}/s per core", "ratio": ratio, "target": ">= 3000/s",
                     "result": "PASS" if lk["per_core"] >= 3000 else "MISS"})
        rows.append({"figure": f"{r['backend']} {r['total']:,} certs: p99 at {CONNECTIONS} connections",
                     "value": f"{lk['p99_ms']:.1f} ms", "bound": f"healthz p99 {hz['p99_ms']:.1f} ms",
                     "ratio": lk["p99_ms"] / hz["p99_ms"] if hz["p99_ms"] else None, "target": "<= 25 ms",
                     "result": "PASS" if lk["p99_ms"] <= 25 else "MISS"})
    for backend in {r["backend"] for r in results}:
        by_size = {r["total"]: r["lookup"]["per_core"] for r in results if r["backend"] == backend}
        if len(by_size) >= 2:
            small, large = by_size[min(by_size)], by_size[max(by_size)]
            rows.append({"figure": f"{backend}: {max(by_size):,} vs {min(by_size):,} certs", "value": f"{large:.0f}",
                         "bound": f"{small:.0f}", "ratio": large / small, "target": "ratio >= 0.80",
                         "result": "PASS" if large / small >= 0.8 else "MISS"})
    emit(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
