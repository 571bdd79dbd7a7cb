"""The agent's environment: which home, which mailbox, which credentials, who sees a new recovery code.

    >>> from autosmime.agent import Agent
    >>> from autosmime.mailbox.memory import MemoryServer
    >>> server = MemoryServer()
    >>> agent = Agent(home, mailbox_factory=lambda account, password: server.session())  # doctest: +SKIP
    >>> with agent.open_mailbox() as box:                                                # doctest: +SKIP
    ...     box.folder_exists(agent.account().backup_folder)
    False

Everything a flow needs from the outside world comes through this object, so
tests swap the environment (an in-memory mailbox, cheap backup parameters, a
fixed account and password) instead of patching functions. Only the agent
resolves the account and its password and opens mailbox sessions; the vault,
mailbox and PKI code it calls are handed what they need.

Flows are functions taking an :class:`Agent` in modules named for what they
do (``backup``, ``join``, ``keys``, later ``enrol``, ``publish``, ``watch``).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from autosmime.mailbox.account import Account
from autosmime.mailbox.session import MailboxSession
from autosmime.vault.backup import DEFAULT_PARAMS, BackupParams
from autosmime.vault.store import VAULT_FILE, Vault

__all__ = ["Agent", "CodePresenter", "MailboxFactory", "default_device_name", "imap_session"]

#: (account, password) -> an open, logged-in session
MailboxFactory = Callable[[Account, str], MailboxSession]
#: shows a newly created recovery code to the person at the terminal; True if it was shown
CodePresenter = Callable[[str], bool]


def imap_session(account: Account, password: str) -> MailboxSession:
    """The real mailbox: IMAP with the account's timeouts."""
    from autosmime.mailbox.imap import ImapMailbox

    return ImapMailbox.connect(account, password)


def default_device_name() -> str:
    """This machine's name as other devices see it (printable ASCII, at most 64 characters)."""
    name = "".join(ch for ch in socket.gethostname() if ch.isascii() and ch.isprintable())
    return name[:64] or "device"


class Agent:
    """One device's home and the world it talks to."""

    def __init__(self, home: Path, *, mailbox_factory: MailboxFactory = imap_session,
                 present_code: CodePresenter | None = None, backup_params: BackupParams = DEFAULT_PARAMS,
                 device: str | None = None, account: Account | None = None, password: str | None = None,
                 password_file: str | None = None) -> None:
        self.home = Path(home)
        self.mailbox_factory = mailbox_factory
        self.present_code = present_code
        self.backup_params = backup_params
        self.device = device or default_device_name()
        self._account = account
        self._password = password
        self._password_file = password_file

    # --- the account and its credentials -------------------------------------------

    def account(self) -> Account:
        """The account configured in the home (AccountError if none)."""
        if self._account is None:
            from autosmime.mailbox.account import load_account

            self._account = load_account(self.home)
        return self._account

    def password(self) -> str:
        """The mailbox password: --password-file, the account's password file, or the OS keyring."""
        if self._password is None:
            from autosmime.mailbox.credentials import get_password

            self._password = get_password(self.account(), self.home, self._password_file)
        return self._password

    @contextlib.contextmanager
    def open_mailbox(self) -> Iterator[MailboxSession]:
        """A logged-in session, closed (never raising) when the block ends."""
        box = self.mailbox_factory(self.account(), self.password())
        try:
            yield box
        finally:
            box.close()

    # --- the vault -------------------------------------------------------------------

    def has_vault(self) -> bool:
        return (self.home / VAULT_FILE).exists()

    def vault(self, *, create: bool = True) -> Vault:
        """This device's vault (created on first use unless ``create`` is False)."""
        return Vault.open(self.home, create=create)
