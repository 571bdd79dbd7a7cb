"""A provider that accepts the connection but never answers: every IMAP and SMTP operation fails with
MailboxTimeout (a MailboxError) after the configured timeout, instead of hanging.

The servers are SilentServer sockets on loopback; the timeouts are short so the suite stays fast. What is
asserted is the error, not a duration.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from autosmime.devstack.faultproxy import SilentServer
from autosmime.errors import AccountError, MailboxError, MailboxTimeout
from autosmime.mailbox.account import DEFAULT_TIMEOUT, TIMEOUT_ENV, Account, load_account, network_timeout, save_account
from autosmime.mailbox.imap import ImapMailbox
from autosmime.mailbox.smtp import check_login, send

pytestmark = pytest.mark.timeout(120)

SHORT = 0.5
IMAP_GREETING = b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] ready\r\n"
SMTP_GREETING = b"220 mail.example.test ESMTP ready\r\n"


def _account(port: int, security: str = "plain", timeout: float = SHORT) -> Account:
    return Account("a@example.test", "127.0.0.1", port, "127.0.0.1", port, security=security,  # type: ignore[arg-type]
                   timeout=timeout)


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch):
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)


@pytest.mark.parametrize("security", ["plain", "tls", "starttls"])
def test_imap_server_that_never_greets(security):
    with SilentServer() as silent:
        with pytest.raises(MailboxTimeout, match="timed out"):
            ImapMailbox.connect(_account(silent.port, security), "pw")
        assert silent.connections == 1


@pytest.mark.parametrize("security", ["plain", "starttls"])
def test_imap_server_that_greets_then_never_answers(security):
    """The read timeout: the greeting arrives, the answer to STARTTLS or LOGIN never does."""
    with SilentServer(IMAP_GREETING) as silent:
        with pytest.raises(MailboxTimeout, match="timed out"):
            ImapMailbox.connect(_account(silent.port, security), "pw")


@pytest.mark.parametrize("security", ["plain", "tls", "starttls"])
def test_smtp_server_that_never_greets(security):
    with SilentServer() as silent:
        with pytest.raises(MailboxTimeout, match="timed out"):
            check_login(_account(silent.port, security), "pw")
        with pytest.raises(MailboxTimeout):
            send(_account(silent.port, security), "pw", b"Subject: x\r\n\r\nx\r\n", "a@example.test", ["b@example.test"])


def test_smtp_server_that_greets_then_never_answers():
    with SilentServer(SMTP_GREETING) as silent:
        with pytest.raises(MailboxTimeout, match="timed out"):
            check_login(_account(silent.port), "pw")


def test_timeout_is_a_mailbox_error():
    """Callers that handle MailboxError (the backup queue among them) handle a timeout too."""
    assert issubclass(MailboxTimeout, MailboxError)


def test_account_timeout_is_used_when_none_is_passed(monkeypatch):
    """No timeout argument: the account's (here short) one applies, not a long default."""
    with SilentServer() as silent:
        with pytest.raises(MailboxTimeout):
            ImapMailbox.connect(_account(silent.port, timeout=SHORT), "pw")


def test_env_overrides_the_account(monkeypatch):
    """AUTOSMIME_TIMEOUT wins over an account's hour-long timeout: the connect fails at once."""
    monkeypatch.setenv(TIMEOUT_ENV, str(SHORT))
    slow = _account(1, timeout=3600)
    assert network_timeout(slow) == SHORT
    with SilentServer() as silent:
        with pytest.raises(MailboxTimeout):
            ImapMailbox.connect(dataclasses.replace(slow, imap_port=silent.port), "pw")
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(AccountError, match=TIMEOUT_ENV):
        network_timeout(slow)


def test_default_and_stored_timeout(tmp_path):
    assert Account("a@example.test", "127.0.0.1", 143, "127.0.0.1", 25).timeout == DEFAULT_TIMEOUT == 10
    save_account(tmp_path / "home", _account(143, timeout=2.5))
    assert load_account(tmp_path / "home").timeout == 2.5


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 1e9, "x", True, None])
def test_bad_timeouts_are_refused(bad):
    with pytest.raises(AccountError):
        _account(143, timeout=bad)


def test_cli_account_add_against_a_silent_server(tmp_path):
    """`account add` checks the login: against a hung server it fails in one line, within the --timeout."""
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    with SilentServer() as silent:
        r = subprocess.run([sys.executable, "-m", "autosmime", "--home", str(tmp_path / "home"), "account", "add",
                            "--email", "a@example.test", "--imap", f"127.0.0.1:{silent.port}",
                            "--smtp", f"127.0.0.1:{silent.port}", "--security", "plain", "--password-file", str(pw),
                            "--timeout", str(SHORT)],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("autosmime: error: IMAP server 127.0.0.1:") and "timed out" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
