"""Account flows: check a mailbox login and save the account, with its password in the keyring or a file.

    >>> from autosmime.agent.account import add_account
    >>> add_account(agent, account, password, password_file=None).password_source  # doctest: +SKIP
    'keyring'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autosmime.agent.context import Agent
from autosmime.errors import UsageError
from autosmime.mailbox.account import Account, save_account

__all__ = ["AccountSaved", "add_account"]


@dataclass(frozen=True)
class AccountSaved:
    account: Account
    password_source: str  # "keyring" or "file"
    password_file: Path | None  # the file whose path was remembered, when "file"


def add_account(agent: Agent, account: Account, password: str, *, password_file: Path | None) -> AccountSaved:
    """Log in to IMAP (through the agent's mailbox) and SMTP; only then save the account.

    The password goes into the OS keyring when one takes it; otherwise only the
    path of ``password_file`` is remembered (UsageError if there is none).
    """
    from autosmime.mailbox.credentials import store_password
    from autosmime.mailbox.smtp import check_login

    agent.mailbox_factory(account, password).close()
    check_login(account, password)  # a typo in --smtp should fail now, not at the first send
    if store_password(account, password):
        source = "keyring"
    elif password_file is not None:
        account.password_file = str(password_file)
        source = "file"
    else:
        raise UsageError("the OS keyring refused the password: pass --password-file")
    save_account(agent.home, account)
    return AccountSaved(account, source, password_file if source == "file" else None)
