"""Run every benchmark, each in its own interpreter, and print their figures.

    $ python3 benchmarks/run.py                 # every benchmarks/bench_*.py
    $ python3 benchmarks/run.py engine          # only those whose name contains "engine"

Each ``bench_*.py`` prints its own table as it runs. Benchmarks that also
append JSON rows (figure, value, bound, ratio, target, result) to the file
named by ``$AUTOSMIME_BENCH_RESULTS`` get them repeated in one summary at the
end. Exit status: 0 when every benchmark ran (a MISS is a finding, not a
failure), 1 when any crashed or timed out, 2 when no benchmark matched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_ENV = "AUTOSMIME_BENCH_RESULTS"
TIMEOUT_SECONDS = 600  # one hung benchmark must not hang the run


def discover(filters: list[str], directory: Path = HERE) -> list[Path]:
    found = sorted(directory.glob("bench_*.py"))
    if filters:
        found = [p for p in found if any(f in p.stem for f in filters)]
    return found


def run_one(path: Path, results_file: Path) -> tuple[str, float]:
    env = {**os.environ, RESULTS_ENV: str(results_file), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    try:
        # Output goes straight to ours, so progress shows while it runs.
        rc = subprocess.run([sys.executable, str(path)], cwd=HERE.parent, env=env,
                            timeout=TIMEOUT_SECONDS).returncode
    except subprocess.TimeoutExpired:
        return f"TIMEOUT after {TIMEOUT_SECONDS} s", time.perf_counter() - start
    return ("ok" if rc == 0 else f"CRASHED (exit {rc})"), time.perf_counter() - start


def read_rows(results_file: Path) -> list[dict]:
    rows = []
    if results_file.exists():
        for line in results_file.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a benchmark killed mid-write; its status line already says so
    return rows


def print_summary(statuses: list[tuple[str, str, float]], rows: list[dict]) -> None:
    print("\n== summary ==")
    for name, status, seconds in statuses:
        print(f"{name:<24} {status:<24} {seconds:6.1f} s")
    if rows:
        print()
        keys = ("figure", "value", "bound", "ratio", "target", "result")
        cells = [keys] + [tuple(
            f"{r.get(k):.2f}" if k == "ratio" and isinstance(r.get(k), (int, float)) else str(r.get(k, ""))
            for k in keys) for r in rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
        for i, c in enumerate(cells):
            print("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
            if i == 0:
                print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the autosmime benchmarks.")
    parser.add_argument("only", nargs="*", help="run only benchmarks whose name contains one of these")
    parser.add_argument("--dir", type=Path, default=HERE, help=argparse.SUPPRESS)  # for the tests
    args = parser.parse_args(argv)
    benches = discover(args.only, args.dir)
    if not benches:
        print("no benchmark matched", file=sys.stderr)
        return 2
    statuses: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="autosmime-bench-run-") as tmp:
        results_file = Path(tmp) / "results.jsonl"
        for path in benches:
            print(f"== {path.name} ==", flush=True)
            status, seconds = run_one(path, results_file)
            statuses.append((path.name, status, seconds))
        rows = read_rows(results_file)
    print_summary(statuses, rows)
    return 0 if all(s == "ok" for _, s, _ in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
