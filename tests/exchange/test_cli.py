"""The CLI end to end: ``directory serve`` as its own process, then publish (mailed token over IMAP), lookup from
another device (the directory, then its cache), monitor, and one-line errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.exchange.test_publish_mail import device
from tests.servers.directory import support

pytestmark = pytest.mark.mailserver


def cli(*args: str, home=None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    env.pop("AUTOSMIME_DIRECTORY", None)
    cmd = [sys.executable, "-m", "autosmime", *(["--home", str(home)] if home else []), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(pki, tmp_path, mailstack):
    (tmp_path / "ca.pem").write_text(support.pem(pki.ca))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "autosmime", "directory", "serve", "--db", f"sqlite:///{tmp_path}/cli.db",
         "--listen", f"127.0.0.1:{port}", "--trust", str(tmp_path / "ca.pem"),
         "--smtp", f"127.0.0.1:{mailstack._ports.relay}", "--log-key", str(tmp_path / "log.key")],
        env={**os.environ, "PYTHONPATH": os.getcwd()}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"directory did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    assert oct((tmp_path / "log.key").stat().st_mode & 0o777) == "0o600"


def test_publish_lookup_monitor(served, pki, tmp_path, mailstack):
    bob_email, bob_pw = mailstack.fresh_user()
    alice_email, alice_pw = mailstack.fresh_user()
    bob = pki.user(bob_email)
    bob_home, _ = device(tmp_path, mailstack, bob_email, bob_pw, bob)
    alice_home, _ = device(tmp_path, mailstack, alice_email, alice_pw, pki.user(alice_email))

    out = cli("publish", "--directory", served, home=bob_home).stdout
    assert out.startswith(f"published {bob_email} {support.fingerprint(bob.cert)}") and "by mail" in out
    entry = out.split(" at log entry ")[1].split()[0]
    # Publishing again is not an error: it says so, exit 0, and logs nothing new.
    again = cli("publish", "--directory", served, home=bob_home)
    assert again.returncode == 0 and again.stdout.startswith(f"already published {bob_email}"), again
    assert f"at log entry {entry} " in again.stdout
    doc = json.loads(cli("publish", "--directory", served, "--json", home=bob_home).stdout)   # --json: docs/cli.md
    assert doc == {"address": bob_email, "sha256": support.fingerprint(bob.cert), "leaf_index": int(entry),
                   "tree_size": doc["tree_size"], "mailbox_proof": "already", "already": True}

    found = json.loads(cli("lookup", bob_email, "--directory", served, "--json", home=alice_home).stdout)
    assert found["sha256"] == support.fingerprint(bob.cert) and found["source"] == "directory"
    # The second lookup is answered from the cache, even with the directory gone.
    again = json.loads(cli("lookup", bob_email, "--directory", "http://127.0.0.1:9", "--json", home=alice_home).stdout)
    assert again["sha256"] == found["sha256"]

    history = cli("monitor", home=bob_home).stdout.splitlines()   # the directory remembered from publish
    assert len(history) == 1 and "publish" in history[0] and history[0].endswith("mine")
    # Someone with bob's mailbox publishes another certificate for him: monitor shows it and exits 1 (docs/cli.md).
    from autosmime.mailbox.account import load_account, save_account
    from autosmime.vault.store import Vault

    other = tmp_path / "someone-else"
    other.mkdir()
    save_account(other, load_account(bob_home))
    intruder = pki.user(bob_email)
    Vault.open(other, create=True).add(intruder.key, intruder.cert, intruder.chain)
    cli("publish", "--directory", served, home=other)
    swapped = cli("monitor", home=bob_home, check=False)
    assert swapped.returncode == 1 and swapped.stdout.rstrip().endswith("NOT MINE"), swapped
    assert swapped.stderr == "autosmime: warning: 1 log entry names a certificate this device never held\n"
    swapped = cli("monitor", "--json", home=bob_home, check=False)
    assert swapped.returncode == 1, swapped
    doc = json.loads(swapped.stdout)
    assert doc["foreign"] == 1 and [e["mine"] for e in doc["entries"]] == [True, False]
    assert doc["entries"][1]["sha256"] == support.fingerprint(intruder.cert)
    assert set(doc["entries"][0]) == {"leaf_index", "when", "op", "sha256", "mine"}

    missing = cli("lookup", "nobody@example.test", "--directory", served, home=alice_home, check=False)
    assert missing.returncode == 3 and missing.stdout == ""   # docs/cli.md: 3 = not published
    assert missing.stderr.startswith("autosmime: error: ") and len(missing.stderr.splitlines()) == 1
    bad = cli("lookup", "not an address", "--directory", served, home=alice_home, check=False)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
