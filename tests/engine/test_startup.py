"""The engine commands start light: no mailbox, vault, network or server layer is imported.

`autosmime --help`, `autosmime <engine command> --help` and a decrypt with key files run
in a fresh interpreter; the modules it imported are read from ``sys.modules`` at exit.
"""

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("autosmime.vault", "autosmime.mailbox", "autosmime.agent", "autosmime.enroll",
             "autosmime.exchange", "autosmime.servers", "imapclient", "keyring", "sqlalchemy", "starlette")

# Runs the CLI as `python -m autosmime` does, then reports every imported module.
DRIVER = """
import json, runpy, sys
out, sys.argv = sys.argv[1], ["autosmime", *sys.argv[2:]]
try:
    runpy.run_module("autosmime", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
with open(out, "w") as f:
    json.dump(sorted(sys.modules), f)
"""


def _imported(tmp_path, *args, stdin: bytes = b"") -> list[str]:
    out = tmp_path / "modules.json"
    p = subprocess.run([sys.executable, "-c", DRIVER, str(out), "--home", str(tmp_path / "home"), *map(str, args)],
                       input=stdin, capture_output=True, timeout=60)
    assert out.exists(), p.stderr.decode()
    return json.loads(out.read_text())


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


@pytest.mark.parametrize("command", [[], ["sign"], ["verify"], ["encrypt"], ["decrypt"], ["read"]],
                         ids=["root", "sign", "verify", "encrypt", "decrypt", "read"])
def test_help_imports_no_heavy_layer(tmp_path, command):
    assert _heavy(_imported(tmp_path, *command, "--help")) == []


def test_the_top_level_help_loads_no_crypto_at_all(tmp_path):
    """`autosmime --help` lists commands: no certificate or CMS code is needed for that (30 ms of start-up)."""
    modules = _imported(tmp_path, "--help")
    assert [m for m in modules if m.split(".")[0] in ("cryptography", "asn1crypto")
            or m.startswith(("autosmime.pki", "autosmime.smime"))] == []


def test_decrypt_with_key_files_imports_no_heavy_layer(tmp_path, pki):
    from autosmime.smime import encrypt

    bob = pki["carol"]
    message = encrypt(b"From: a@example.test\r\nContent-Type: text/plain\r\n\r\nhi\r\n", [bob.cert])
    modules = _imported(tmp_path, "decrypt", "--key", bob.key_path, "--cert", bob.cert_path, stdin=message)
    assert "autosmime.smime.decrypt" in modules  # it really ran
    assert _heavy(modules) == []
    # What the decrypt command itself needs: not the signature verifier nor the signer.
    assert "autosmime.smime.verify" not in modules and "autosmime.smime.sign" not in modules
