"""Account files and password sources (no server needed)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from autosmime.errors import AccountError
from autosmime.mailbox.account import Account, is_loopback, load_account, save_account
from autosmime.mailbox.credentials import get_password, keyring_available, store_password


def make(**kw) -> Account:
    return Account(**{"email": "me@example.test", "imap_host": "127.0.0.1", "imap_port": 143,
                      "smtp_host": "127.0.0.1", "smtp_port": 587, **kw})


def test_username_defaults_to_email():
    assert make().username == "me@example.test"
    assert make(username="me").username == "me"


@pytest.mark.parametrize("bad", [{"security": "ssl"}, {"imap_port": 0}, {"smtp_port": 70000},
                                 {"email": "no-at-sign"}, {"imap_port": "143"}])
def test_invalid_settings(bad):
    with pytest.raises(AccountError):
        make(**bad)


def test_save_load_round_trip_modes(tmp_path):
    home = tmp_path / "new" / "home"
    acct = make(security="tls", ca_file="/x/ca.pem", password_file="/x/pw", backup_folder="Keys")
    save_account(home, acct)
    assert load_account(home) == acct
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home / "account.json").st_mode) == 0o600
    assert [p.name for p in home.iterdir()] == ["account.json"]      # no temp file left
    save_account(home, make(email="other@example.test"))
    assert load_account(home).email == "other@example.test"


def test_load_missing_and_corrupt(tmp_path):
    with pytest.raises(AccountError, match="account add"):
        load_account(tmp_path)
    for content in (b"{not json", b"[1, 2]", json.dumps({"email": "x@y"}).encode()):
        (tmp_path / "account.json").write_bytes(content)
        with pytest.raises(AccountError):
            load_account(tmp_path)


@pytest.mark.parametrize("host,expected", [("127.0.0.1", True), ("127.5.6.7", True), ("::1", True),
                                           ("[::1]", True), ("localhost", True), ("LOCALHOST.", True),
                                           ("10.0.0.1", False), ("example.org", False), ("localhost.evil", False)])
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected


def test_password_sources_in_order(tmp_path):
    explicit = tmp_path / "explicit"
    explicit.write_text("first\nignored\n")
    stored = tmp_path / "stored"
    stored.write_text("second\n")
    acct = make(password_file=str(stored))
    assert get_password(acct, tmp_path, str(explicit)) == "first"
    assert get_password(acct, tmp_path) == "second"
    relative = make(password_file="stored")
    assert get_password(relative, tmp_path) == "second"


def test_password_missing_or_empty(tmp_path):
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(AccountError, match="empty"):
        get_password(make(password_file=str(tmp_path / "empty")), tmp_path)
    with pytest.raises(AccountError, match="cannot read"):
        get_password(make(password_file=str(tmp_path / "missing")), tmp_path)
    if not keyring_available():
        with pytest.raises(AccountError, match="no password"):
            get_password(make(), tmp_path)


def test_keyring_fail_backend_is_not_available(monkeypatch):
    import keyring
    from keyring.backends import fail

    monkeypatch.setattr(keyring, "get_keyring", lambda: fail.Keyring())
    assert keyring_available() is False
    assert store_password(make(), "pw") is False
