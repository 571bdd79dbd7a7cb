"""Where the mailbox password comes from: a password file or the OS keyring.

    >>> from autosmime.mailbox.credentials import keyring_available
    >>> isinstance(keyring_available(), bool)
    True

The password is never written into autosmime's own files; only the path of
a password file the user manages is remembered.
"""

from __future__ import annotations

import os
from pathlib import Path

from autosmime import _keyring
from autosmime.errors import AccountError, KeyFileError
from autosmime.mailbox.account import Account, load_account


def keyring_available() -> bool:
    """True when a real keyring backend (not ``fail``/``null``) is configured."""
    return _keyring.real_keyring() is not None


def read_password_file(path: str | os.PathLike[str]) -> str:
    """The first line of ``path`` (trailing newline removed), as text; AccountError if missing or empty."""
    from autosmime.pki.keys import read_first_line

    try:
        line = read_first_line(path)
    except KeyFileError as e:
        raise AccountError(f"password file: {e}") from None
    try:
        password = line.decode("utf-8")
    except UnicodeDecodeError:
        raise AccountError(f"password file {path} is not UTF-8") from None
    if not password:
        raise AccountError(f"password file {path} is empty")
    return password


def get_password(account: Account, home: Path, password_file: str | None = None) -> str:
    """The password from, in order: ``password_file``, ``account.password_file``, the OS keyring.

    Relative password-file paths are taken relative to ``home``.
    """
    for candidate in (password_file, account.password_file):
        if candidate:
            path = Path(os.path.expanduser(candidate))
            return read_password_file(path if path.is_absolute() else Path(home) / path)
    password = _keyring.get_secret(account.email)
    if password:
        return password
    raise AccountError(f"no password for {account.email}: pass --password-file or store it in the OS keyring "
                       "with `autosmime account add`")


def store_password(account: Account, password: str) -> bool:
    """Save ``password`` in the OS keyring; False when no real keyring exists (or it refuses)."""
    return _keyring.put_secret(account.email, password)


def account_and_password(home: Path, account: Account | None = None,
                         password: str | None = None) -> tuple[Account, str]:
    """The account configured in ``home`` and its password, unless the caller already has them."""
    account = account if account is not None else load_account(home)
    return account, password if password is not None else get_password(account, home)
