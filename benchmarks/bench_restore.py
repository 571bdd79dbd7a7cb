"""Benchmark: a fresh device restores 10 keys from the loopback Dovecot.

    $ python benchmarks/bench_restore.py [--keys 10] [--rounds 3]

Prints the wall time of ``restore()`` (best of N rounds, each into a new
home), the share spent in key derivation (Argon2id for the manifest MAC,
PBKDF2 and the RFC 7292 MAC KDF for the PKCS#12; measured in a profiled
extra round), and the physical floor measured in the same run: the bare
Argon2id (64 MiB, t=3, p=4) + PBKDF2-HMAC-SHA256 600,000 (bags) + one more
600,000-iteration SHA-256 chain (the PKCS#12 MAC) computed in C. The
format needs all three; everything above the floor is overhead. Target:
total under 2 s.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autosmime.devstack.mailserver import MailStack
from autosmime.mailbox.account import save_account
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.vault import format as fmt
from autosmime.vault.backup import backup_now, restore
from autosmime.vault.recovery import get_or_create_code
from autosmime.vault.store import Vault


def _kdf_name(file: str, func: str) -> str | None:
    """Which key derivation a profiler entry is, if any."""
    if "derive" in func and "Argon2id" in func:
        return "argon2id"
    if "pbkdf2_hmac" in func:
        return "pbkdf2"
    if func == "_kdf" and file.endswith("pkcs12.py"):  # RFC 7292 App. B (the PKCS#12 MAC key)
        return "pkcs12 mac kdf"
    return None


def floor_seconds() -> dict[str, float]:
    """The bare derivations restore cannot avoid, timed here and now."""
    out = {}
    t = time.perf_counter()
    Argon2id(salt=os.urandom(16), length=32, iterations=fmt.SPEC_KDF.iterations, lanes=fmt.SPEC_KDF.lanes,
             memory_cost=fmt.SPEC_KDF.memory_kib).derive(b"0000-0000-0000-0000-0000-0000-0000")
    out["argon2id"] = time.perf_counter() - t
    t = time.perf_counter()
    hashlib.pbkdf2_hmac("sha256", b"0000-0000-0000-0000-0000-0000-0000", os.urandom(16), fmt.PFX_ITERATIONS, 32)
    out["pbkdf2 (bags)"] = time.perf_counter() - t
    t = time.perf_counter()  # the MAC KDF is an iterated SHA-256 chain of the same length; C speed is the floor
    hashlib.pbkdf2_hmac("sha256", b"mac", os.urandom(16), fmt.PFX_ITERATIONS, 32)
    out["pkcs12 mac kdf"] = time.perf_counter() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    stack = MailStack.start()
    try:
        email, password = stack.fresh_user()
        account = stack.account(email)
        root = Path(tempfile.mkdtemp(prefix="bench-restore-"))
        pw_file = root / "imap-password"
        pw_file.write_text(password)
        os.chmod(pw_file, 0o600)
        account.password_file = str(pw_file)

        old_home = root / "old"
        save_account(old_home, account)
        vault = Vault.open(old_home)
        ca_key, ca = make_ca("bench CA", new_key("ec"))
        items = []
        for _ in range(args.keys):
            key = new_key("ec")
            items.append((key, make_mailbox_cert(email, key.public_key(), ca_key, ca), (ca,)))
        vault.add_many(items, source="import")
        code = get_or_create_code(old_home)
        backup_now(vault, code=code)

        def one_restore(n: int) -> float:
            home = root / f"new{n}"
            save_account(home, account)
            t = time.perf_counter()
            result = restore(home, code=code)
            elapsed = time.perf_counter() - t
            assert result.keys == args.keys and len(Vault.open(home).entries()) == args.keys
            return elapsed

        totals = [one_restore(i) for i in range(args.rounds)]
        floor = floor_seconds()

        profiler = cProfile.Profile()
        profiler.enable()
        profiled_total = one_restore(args.rounds)
        profiler.disable()
        kdf = {"argon2id": 0.0, "pbkdf2": 0.0, "pkcs12 mac kdf": 0.0}
        for (file, _line, func), (_cc, _nc, _tt, cumulative, _callers) in pstats.Stats(profiler).stats.items():
            name = _kdf_name(file, func)
            if name:
                kdf[name] += cumulative
        kdf_total = sum(kdf.values())
    finally:
        stack.stop()

    best = min(totals)
    floor_total = sum(floor.values())
    print(f"restore of {args.keys} keys from loopback Dovecot (best of {args.rounds}): {best:.3f} s "
          f"(all: {', '.join(f'{t:.3f}' for t in totals)})")
    print(f"  KDF share (profiled round, {profiled_total:.3f} s with profiler overhead): {kdf_total:.3f} s "
          f"= {100 * kdf_total / profiled_total:.0f} %  "
          f"[{', '.join(f'{k} {v:.3f} s' for k, v in kdf.items())}]")
    print(f"  physical floor (bare derivations, same run): {floor_total:.3f} s  "
          f"[{', '.join(f'{k} {v:.3f} s' for k, v in floor.items())}]")
    print(f"  ratio total / floor: {best / floor_total:.2f}x   target < 2 s: {'met' if best < 2 else 'MISSED'}")


if __name__ == "__main__":
    main()
