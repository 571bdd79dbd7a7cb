"""Security per protocol (IMAP on 993 with TLS and submission on 587 with STARTTLS is the common pair), and a
wrong mode failing fast with a hint instead of after the whole timeout.

Against the devstack's real Dovecot (imap and imaps listeners) and SMTP (STARTTLS and implicit-TLS ports).
"Fast" is shown by the error, never by a clock: the accounts here have a 60 s timeout, and the failure is
the greeting check's hint, not the "timed out (no answer)" the full timeout would end in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autosmime.errors import AccountError, MailboxTimeout, TLSFailure
from autosmime.mailbox.account import Account, format_security, load_account, parse_security, save_account
from autosmime.mailbox.imap import ImapMailbox
from autosmime.mailbox.smtp import check_login
from tests.autopilot.conftest import Stack, run_cli

SLOW = 60.0


def _account(stack: Stack, address: str, security: str, imap_port: int, smtp_port: int) -> Account:
    return Account(address, "127.0.0.1", imap_port, "127.0.0.1", smtp_port, security=security,
                   ca_file=stack.env["MAIL_CA_FILE"], timeout=SLOW)


# --- the setting ------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "pair", "stored"), [
    ("starttls", ("starttls", "starttls"), "starttls"),
    ("tls", ("tls", "tls"), "tls"),
    (" TLS ", ("tls", "tls"), "tls"),
    ("imap=tls,smtp=starttls", ("tls", "starttls"), "imap=tls,smtp=starttls"),
    ("smtp=starttls, imap=tls", ("tls", "starttls"), "imap=tls,smtp=starttls"),
    ("imap=tls,smtp=tls", ("tls", "tls"), "tls"),
    ("imap=plain,smtp=plain", ("plain", "plain"), "plain"),
])
def test_security_forms(spec: str, pair: tuple[str, str], stored: str) -> None:
    assert parse_security(spec) == pair
    assert format_security(*pair) == stored
    acct = Account("a@example.test", "127.0.0.1", 993, "127.0.0.1", 587, security=spec)
    assert (acct.imap_security, acct.smtp_security, acct.security) == (*pair, stored)


@pytest.mark.parametrize("bad", ["ssl", "", "imap=tls", "smtp=starttls", "imap=tls,imap=plain",
                                 "imap=tls,smtp=ssl", "pop=tls,smtp=tls", "imap=tls;smtp=tls", None, 3])
def test_bad_security_is_refused(bad: object) -> None:
    with pytest.raises(AccountError, match="imap=MODE,smtp=MODE"):
        Account("a@example.test", "127.0.0.1", 993, "127.0.0.1", 587, security=bad)  # type: ignore[arg-type]


def test_account_files_old_and_new(tmp_path: Path) -> None:
    """An account.json from before per-protocol security (one mode) loads unchanged; the new form round-trips."""
    old = {"email": "a@example.test", "imap_host": "127.0.0.1", "imap_port": 993, "smtp_host": "127.0.0.1",
           "smtp_port": 465, "username": "a@example.test", "security": "tls", "ca_file": None,
           "password_file": None, "backup_folder": "autosmime-keys", "timeout": 10.0}
    (tmp_path / "account.json").write_text(json.dumps(old))
    acct = load_account(tmp_path)
    assert (acct.security, acct.imap_security, acct.smtp_security) == ("tls", "tls", "tls")

    mixed = Account("a@example.test", "127.0.0.1", 993, "127.0.0.1", 587, security="imap=tls,smtp=starttls")
    save_account(tmp_path / "new", mixed)
    assert json.loads((tmp_path / "new" / "account.json").read_text())["security"] == "imap=tls,smtp=starttls"
    assert load_account(tmp_path / "new") == mixed


def test_plain_is_loopback_only_per_protocol() -> None:
    """imap=tls,smtp=plain to a remote SMTP server is refused before anything connects."""
    acct = Account("a@example.test", "127.0.0.1", 993, "192.0.2.1", 25, security="imap=tls,smtp=plain")
    with pytest.raises(AccountError, match="loopback"):
        check_login(acct, "pw")


def test_cli_bad_security_is_a_usage_error(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    r = run_cli("--home", str(tmp_path / "h"), "account", "add", "--email", "a@example.test", "--imap", "127.0.0.1",
                "--smtp", "127.0.0.1", "--security", "imap=tls", "--password-file", str(pw))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("autosmime: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "imap=MODE,smtp=MODE" in r.stderr
    assert not (tmp_path / "h" / "account.json").exists()
    help_text = run_cli("account", "add", "--help").stdout
    assert "imap=tls,smtp=starttls" in " ".join(help_text.split())


# --- against the real servers -------------------------------------------------------------------


def test_imap_tls_with_smtp_starttls(stack: Stack, fresh_address: str) -> None:
    """The common pair works: IMAP with TLS from the start, SMTP upgraded with STARTTLS."""
    mail = stack.mail
    acct = _account(stack, fresh_address, "imap=tls,smtp=starttls", mail.imaps_port, mail.smtp_port)  # type: ignore[attr-defined]
    password = stack.password(fresh_address)
    with ImapMailbox.connect(acct, password) as box:
        assert box.folder_exists("INBOX")
    check_login(acct, password)


def test_cli_account_add_with_the_common_pair(stack: Stack, fresh_address: str, tmp_path: Path) -> None:
    mail = stack.mail
    home = tmp_path / "home"
    r = run_cli("--home", str(home), "account", "add", "--email", fresh_address,
                "--imap", f"127.0.0.1:{mail.imaps_port}", "--smtp", f"127.0.0.1:{mail.smtp_port}",  # type: ignore[attr-defined]
                "--security", "imap=tls,smtp=starttls", "--ca-file", stack.env["MAIL_CA_FILE"],
                "--password-file", str(stack.password_file(fresh_address)))
    assert r.returncode == 0, r.stderr
    shown = json.loads(run_cli("--home", str(home), "account", "show", "--json").stdout)
    assert shown["security"] == "imap=tls,smtp=starttls"
    acct = load_account(home)
    assert (acct.imap_security, acct.smtp_security) == ("tls", "starttls")


def test_starttls_on_the_implicit_tls_imap_port_fails_with_a_hint(stack: Stack, fresh_address: str) -> None:
    mail = stack.mail
    acct = _account(stack, fresh_address, "starttls", mail.imaps_port, mail.smtp_port)  # type: ignore[attr-defined]
    with pytest.raises(MailboxTimeout) as e:
        ImapMailbox.connect(acct, stack.password(fresh_address))
    assert "no plain-text greeting within 3 s" in str(e.value)
    assert "try --security tls (or imap=tls)" in str(e.value)


def test_tls_on_the_plaintext_imap_port_fails_with_a_hint(stack: Stack, fresh_address: str) -> None:
    mail = stack.mail
    acct = _account(stack, fresh_address, "tls", mail.imap_port, mail.smtps_port)  # type: ignore[attr-defined]
    with pytest.raises(TLSFailure, match=r"answered in plain text.*try --security starttls \(or imap=starttls\)"):
        ImapMailbox.connect(acct, stack.password(fresh_address))


def test_starttls_on_the_implicit_tls_smtp_port_fails_with_a_hint(stack: Stack, fresh_address: str) -> None:
    mail = stack.mail
    acct = _account(stack, fresh_address, "imap=tls,smtp=starttls", mail.imaps_port, mail.smtps_port)  # type: ignore[attr-defined]
    with pytest.raises(MailboxTimeout, match=r"SMTP server .*try --security tls \(or smtp=tls\)"):
        check_login(acct, stack.password(fresh_address))


def test_tls_on_the_plaintext_smtp_port_fails_with_a_hint(stack: Stack, fresh_address: str) -> None:
    mail = stack.mail
    acct = _account(stack, fresh_address, "tls", mail.imaps_port, mail.smtp_port)  # type: ignore[attr-defined]
    with pytest.raises(TLSFailure, match=r"SMTP server .*answered in plain text.*\(or smtp=starttls\)"):
        check_login(acct, stack.password(fresh_address))


def test_cli_wrong_mode_is_one_line_with_the_hint(stack: Stack, fresh_address: str, tmp_path: Path) -> None:
    mail = stack.mail
    r = run_cli("--home", str(tmp_path / "home"), "account", "add", "--email", fresh_address,
                "--imap", f"127.0.0.1:{mail.imaps_port}", "--smtp", f"127.0.0.1:{mail.smtp_port}",  # type: ignore[attr-defined]
                "--security", "starttls", "--ca-file", stack.env["MAIL_CA_FILE"], "--timeout", str(SLOW),
                "--password-file", str(stack.password_file(fresh_address)))
    assert r.returncode == 1
    assert r.stderr.startswith("autosmime: error: IMAP server 127.0.0.1:")
    assert "try --security tls" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "home" / "account.json").exists()
