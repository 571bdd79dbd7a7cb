"""The user's own mailbox: account settings, credentials, IMAP and SMTP, and the session protocol.

    >>> from autosmime.mailbox import Account, ImapMailbox, MemoryServer, send  # doctest: +SKIP

``session`` names what the key backup needs from a mailbox
(:class:`MailboxSession`); ``imap`` is the real one, ``memory`` the in-memory
one for fast tests. Names are imported on first use, so a command that only
reads the account does not load the IMAP client.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Account": "account", "load_account": "account", "save_account": "account",
    "get_password": "credentials", "keyring_available": "credentials", "store_password": "credentials",
    "ImapMailbox": "imap", "send": "smtp", "MailboxSession": "session",
    "MemoryMailbox": "memory", "MemoryServer": "memory",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autosmime.mailbox' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autosmime.mailbox.{module}"), name)
