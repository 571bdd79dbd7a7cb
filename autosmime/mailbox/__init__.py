"""The user's own mailbox: account settings, credentials, IMAP and SMTP.

    >>> from autosmime.mailbox import Account, ImapMailbox, send  # doctest: +SKIP
"""

from autosmime.mailbox.account import Account, load_account, save_account
from autosmime.mailbox.credentials import get_password, keyring_available, store_password
from autosmime.mailbox.imap import ImapMailbox
from autosmime.mailbox.smtp import send

__all__ = ["Account", "ImapMailbox", "get_password", "keyring_available", "load_account", "save_account",
           "send", "store_password"]
