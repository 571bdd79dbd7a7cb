"""dovecot.conf in the format of the installed Dovecot: 2.3 (Debian 12) and 2.4 (Debian 13)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from autosmime.devstack._dovecot import DovecotPorts, dovecot_conf, installed_version

PORTS = DovecotPorts(imap=10143, imaps=10993, lmtp=10024, auth=10025, submission=10587, relay=10026)


def fake_dovecot(tmp_path: Path, output: str) -> str:
    path = tmp_path / "dovecot"
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(("output", "version"), [
    ("2.3.19.1 (9b53102964)", (2, 3)),     # Debian 12
    ("2.4.1-4 (7d8c0e5759)", (2, 4)),      # Debian 13
    ("2.10.0 (0000000000)", (2, 10)),
])
def test_installed_version_reads_dovecot_version(tmp_path, output, version):
    assert installed_version(fake_dovecot(tmp_path, output)) == version


def test_missing_dovecot_reads_as_2_3(tmp_path):
    assert installed_version(str(tmp_path / "absent")) == (2, 3)


@pytest.mark.parametrize("as_root", [True, False])
def test_24_config_starts_with_its_version_and_has_no_23_settings(as_root):
    text = dovecot_conf("/srv/x", PORTS, as_root=as_root, version=(2, 4))
    lines = text.splitlines()
    assert lines[0] == "dovecot_config_version = 2.4.0"
    assert "dovecot_storage_version = 2.4.0" in lines
    for old in ("mail_location", "ssl_cert =", "ssl_key =", "disable_plaintext_auth", "mail_attribute_dict",
                "args =", "default_fields", "  address ="):
        assert old not in text
    assert not re.search(r"%[A-Za-z]", text)          # 2.4 dropped the one-letter %variables
    assert "ssl_server_cert_file = /srv/x/tls/cert.pem" in lines
    assert "port = 10587" in text


def test_23_config_is_the_23_format():
    text = dovecot_conf("/srv/x", PORTS, as_root=True, version=(2, 3))
    assert text.startswith("instance_name = autosmime-x\n")
    assert "dovecot_config_version" not in text
    assert "mail_location = maildir:~/Maildir:LAYOUT=fs" in text.splitlines()


@pytest.mark.skipif(not shutil.which("doveconf"), reason="dovecot is not installed")
def test_installed_dovecot_accepts_the_config_without_warnings(tmp_path):
    """What the devstack writes is what this machine's doveconf parses cleanly (2.3 warns on obsolete names)."""
    for sub in ("run", "state", "mail", "tls"):
        (tmp_path / sub).mkdir()
    (tmp_path / "tls" / "cert.pem").write_text("")
    (tmp_path / "tls" / "key.pem").write_text("")
    (tmp_path / "users").write_text("alice:{PLAIN}pw::::::\n")
    conf = tmp_path / "dovecot.conf"
    conf.write_text(dovecot_conf(str(tmp_path), PORTS, as_root=os.geteuid() == 0))
    result = subprocess.run(["doveconf", "-n", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "Fatal" not in result.stderr, result.stderr
    assert "port = 10143" in result.stdout


def listening_ports(pids: set[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:         # LISTEN
            ports.add(int(fields[1].split(":")[1], 16))
    return ports


@pytest.mark.mailserver
def test_the_stack_listens_only_on_its_own_ports(mailstack):
    """No built-in default listener (2.4's submissions on 465) that would clash between parallel stacks."""
    own = {port for port in vars(mailstack._ports).values() if port}
    found = listening_ports(mailstack.pids())
    assert found, "no listening sockets seen (needs /proc access to the servers)"
    assert found <= own, sorted(found - own)
