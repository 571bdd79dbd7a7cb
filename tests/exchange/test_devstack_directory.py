"""The embedded stack end to end: ``devstack up`` prints DIRECTORY_URL; alice enrols with the stack's CA and
publishes (the fresh certificate of an autosmime CA skips the mail, never the possession proof); bob finds her
certificate, proven in the log; alice's monitor shows the entry as hers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autosmime.devstack.mailserver import dovecot_available

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.mailserver


def _autosmime(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autosmime", *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL)


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    if not dovecot_available():
        pytest.skip("dovecot is not installed")
    base = Path(tempfile.mkdtemp(prefix="autosmime-devstack-dir-"))
    os.chmod(base, 0o755)
    try:
        yield base / "stack"
    finally:
        if (base / "stack" / "devstack.json").exists():
            _autosmime("devstack", "down", "--dir", str(base / "stack"))
        shutil.rmtree(base, ignore_errors=True)


def test_enrol_publish_lookup_on_the_devstack(stack_dir: Path, tmp_path: Path) -> None:
    up = _autosmime("devstack", "up", "--dir", str(stack_dir), "--users", "alice,bob")
    assert up.returncode == 0, up.stderr
    assert "DIRECTORY_URL=" in up.stdout
    script = """
set -eu
eval "$1"
for who in alice bob; do
  addr="$who@$DOMAIN"
  "$2" -m autosmime --home "$3/$who" account add --email "$addr" --imap "$IMAP" --smtp "$SMTP" \\
      --security "$SECURITY" --ca-file "$MAIL_CA_FILE" --password-file "$PASSWORDS_DIR/$addr" >/dev/null
  AUTOSMIME_DNS_ZONE="$DNS_ZONE" "$2" -m autosmime --home "$3/$who" enroll --ca "$CA_URL" >/dev/null
done
"$2" -m autosmime --home "$3/alice" publish --directory "$DIRECTORY_URL"
"$2" -m autosmime --home "$3/bob" lookup "alice@$DOMAIN" --directory "$DIRECTORY_URL" --trust "$CA_TRUST"
"$2" -m autosmime --home "$3/alice" monitor
"""
    run = subprocess.run(["sh", "-c", script, "sh", up.stdout, sys.executable, str(tmp_path)], capture_output=True,
                         text=True, timeout=400, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    published, found, history = run.stdout.splitlines()
    assert published.startswith("published alice@example.test ") and published.endswith("mailbox proven by fast path)")
    sha = published.split()[2]
    assert found.startswith(f"alice@example.test {sha} from directory")
    assert history.endswith(f"publish    {sha}  mine")
    assert _autosmime("devstack", "down", "--dir", str(stack_dir)).returncode == 0
