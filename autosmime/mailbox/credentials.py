"""Where the mailbox password comes from: a password file or the OS keyring.

    >>> from autosmime.mailbox.credentials import keyring_available
    >>> isinstance(keyring_available(), bool)
    True

Where it is kept after set-up (:func:`keep_password`): the OS keyring; else the
path of the password file the user gave; else, when the user typed it at the
terminal and there is no keyring, a 0600 file in the home (``mail-password``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from autosmime import _keyring
from autosmime.errors import AccountError, KeyFileError
from autosmime.mailbox.account import Account


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


#: the password file kept in the home when there is no keyring and the password was typed
HOME_PASSWORD_FILE = "mail-password"


def keep_password(home: Path, account: Account, password: str,
                  password_file: str | os.PathLike[str] | None = None) -> tuple[Account, str]:
    """Keep ``password`` for ``account`` (not yet saved): the account to save, and where it went.

    "keyring" (the OS keyring took it), "password-file" (no keyring: ``password_file``'s
    absolute path is remembered) or "file" (no keyring, no file given: a 0600 file in ``home``).
    """
    from autosmime._files import ensure_home, write_private

    if store_password(account, password):
        return account, "keyring"
    if password_file is not None:
        path = Path(password_file).expanduser().absolute()
        return dataclasses.replace(account, password_file=str(path)), "password-file"
    ensure_home(Path(home))
    path = (Path(home) / HOME_PASSWORD_FILE).absolute()
    write_private(path, password.encode("utf-8") + b"\n")
    return dataclasses.replace(account, password_file=str(path)), "file"


def password_store(home: Path, account: Account) -> str:
    """Where a saved account's password is kept: "keyring", "file" (in the home) or "password-file"."""
    if not account.password_file:
        return "keyring"
    return "file" if Path(account.password_file) == (Path(home) / HOME_PASSWORD_FILE).absolute() else "password-file"
