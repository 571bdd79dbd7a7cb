"""Global options after the subcommand, ``--json`` before it, ``~`` in ``--out=~/x``, ``-`` for standard output."""

from __future__ import annotations

import json
import os

import click
import pytest

from autosmime.cli import cli
from autosmime.cli._options import normalise_args
from autosmime.vault.store import Vault
from tests.cli import support
from tests.cli.support import run


@pytest.mark.parametrize("given, expected", [
    (["keys", "--home", "H", "--json"], ["--home", "H", "keys", "--json"]),
    (["keys", "--home=H"], ["--home=H", "keys"]),
    (["status", "--debug"], ["--debug", "status"]),
    (["--json", "keys"], ["keys", "--json"]),
    (["--home", "H", "keys", "activate", "AB", "--debug"], ["--home", "H", "--debug", "keys", "activate", "AB"]),
    # a global option's name as another option's value stays that value
    (["encrypt", "--to", "--home", "--in", "x"], ["encrypt", "--to", "--home", "--in", "x"]),
    # nor after --
    (["keys", "--", "--debug"], ["keys", "--", "--debug"]),
    (["--json", "keys", "--", "--debug"], ["keys", "--json", "--", "--debug"]),
    ([], []),
    (["--help"], ["--help"]),
])
def test_normalise_args(given, expected):
    assert normalise_args(cli, given) == expected


def test_tilde_is_expanded_in_path_options_only(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    assert normalise_args(cli, ["sign", "--out=~/x", "--in", "~/y"]) == \
        ["sign", "--out=/home/someone/x", "--in", "/home/someone/y"]
    assert normalise_args(cli, ["--home=~/h", "keys"]) == ["--home=/home/someone/h", "keys"]
    # not a path: left alone
    assert normalise_args(cli, ["verify", "--at=~now"]) == ["verify", "--at=~now"]


def test_a_command_defining_the_option_keeps_it():
    @click.group()
    @click.option("--home")
    def root(home):
        pass

    @root.command()
    @click.option("--home")
    def own(home):
        pass

    assert normalise_args(root, ["own", "--home", "x"]) == ["own", "--home", "x"]


def test_global_options_after_the_subcommand_work_end_to_end(tmp_path):
    home = tmp_path / "home"
    Vault.open(home).add(*support.ca_issued("alice@example.test"))
    r = run(None, "keys", "--home", str(home), "--json")
    assert r.returncode == 0, r.stderr
    assert [k["email"] for k in json.loads(r.stdout)["keys"]] == ["alice@example.test"]
    r = run(None, "--json", "keys", "--home", str(home))
    assert r.returncode == 0 and json.loads(r.stdout)["keys"], r.stderr
    r = run(home, "status", "--debug", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["keys"] == {"active": 1}, r.stderr


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path):
    r = run(tmp_path / "nohome", "keys", "activate", "00" * 8)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    r = run(tmp_path / "nohome", "keys", "activate", "00" * 8, "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_out_with_tilde_after_equals_writes_under_home(tmp_path, pki_files):
    fake_home = tmp_path / "user"
    fake_home.mkdir()
    key, cert = pki_files
    r = run(None, "sign", "--key", str(key), "--cert", str(cert), "--out=~/signed.eml",
            input="Subject: hi\n\nhello\n", env={"HOME": str(fake_home)})
    assert r.returncode == 0, r.stderr
    assert (fake_home / "signed.eml").read_bytes().startswith(b"MIME-Version") or \
        b"pkcs7-signature" in (fake_home / "signed.eml").read_bytes()
    assert not (tmp_path / "~").exists() and not os.path.exists("~")


def test_dash_means_standard_output(tmp_path, pki_files):
    key, cert = pki_files
    r = run(None, "sign", "--key", str(key), "--cert", str(cert), "--out", "-", input="From: alice@example.test\nSubject: hi\n\nhello\n")
    assert r.returncode == 0 and "pkcs7-signature" in r.stdout, r.stderr
    assert not (tmp_path / "-").exists() and not os.path.exists("-")
    signed = r.stdout
    r = run(None, "verify", "--trust", str(cert.parent / "ca.pem"), "--signer-cert-out", "-", "--out",
            str(tmp_path / "inner.eml"), input=signed)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("-----BEGIN CERTIFICATE-----") and r.stdout.rstrip().endswith("CERTIFICATE-----")
    assert (tmp_path / "inner.eml").read_bytes().endswith(b"hello\n") or b"hello" in (tmp_path / "inner.eml").read_bytes()


def test_export_out_dash_is_refused_not_a_folder_named_dash(tmp_path):
    """``export`` writes several files into a folder: ``--out -`` cannot mean standard output, and must not
    quietly create a folder named ``-`` in the current directory."""
    home = tmp_path / "home"
    Vault.open(home).add(*support.ca_issued("alice@example.test"))
    r = run(home, "export", "--out", "-")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("autosmime: ") and "--out" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and not os.path.exists("-")


@pytest.fixture
def pki_files(tmp_path):
    from cryptography.hazmat.primitives import serialization

    key, cert, chain = support.ca_issued("alice@example.test")
    d = tmp_path / "pki"
    d.mkdir()
    (d / "alice.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    (d / "alice.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "ca.pem").write_bytes(chain[0].public_bytes(serialization.Encoding.PEM))
    return d / "alice.key", d / "alice.pem"


def test_verify_json(tmp_path, pki_files):
    key, cert = pki_files
    signed = run(None, "sign", "--key", str(key), "--cert", str(cert),
                 input="From: alice@example.test\nSubject: hi\n\nhello\n").stdout
    r = run(None, "verify", "--trust", str(cert.parent / "ca.pem"), "--json", input=signed)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "good" and doc["signer"] == "alice@example.test" and doc["from_matches"] is True
    assert doc["content"].endswith("hello\r\n") and doc["content_encoding"] == "utf-8"
    assert set(doc) == {"verdict", "signer", "signer_sha256", "from", "from_matches", "signing_time", "content",
                        "content_encoding", "notes"}   # notes: e.g. a revocation status that could not be had
    assert doc["notes"] == []
    r = run(None, "verify", "--trust", str(cert.parent / "ca.pem"), "--json", "--out", str(tmp_path / "m"),
            input=signed)
    assert json.loads(r.stdout)["content"] is None and (tmp_path / "m").read_bytes().endswith(b"hello\r\n")


def test_verify_json_with_the_signer_certificate_on_stdout_is_still_one_json_object(tmp_path, pki_files):
    """``--json --signer-cert-out -``: the PEM goes into the JSON (as ``--recovery-code-out -`` does), not before it."""
    key, cert = pki_files
    signed = run(None, "sign", "--key", str(key), "--cert", str(cert),
                 input="From: alice@example.test\nSubject: hi\n\nhello\n").stdout
    r = run(None, "verify", "--trust", str(cert.parent / "ca.pem"), "--json", "--signer-cert-out", "-", input=signed)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["signer_cert_pem"] == cert.read_text() and doc["content"].endswith("hello\r\n")


def test_debug_is_a_root_option_only_before_the_command():
    from autosmime.cli._options import given_before_command

    assert given_before_command(cli, normalise_args(cli, ["status", "--debug"]), "--debug")
    assert given_before_command(cli, ["--home", "h", "--debug", "keys"], "--debug")
    assert not given_before_command(cli, normalise_args(cli, ["encrypt", "--to", "--debug"]), "--debug")
    assert not given_before_command(cli, ["--home", "--debug", "keys"], "--debug")  # the home's name
