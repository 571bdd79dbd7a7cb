"""Account flows: check a mailbox login and save the account, with its password in the keyring or a file.

    >>> from autosmime.agent.account import add_account
    >>> add_account(agent, account, password, password_file=None).password_source  # doctest: +SKIP
    'keyring'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autosmime.agent.context import Agent
from autosmime.mailbox.account import Account, save_account

__all__ = ["AccountSaved", "add_account"]


@dataclass(frozen=True)
class AccountSaved:
    account: Account
    password_source: str  # "keyring", "password-file" (its path remembered) or "file" (0600 in the home)
    password_file: Path | None  # the file the password is read from, unless "keyring"


def add_account(agent: Agent, account: Account, password: str, *, password_file: Path | None) -> AccountSaved:
    """Log in to IMAP (through the agent's mailbox) and SMTP; only then save the account.

    The password goes into the OS keyring when one takes it; otherwise the path
    of ``password_file`` is remembered, or (none given) it is kept in a 0600 file
    in the home (:func:`autosmime.mailbox.credentials.keep_password`).
    """
    from autosmime.mailbox.credentials import keep_password
    from autosmime.mailbox.smtp import check_login

    agent.mailbox_factory(account, password).close()
    check_login(account, password)  # a typo in --smtp should fail now, not at the first send
    account, source = keep_password(agent.home, account, password, password_file)
    save_account(agent.home, account)
    return AccountSaved(account, source, Path(account.password_file) if account.password_file else None)
