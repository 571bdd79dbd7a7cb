"""Ctrl-C: exit 130 and one line, as docs/cli.md promises (click turns KeyboardInterrupt into Abort)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from cryptography.hazmat.primitives import serialization

from tests.cli import support


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    trust = tmp_path / "ca.pem"
    trust.write_bytes(support._CA[1].public_bytes(serialization.Encoding.PEM))
    # verify blocks reading a standard input that never ends; SIGINT arrives while it waits
    proc = subprocess.Popen([sys.executable, "-m", "autosmime", "verify", "--trust", str(trust)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(1.5)  # let it start and reach the read; any moment in the command gives the same answer
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert out == b""
    assert [line for line in err.decode().splitlines() if line.strip()] == ["autosmime: interrupted"]
