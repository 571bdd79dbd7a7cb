"""The benchmark tools themselves: parsing, the runner's exit codes, the memory probe.

Nothing here is timed; the figures are the benchmarks' business, not the suite's.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


bench_engine = _load("bench_engine")
run = _load("run")

# The tail of `openssl speed -seconds 2 rsa2048` as OpenSSL 3.0 prints it.
SPEED_OUTPUT = """\
version: 3.0.19
built on: reproducible build, date unspecified
options: bn(64,64)
                  sign    verify    sign/s verify/s
rsa 2048 bits 0.000247s 0.000017s   4046.5  58612.1
"""


def test_parse_openssl_speed_reads_the_sign_per_second_column():
    assert bench_engine.parse_openssl_speed(SPEED_OUTPUT) == 4046.5


def test_parse_openssl_speed_rejects_output_without_the_rsa_row():
    with pytest.raises(ValueError):
        bench_engine.parse_openssl_speed(SPEED_OUTPUT.replace("rsa 2048", "rsa 4096"))


@pytest.mark.parametrize("size", [bench_engine.SMALL, 200 * 1024])
def test_message_has_the_requested_size_and_round_trips(size):
    message = bench_engine.make_message(size)
    assert size - 80 <= len(message) <= size
    ident = bench_engine.make_identity()
    opened = bench_engine.decrypt_verify(bench_engine.sign_encrypt(message, ident), ident)
    bench_engine.check_roundtrip(message, opened)
    with pytest.raises(SystemExit):
        bench_engine.check_roundtrip(message, opened[:-3] + b"xx\n")


def test_memory_probe_measures_a_fresh_process(tmp_path):
    ident = bench_engine.make_identity()
    bench_engine.write_identity(ident, tmp_path)
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
    message = bench_engine.make_message(2 * 1024 * 1024)
    (tmp_path / "sign_encrypt.in").write_bytes(message)
    # Make this (parent) process's peak far larger than the child's: the probe must not inherit it.
    ballast = bytearray(64 * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(ballast[::4096])
    m = bench_engine.peak_memory_increase("sign_encrypt", tmp_path)
    del ballast
    assert m["input"] == len(message)
    assert m["output"] > len(message)  # base64 of the ciphertext
    # The output alone is alive at the end, so the increase is at least its size.
    assert m["output"] <= m["increase"] < 60 * 1024 * 1024


def _write_bench(directory: Path, name: str, body: str) -> None:
    (directory / f"bench_{name}.py").write_text(textwrap.dedent(body))


def test_runner_collects_rows_and_exits_zero_on_miss(tmp_path, capsys):
    _write_bench(tmp_path, "ok", f"""
        import json, os
        print("own table")
        with open(os.environ[{run.RESULTS_ENV!r}], "a") as f:
            f.write(json.dumps({{"figure": "widgets", "value": "3/s", "bound": "9/s",
                                 "ratio": 0.333, "target": ">= 0.5", "result": "MISS"}}) + "\\n")
    """)
    assert run.main(["--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bench_ok.py" in out and "widgets" in out and "0.33" in out and "MISS" in out


def test_runner_exits_nonzero_when_a_benchmark_crashes(tmp_path, capsys):
    _write_bench(tmp_path, "fine", "print('fine')\n")
    _write_bench(tmp_path, "broken", "raise RuntimeError('boom')\n")
    assert run.main(["--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "CRASHED" in out and "bench_fine.py" in out


def test_runner_filters_by_name_and_reports_no_match(tmp_path):
    _write_bench(tmp_path, "alpha", "import sys; sys.exit(3)\n")
    assert run.main(["--dir", str(tmp_path), "beta"]) == 2
    assert run.main(["--dir", str(tmp_path), "alpha"]) == 1
