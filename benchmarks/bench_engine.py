"""Message-engine benchmarks (issues #2 and #9), each figure beside a bound measured in the same run.

    $ python3 benchmarks/bench_engine.py            # about 30 s; prints the table below
    figure                      value            bound                     ratio  target   result
    sign+encrypt 10 KB          ...  msg/s       ...  RSA priv ops/s       0.71  >= 0.60  PASS
    ...

Figures:

* messages per second for ``sign_and_encrypt(m)`` (what ``encrypt(sign(m))`` does, in
  one pass) and ``verify(decrypt(m))`` of a 10 KB and a 10 MB message, RSA-2048 keys
  from :mod:`autosmime.pki.profiles`;
* small messages against the RSA-2048 private-operation rate of
  ``openssl speed rsa2048`` ("sign/s"): each direction costs exactly one private
  operation (the signature, or the key-transport decryption), so that rate is
  the bound on messages per second; it is read once a round, just before that
  round's figures, and the best figure is compared with the best reading;
* 10 MB messages against ``openssl cms`` on the same message and keys
  (DER, ``-binary``, each pipeline stage a subprocess fed from memory);
* peak memory: the peak-RSS increase (VmHWM) of a fresh subprocess doing one
  10 MB operation, over its RSS after imports and reading its input.
* the command as a process (issue #9): ``autosmime decrypt < in > out`` of a 25 MB
  message against ``openssl cms -decrypt`` on the same input (peak RSS and CPU time),
  and ``autosmime --help`` against ``python3 -c pass``.

The machines are shared and noisy, so every figure is the best of a few
repetitions and is compared only with a bound taken in the same run. The
benchmark reports; it never fails on a MISS. It exits non-zero only when
something crashes (or produces a wrong result).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import email.utils
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

SMALL = 10 * 1024
LARGE = 10 * 1024 * 1024
SENDER = "alice@example.test"

# Few, short rounds: the whole run must stay well under the 2-minute budget.
SMALL_ROUNDS = 7
SMALL_ROUND_SECONDS = 0.5
LARGE_ROUNDS = 3
OPENSSL_SPEED_SECONDS = 1

# Where benchmarks/run.py collects every benchmark's rows into one summary (JSON lines).
RESULTS_ENV = "AUTOSMIME_BENCH_RESULTS"


# -- the messages -----------------------------------------------------------------


def _date_now() -> str:
    """Dated now: verify holds Date to within an hour of the signing time (Thunderbird's rule)."""
    return email.utils.format_datetime(datetime.datetime.now(datetime.UTC))


def make_message(size: int) -> bytes:
    """A realistic mail of about ``size`` bytes: a short text part and a base64 attachment.

    Random attachment bytes keep compression-like shortcuts honest; 76-column
    base64 with CRLF is what mail clients send, so the engine takes its
    "already 7-bit clean" path as it does for real mail.
    """
    text = (b"Hello Bob,\r\n\r\nthe figures you asked for are attached.\r\n\r\n-- \r\nAlice\r\n")
    header = (
        f"From: Alice <{SENDER}>\r\nTo: Bob <bob@example.test>\r\nSubject: benchmark\r\n"
        f"Date: {_date_now()}\r\nMessage-ID: <bench@example.test>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="bench-boundary"\r\n\r\n'
    ).encode()
    head = (header + b"--bench-boundary\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            b"Content-Transfer-Encoding: 7bit\r\n\r\n" + text
            + b"--bench-boundary\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n")
    tail = b"--bench-boundary--\r\n"
    room = max(size - len(head) - len(tail), 78)
    raw_len = (room // 78) * 57  # each 57 raw bytes become one 76-character line plus CRLF
    attachment = base64.encodebytes(os.urandom(raw_len)).replace(b"\n", b"\r\n")
    return head + attachment + tail


# -- keys and files ---------------------------------------------------------------


@dataclass
class Identity:
    key: object
    cert: object
    ca_cert: object


def make_identity() -> Identity:
    from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key

    # An RSA-2048 CA as well: path validation is public-key work and a larger CA key only adds noise.
    ca_key, ca_cert = make_ca("Benchmark CA", new_key("rsa"))
    key = new_key("rsa")
    cert = make_mailbox_cert(SENDER, key.public_key(), ca_key, ca_cert)
    return Identity(key, cert, ca_cert)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_identity(ident: Identity, directory: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = serialization.Encoding.PEM
    _write_private(directory / "key.pem", ident.key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / "cert.pem").write_bytes(ident.cert.public_bytes(pem))
    (directory / "ca.pem").write_bytes(ident.ca_cert.public_bytes(pem))


def read_identity(directory: Path) -> Identity:
    from autosmime.pki.keys import load_certificates, load_key_and_cert

    pair = load_key_and_cert(directory / "key.pem", directory / "cert.pem")
    return Identity(pair.key, pair.cert, load_certificates((directory / "ca.pem").read_bytes())[0])


# -- the operations ------------------------------------------------------------------


def sign_encrypt(message: bytes, ident: Identity) -> bytes:
    from autosmime.smime import sign_and_encrypt

    return sign_and_encrypt(message, ident.key, ident.cert, [ident.cert])


def decrypt_verify(message: bytes, ident: Identity) -> bytes:
    from autosmime.smime import decrypt, verify

    inner = decrypt(message, [(ident.key, ident.cert)]).message
    return verify(inner, [ident.ca_cert]).message


def rsa_private_ops(ident: Identity) -> dict[str, Callable[[], object]]:
    """The one private-key operation each small-message figure costs, alone, as the engine calls it."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    wrapped = ident.cert.public_key().encrypt(os.urandom(32), padding.PKCS1v15())
    return {"sign+encrypt": lambda: ident.key.sign(b"signed attributes", padding.PKCS1v15(), hashes.SHA256()),
            "decrypt+verify": lambda: ident.key.decrypt(wrapped, padding.PKCS1v15())}


def check_roundtrip(original: bytes, opened: bytes) -> None:
    """A benchmark of wrong output is worthless: the body must come back byte for byte."""
    body = original.split(b"\r\n\r\n", 1)[1]
    if not opened.endswith(body):
        raise SystemExit("decrypt+verify did not return the original message body")


# -- timing ------------------------------------------------------------------------
#
# CPU seconds, not wall seconds, on both sides: `openssl speed` divides by CPU time, and on a
# shared machine wall time mostly measures the neighbours. The engine is single-threaded and
# does no I/O, so on an idle machine the two agree.


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the openssl subprocesses)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


# Reading the CPU clocks takes two system calls, about 1.4 us: a few tenths of a percent of a
# 10 KB message. They are read once per batch, as `openssl speed` reads none per operation.
OPS_PER_CLOCK_READ = 8


def best_rate(op: Callable[[], object], rounds: int, round_seconds: float) -> float:
    """Operations per CPU second: the best of ``rounds`` rounds of at least ``round_seconds`` each."""
    op()  # warm caches and lazy imports outside the clock
    best = 0.0
    for _ in range(rounds):
        count = 0
        start = cpu_seconds()
        while True:
            for _ in range(OPS_PER_CLOCK_READ):
                op()
            count += OPS_PER_CLOCK_READ
            elapsed = cpu_seconds() - start
            if elapsed >= round_seconds:
                break
        best = max(best, count / elapsed)
    return best


def interleaved_rounds(ops, rounds: int, round_seconds: float) -> tuple[list[float], dict[str, list[float]]]:
    """(the bound's readings, each op's rates): each round reads the bound, then every op."""
    for _, op in ops:
        op()  # warm caches and lazy imports outside the clock
    readings: list[float] = []
    rates: dict[str, list[float]] = {name: [] for name, _ in ops}
    for _ in range(rounds):
        readings.append(openssl_rsa2048_private_ops())
        for name, op in ops:
            rates[name].append(best_rate(op, 1, round_seconds))
    return readings, rates


def best_time(op: Callable[[], object], rounds: int) -> float:
    """The fewest CPU seconds one call took, over ``rounds`` calls."""
    best = float("inf")
    for _ in range(rounds):
        start = cpu_seconds()
        op()
        best = min(best, cpu_seconds() - start)
    return best


# -- the bounds: openssl, measured now -----------------------------------------------


_SPEED_ROW = re.compile(r"^rsa\s+2048\s+bits\s+(\S+)s\s+(\S+)s\s+(\S+)\s+(\S+)\s*$", re.MULTILINE)


def parse_openssl_speed(output: str) -> float:
    """The "sign/s" column of the rsa 2048 row of ``openssl speed`` (private operations/s)."""
    m = _SPEED_ROW.search(output)
    if m is None:
        raise ValueError("no 'rsa 2048 bits' row in openssl speed output")
    return float(m.group(3))


def openssl_rsa2048_private_ops() -> float:
    out = subprocess.run(["openssl", "speed", "-seconds", str(OPENSSL_SPEED_SECONDS), "rsa2048"],
                         check=True, capture_output=True, text=True).stdout
    return parse_openssl_speed(out)


def _openssl(args: list[str], data: bytes) -> bytes:
    return subprocess.run(["openssl", *args], input=data, check=True, capture_output=True).stdout


def openssl_sign_encrypt(message: bytes, d: Path) -> bytes:
    signed = _openssl(["cms", "-sign", "-binary", "-nodetach", "-md", "sha256", "-outform", "DER",
                       "-signer", str(d / "cert.pem"), "-inkey", str(d / "key.pem")], message)
    return _openssl(["cms", "-encrypt", "-binary", "-aes-256-cbc", "-outform", "DER",
                     str(d / "cert.pem")], signed)


def openssl_decrypt_verify(der: bytes, d: Path) -> bytes:
    signed = _openssl(["cms", "-decrypt", "-binary", "-inform", "DER",
                       "-recip", str(d / "cert.pem"), "-inkey", str(d / "key.pem")], der)
    return _openssl(["cms", "-verify", "-binary", "-inform", "DER", "-CAfile", str(d / "ca.pem"),
                     "-purpose", "smimesign"], signed)


# -- peak memory, in a fresh process ---------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset the peak-RSS mark to the current RSS and return it (bytes).

    ru_maxrss cannot serve: Linux carries it over fork and exec, so a child of a
    large parent starts with the parent's peak. /proc's VmHWM is per address
    space, and writing 5 to clear_refs (Linux >= 4.0) resets it to VmRSS.
    """
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")
    return _status_kib("VmRSS") * 1024


def memory_child(operation: str, directory: Path) -> None:
    """Run in a fresh interpreter: print the peak-RSS increase of one operation as JSON."""
    import autosmime.smime  # noqa: F401 - imports belong to the baseline, not the operation

    ident = read_identity(directory)
    data = (directory / f"{operation}.in").read_bytes()
    op = sign_encrypt if operation == "sign_encrypt" else decrypt_verify
    baseline = _reset_peak_rss()
    result = op(data, ident)
    peak = _status_kib("VmHWM") * 1024
    print(json.dumps({"operation": operation, "input": len(data), "output": len(result),
                      "baseline": baseline, "increase": peak - baseline}))


def peak_memory_increase(operation: str, directory: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--memory-child", operation, str(directory)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- the command as a process (issue 9) -------------------------------------------------
#
# Whole processes, as a user runs them: `autosmime decrypt < in > out` against
# `openssl cms -decrypt < in > out`, the same 25 MB message (stdin a file, stdout a file).
# Each is started by a small helper interpreter that reports the wait4() resource usage of
# its one child: peak RSS (ru_maxrss) and CPU seconds. Not from this process: Linux carries
# a parent's peak RSS over fork and exec into the child's ru_maxrss, and this process holds
# hundreds of MB; the helper's own (about 10 MB) is below either command's peak.

PROCESS_SIZE = 25 * 1024 * 1024
PROCESS_ROUNDS = 5


def rusage_child(spec_json: str) -> None:
    """Run in a fresh interpreter: run one command, stdin and stdout from and to files; print its rusage."""
    spec = json.loads(spec_json)
    with open(spec["stdin"], "rb") as stdin, open(spec["stdout"], "wb") as stdout, \
            open(spec["stdout"] + ".err", "wb") as stderr:
        p = subprocess.Popen(spec["argv"], stdin=stdin, stdout=stdout, stderr=stderr, env=spec["env"])
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    print(json.dumps({"exit": p.returncode, "maxrss": usage.ru_maxrss * 1024,
                      "cpu": usage.ru_utime + usage.ru_stime}))


def run_measured(argv: list[str], stdin: Path, stdout: Path, env: dict[str, str]) -> dict:
    """{"exit", "maxrss" (bytes), "cpu" (s)} of one run of ``argv``, measured by a helper interpreter."""
    spec = {"argv": argv, "stdin": str(stdin), "stdout": str(stdout), "env": env}
    out = subprocess.run([sys.executable, __file__, "--rusage-child", json.dumps(spec)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result["exit"] != 0:
        err = Path(str(stdout) + ".err").read_text(errors="replace")
        raise SystemExit(f"{argv[:4]} failed ({result['exit']}): {err}")
    return result


def process_env(d: Path) -> dict[str, str]:
    """The environment for `python -m autosmime`: the same autosmime as this process imports, and
    compiled bytecode, as an installed package has it (pip compiles it; a PYTHONDONTWRITEBYTECODE
    environment would have every run compile every module from source). The bytecode goes to a
    cache under ``d``, not into the source tree; a warm-up run fills it."""
    import autosmime

    root = str(Path(autosmime.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
           "PYTHONPYCACHEPREFIX": str(d / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def autosmime_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "autosmime", *args]


def process_rows(ident: Identity, d: Path, notes: list[str]) -> list[Row]:
    """decrypt of a 25 MB message and start-up, as whole processes, each beside its bound."""
    from autosmime.smime import encrypt

    plain = make_message(PROCESS_SIZE)
    (d / "process.eml").write_bytes(encrypt(plain, [ident.cert]))
    del plain
    enc, empty = d / "process.eml", d / "empty"
    empty.write_bytes(b"")
    ours_argv = autosmime_cmd("decrypt", "--key", str(d / "key.pem"), "--cert", str(d / "cert.pem"))
    theirs_argv = ["openssl", "cms", "-decrypt", "-recip", str(d / "cert.pem"), "-inkey", str(d / "key.pem")]
    env = process_env(d)
    ours: list[dict] = []
    theirs: list[dict] = []
    for i in range(PROCESS_ROUNDS + 1):  # in turns, best against best, as the 10 KB figures
        theirs.append(run_measured(theirs_argv, enc, d / "openssl.out", env))
        ours.append(run_measured(ours_argv, enc, d / "autosmime.out", env))
        if i == 0:  # the warm-up: bytecode compiled, the input in the page cache
            ours.clear()
            theirs.clear()
    _check_same_body(d / "openssl.out", d / "autosmime.out")
    rss_ours, rss_theirs = min(r["maxrss"] for r in ours), min(r["maxrss"] for r in theirs)
    cpu_ours, cpu_theirs = min(r["cpu"] for r in ours), min(r["cpu"] for r in theirs)
    rows = [
        Row("decrypt 25 MB process, peak RSS", _mb(rss_ours), f"{_mb(rss_theirs)} (openssl cms -decrypt)",
            rss_ours / rss_theirs, "<= 1.00", rss_ours <= rss_theirs),
        Row("decrypt 25 MB process, time", f"{cpu_ours:.3f} s", f"{cpu_theirs:.3f} s (openssl cms -decrypt)",
            cpu_ours / cpu_theirs, "<= 2.00", cpu_ours <= 2 * cpu_theirs),
    ]
    # The same from a pipe, which cannot be read twice: the path a mail client's filter takes.
    piped = run_measured(["sh", "-c", f"cat {shlex.quote(str(enc))} | {shlex.join(ours_argv)}"], empty,
                         d / "piped.out", env)
    notes.append(f"decrypt 25 MB ({enc.stat().st_size / 1e6:.1f} MB of S/MIME) from a pipe instead of a file: "
                 f"peak RSS {_mb(piped['maxrss'])}, {piped['cpu']:.3f} s (either way the decoded ciphertext waits "
                 "in an unlinked temporary file, not in memory)")

    # Start-up: `autosmime --help` against the interpreter's own start, `python3 -c pass`.
    run_measured(autosmime_cmd("--help"), empty, d / "help.out", env)  # the warm-up
    help_runs, bare_runs = [], []
    for _ in range(PROCESS_ROUNDS):
        bare_runs.append(run_measured([sys.executable, "-c", "pass"], empty, d / "bare.out", env)["cpu"])
        help_runs.append(run_measured(autosmime_cmd("--help"), empty, d / "help.out", env)["cpu"])
    openssl_version = min(run_measured(["openssl", "version"], empty, d / "v.out", env)["cpu"] for _ in range(3))
    t_help, t_bare = min(help_runs), min(bare_runs)
    rows.append(Row("autosmime --help process, time", f"{t_help * 1e3:.0f} ms",
                    f"{t_bare * 1e3:.0f} ms (python3 -c pass)", t_help / t_bare, "<= 3.00", t_help <= 3 * t_bare))
    notes.append(f"start-up: openssl version takes {openssl_version * 1e3:.1f} ms (a C program: no interpreter "
                 "to start, so not the bound); python3 -c pass is the floor of any Python command, and "
                 "--help over it is what autosmime's imports cost")
    return rows


def _check_same_body(openssl_out: Path, ours_out: Path) -> None:
    """Both decrypted the same message: openssl writes the inner entity, autosmime the whole mail."""
    theirs, ours = openssl_out.read_bytes(), ours_out.read_bytes()
    if not theirs or not ours.endswith(theirs[theirs.index(b"\r\n\r\n"):]):
        raise SystemExit("autosmime decrypt and openssl cms -decrypt disagree on the 25 MB message")


# -- the table ------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    value: str
    bound: str
    ratio: float
    target: str
    ok: bool

    @property
    def result(self) -> str:
        return "PASS" if self.ok else "MISS"


def print_table(rows: list[Row]) -> None:
    header = ("figure", "value", "bound", "ratio", "target", "result")
    cells = [header] + [(r.figure, r.value, r.bound, f"{r.ratio:.2f}", r.target, r.result) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    for i, c in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def export_rows(rows: list[Row]) -> None:
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"benchmark": "engine", **asdict(r), "result": r.result}) + "\n")


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> int:
    started = time.perf_counter()
    ident = make_identity()
    small, large = make_message(SMALL), make_message(LARGE)
    rows: list[Row] = []
    notes: list[str] = []

    with tempfile.TemporaryDirectory(prefix="autosmime-bench-") as tmp:
        d = Path(tmp)
        write_identity(ident, d)

        # -- 10 KB: messages per second against the private-operation rate ----------------
        # Interleaved rounds: each reads the bound and then both figures, back to back; the ratio
        # is the best figure over the best bound. A neighbour only ever slows a measurement, so
        # the best of several is the machine at its least disturbed, on both sides; taking them
        # in turns gives both sides the same quiet moments (one bound read before and one after
        # all figures, as before, could catch a quiet moment the figures never saw, or miss it).
        small_enc = sign_encrypt(small, ident)
        check_roundtrip(small, decrypt_verify(small_enc, ident))
        small_ops = (("sign+encrypt", lambda: sign_encrypt(small, ident)),
                     ("decrypt+verify", lambda: decrypt_verify(small_enc, ident)))
        readings, rates = interleaved_rounds(small_ops, SMALL_ROUNDS, SMALL_ROUND_SECONDS)
        notes.append(f"openssl speed rsa2048, one reading a round: {', '.join(f'{r:.0f}' for r in readings)} "
                     f"private ops/s (sign/s column, CPU time, {OPENSSL_SPEED_SECONDS} s each), the best is the "
                     "bound; every figure here is per CPU second")
        # Where a small message's time goes: the RSA operation as the engine calls it, the rest is ours.
        in_process = {name: best_rate(op, 3, SMALL_ROUND_SECONDS)
                      for name, op in rsa_private_ops(ident).items()}
        bound = max(readings)
        for name, _ in small_ops:
            rate = max(rates[name])
            ratio = rate / bound
            total, rsa = 1e6 / rate, 1e6 / in_process[name]
            notes.append(f"{name} 10 KB: {total:.0f} us a message = {rsa:.0f} us for its RSA private op "
                         f"(through cryptography, alone) + {total - rsa:.0f} us for everything else; "
                         f"round by round figure/bound {', '.join(f'{r / b:.2f}' for r, b in zip(rates[name], readings))}")
            rows.append(Row(f"{name} 10 KB", f"{rate:.0f} msg/s",
                            f"{bound:.0f} msg/s (1 RSA-2048 private op/msg)",
                            ratio, ">= 0.60", ratio >= 0.60))

        # -- 10 MB: throughput against openssl cms on the same message ------------------
        large_enc = sign_encrypt(large, ident)
        check_roundtrip(large, decrypt_verify(large_enc, ident))
        ossl_enc = openssl_sign_encrypt(large, d)
        if openssl_decrypt_verify(ossl_enc, d) != large:
            raise SystemExit("openssl cms did not round-trip the 10 MB message")
        pairs = (
            ("sign+encrypt", lambda: sign_encrypt(large, ident), lambda: openssl_sign_encrypt(large, d)),
            ("decrypt+verify", lambda: decrypt_verify(large_enc, ident),
             lambda: openssl_decrypt_verify(ossl_enc, d)),
        )
        for name, ours, theirs in pairs:
            t_ours = best_time(ours, LARGE_ROUNDS)
            t_theirs = best_time(theirs, LARGE_ROUNDS)
            ratio = t_theirs / t_ours  # throughput ratio: same bytes, so inverse time ratio
            rows.append(Row(f"{name} 10 MB", f"{len(large) / t_ours / 1e6:.1f} MB/s ({1 / t_ours:.2f} msg/s)",
                            f"{len(large) / t_theirs / 1e6:.1f} MB/s (openssl cms, DER, -binary)",
                            ratio, ">= 0.50", ratio >= 0.50))

        # -- peak memory of one 10 MB operation, each in a fresh interpreter --------------
        (d / "sign_encrypt.in").write_bytes(large)
        (d / "decrypt_verify.in").write_bytes(large_enc)
        for name, operation in (("sign+encrypt", "sign_encrypt"), ("decrypt+verify", "decrypt_verify")):
            m = peak_memory_increase(operation, d)
            ratio = m["increase"] / len(large)
            rows.append(Row(f"peak RSS {name} 10 MB", f"+{_mb(m['increase'])}",
                            f"{_mb(len(large))} message", ratio, "<= 4.00", ratio <= 4.0))

        # -- the command as a process: 25 MB decrypt and start-up, beside openssl / the interpreter
        rows += process_rows(ident, d, notes)

    print_table(rows)
    for n in notes:
        print(n)
    print(f"bench_engine: {time.perf_counter() - started:.1f} s")
    export_rows(rows)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-child", nargs=2, metavar=("OPERATION", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--rusage-child", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rusage_child:
        rusage_child(args.rusage_child)
        sys.exit(0)
    if args.memory_child:
        memory_child(args.memory_child[0], Path(args.memory_child[1]))
        sys.exit(0)
    sys.exit(main())
