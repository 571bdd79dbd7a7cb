"""``autosmime demo`` as a user runs it: a subprocess that brings up its own devstack and tells the story.

Each run gets its own ``TMPDIR`` (the demo makes its folder there), so what the demo started can be
found afterwards by path: a process whose command line or working directory is under that folder
(Dovecot and its children, Postfix's master and children, the DKIM signer, the CA and directory
servers) is one the demo left behind. Checked: a full run (exit 0, every step's line, nothing left
running, its folder gone, no recovery code or export password printed); a step made to fail from
outside (an ``openssl`` on PATH that refuses ``cms``: exit 1 naming step 5, everything stopped, or
with ``--keep`` all left up, bob's home readable, and the printed stop command working);
and the demo interrupted (SIGINT as Ctrl-C sends it, SIGTERM as a service manager does) while
step 1 runs: everything stopped, the usual exit code.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autosmime.agent.demo import STEPS
from tests.autopilot.conftest import ROOT, run_cli

#: a recovery code (7 groups of 4) or a generated export password (6 groups of 4)
SECRET_SHAPE = re.compile(r"\b[0-9A-Z]{4}(?:-[0-9A-Z]{4}){5,}\b")


@pytest.fixture
def tmpdir_for_demo() -> Iterator[Path]:
    """A TMPDIR for one demo run, in the system temp dir (Dovecot's unprivileged processes must reach it)."""
    from autosmime.devstack.mailserver import dovecot_available

    if not dovecot_available():
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd; .ci/run does this)")
    tmp = Path(tempfile.mkdtemp(prefix="autosmime-demo-test-"))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
    finally:
        _stop_leftovers(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _processes_under(root: Path) -> dict[int, str]:
    """Live processes whose command line names ``root`` or whose working directory is below it."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                cwd = ""
            state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(root) in cmd or cwd == str(root) or cwd.startswith(f"{root}/")):
            found[int(entry)] = cmd.strip() or f"(cwd {cwd})"
    return found


def _stop_leftovers(root: Path) -> None:
    """If a test failed with the stack still up, stop it so the next tests are not disturbed."""
    for state in root.glob("autosmime-demo-*/stack/devstack.json"):
        run_cli("devstack", "down", "--dir", str(state.parent), timeout=120)


def _nothing_left(root: Path) -> None:
    assert _processes_under(root) == {}, "the demo left processes running"
    assert list(root.iterdir()) == [], "the demo left its folder behind"


def _step_lines(stdout: str) -> dict[int, str]:
    return {int(m.group(1)): line for line in stdout.splitlines() if (m := re.match(r"(\d)\. ", line))}


def test_the_demo_verifies_every_step_and_leaves_nothing_running(tmpdir_for_demo: Path) -> None:
    before = _processes_under(tmpdir_for_demo)
    assert before == {}
    r = run_cli("demo", env={"TMPDIR": str(tmpdir_for_demo)}, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = _step_lines(r.stdout)
    assert sorted(lines) == [1, 2, 3, 4, 5]
    for number, title in enumerate(STEPS, start=1):
        assert lines[number].startswith(f"{number}. {title}: ok ("), lines[number]
    assert "signature good from alice@" in lines[2]
    assert "restored with the recovery code" in lines[4]
    assert "openssl cms decrypted" in lines[5]
    assert f"all {len(STEPS)} steps verified" in r.stdout.splitlines()[-1]
    assert r.stderr == ""
    assert not SECRET_SHAPE.search(r.stdout + r.stderr), "a recovery code or password was printed"
    _nothing_left(tmpdir_for_demo)


@pytest.mark.parametrize("keep", [False, True])
def test_a_step_that_fails_is_named_and_everything_is_stopped(tmpdir_for_demo: Path, tmp_path: Path,
                                                              keep: bool) -> None:
    """... unless --keep: then it all stays up for a look, and the printed commands work."""
    # An openssl that refuses to decrypt, found first on PATH as any program is: no hook in the demo.
    real = shutil.which("openssl")
    if real is None:
        pytest.skip("openssl is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "openssl"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = cms ]; then echo "cms: refused by the test" >&2; exit 3; fi\n'
                    f'exec {real} "$@"\n')
    fake.chmod(0o755)
    r = run_cli("demo", *(["--keep"] if keep else []),
                env={"TMPDIR": str(tmpdir_for_demo), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
                timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = _step_lines(r.stdout)
    assert all(lines[n].startswith(f"{n}. {STEPS[n - 1]}: ok (") for n in (1, 2, 3, 4)), r.stdout
    assert lines[5].startswith(f"5. {STEPS[4]}: FAILED ("), r.stdout
    assert "openssl cms -decrypt exited 3: cms: refused by the test" in lines[5]
    assert r.stderr.splitlines() == [
        f"autosmime: error: demo step 5 ({STEPS[4]}) failed: openssl cms -decrypt exited 3: cms: refused by the test"]
    assert "verified in" not in r.stdout
    if not keep:
        _nothing_left(tmpdir_for_demo)
        return
    assert _processes_under(tmpdir_for_demo) != {}
    inbox = re.search(r"^autosmime demo:   bob: autosmime (--home \S+) inbox$", r.stdout, re.M)
    stop = re.search(r"^autosmime demo: stop and delete it: autosmime devstack down --dir (\S+) && rm -rf (\S+)$",
                     r.stdout, re.M)
    assert inbox and stop, r.stdout
    listed = run_cli(*inbox.group(1).split(" ", 1), "inbox")
    assert listed.returncode == 0 and "signed by alice@" in listed.stdout, listed.stdout + listed.stderr
    assert run_cli("devstack", "down", "--dir", stop.group(1)).returncode == 0
    shutil.rmtree(stop.group(2))
    _nothing_left(tmpdir_for_demo)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_an_interrupted_demo_stops_everything(tmpdir_for_demo: Path, signum: int, code: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir_for_demo)}
    env.pop("AUTOSMIME_HOME", None)
    proc = subprocess.Popen([sys.executable, "-m", "autosmime", "demo"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the stack is up and step 1 (enrolment) is under way
            if line.startswith("autosmime demo: devstack up"):
                break
        else:
            pytest.fail(f"the demo ended before its stack was up: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}")
        assert _processes_under(tmpdir_for_demo) != {}
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    if signum == signal.SIGINT:
        assert err.splitlines()[-1] == "autosmime: interrupted; everything the demo started is stopped"
    _nothing_left(tmpdir_for_demo)
