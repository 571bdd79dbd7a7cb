"""SIGKILL a writer in the middle of vault writes, many times: the vault always opens, old or new.

A child process opens the vault and writes in a loop (state counter plus a
check value in one update, and a new key now and then); the parent kills it
at a random moment. Afterwards the vault must open, the counter must never go
backwards, its check value must match, and no key once seen may vanish.
Also: two processes writing at once both land (the fcntl lock).
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import textwrap
import time

from autosmime.vault.store import Vault

WRITER = textwrap.dedent(
    """
    import hashlib, sys
    from pathlib import Path
    from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
    from autosmime.vault.store import Vault
    home, tag = Path(sys.argv[1]), sys.argv[2]
    vault = Vault.open(home)
    ca_key, ca = make_ca("crash CA", new_key("ec"))
    n = vault.state.get("n", 0)
    print("ready", flush=True)
    i = 0
    while True:
        n += 1
        vault.update_state(n=n, check=hashlib.sha256(str(n).encode()).hexdigest(), pad="x" * (n % 997))
        if i % 3 == 0:
            key = new_key("ec")
            vault.add(key, make_mailbox_cert(f"{tag}{n}@example.test", key.public_key(), ca_key, ca))
        i += 1
        if len(sys.argv) > 3 and i >= int(sys.argv[3]):
            break
    """
)


def _spawn(home, tag, limit=None):
    args = [sys.executable, "-c", WRITER, str(home), tag] + ([str(limit)] if limit else [])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def test_sigkill_during_writes_never_loses_the_vault(tmp_path):
    home = tmp_path / "home"
    Vault.open(home)
    rng = random.Random()
    last_n, seen_fps, kills = 0, set(), 0
    for _ in range(60):
        proc = _spawn(home, "k")
        time.sleep(rng.uniform(0.0, 0.06))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += int(proc.returncode == -signal.SIGKILL)
        vault = Vault.open(home)
        state = vault.state
        n = state.get("n", 0)
        assert n >= last_n
        if n:
            assert state["check"] == hashlib.sha256(str(n).encode()).hexdigest()
        fps = {e.fingerprint for e in vault.entries()}
        assert seen_fps <= fps
        last_n, seen_fps = n, fps
    assert kills >= 50
    assert last_n > 0, "the writers never got to write; the test proved nothing"
    Vault.open(home).update_state(done=True)
    assert not list(home.glob(".autosmime-tmp-*"))


def test_two_writers_at_once_lose_nothing(tmp_path):
    home = tmp_path / "home"
    Vault.open(home)
    procs = [_spawn(home, tag, limit=9) for tag in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    emails = {e.email for e in Vault.open(home).entries()}
    assert len([e for e in emails if e.startswith("a")]) == 3
    assert len([e for e in emails if e.startswith("b")]) == 3
