"""Where a user's mailbox lives: one IMAP/SMTP account per autosmime home.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from autosmime.mailbox.account import Account, save_account, load_account
    >>> home = Path(tempfile.mkdtemp()) / "home"
    >>> acct = Account("a@example.test", "127.0.0.1", 143, "127.0.0.1", 25)
    >>> save_account(home, acct)
    >>> load_account(home) == acct
    True

The password is never part of the account: only the path of a password file
(or nothing, when the OS keyring holds it) is saved.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from autosmime._files import ensure_home, write_private
from autosmime.errors import AccountError

ACCOUNT_FILE = "account.json"
SECURITY_MODES = ("starttls", "tls", "plain")
#: seconds to wait for a connection, and then for each answer, from the IMAP or SMTP server
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 3600.0
#: overrides every account's timeout (e.g. for one slow network): AUTOSMIME_TIMEOUT=30 autosmime backup
TIMEOUT_ENV = "AUTOSMIME_TIMEOUT"


@dataclass
class Account:
    email: str
    imap_host: str
    imap_port: int
    smtp_host: str
    smtp_port: int
    username: str = ""
    security: Literal["starttls", "tls", "plain"] = "starttls"
    ca_file: str | None = None
    password_file: str | None = None
    backup_folder: str = "autosmime-keys"
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        self.timeout = check_timeout(self.timeout, "timeout")
        if not self.username:
            self.username = self.email
        if self.security not in SECURITY_MODES:
            raise AccountError(f"security must be one of {', '.join(SECURITY_MODES)}, not {self.security!r}")
        if "@" not in self.email:
            raise AccountError(f"not an email address: {self.email!r}")
        for name in ("imap_port", "smtp_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                raise AccountError(f"{name.replace('_', ' ')} must be 1-65535, not {port!r}")


def check_timeout(value: object, what: str) -> float:
    """``value`` as seconds, if it is a number in (0, 3600]; AccountError otherwise.

    >>> check_timeout("2.5", "timeout")
    2.5
    """
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not 0 < seconds <= MAX_TIMEOUT:
        raise AccountError(f"{what} must be a number of seconds between 0 and {MAX_TIMEOUT:g}, not {value!r}")
    return seconds


def network_timeout(account: Account) -> float:
    """The connect and read timeout for ``account``'s servers: AUTOSMIME_TIMEOUT if set, else the account's.

    >>> network_timeout(Account("a@example.test", "127.0.0.1", 143, "127.0.0.1", 25, timeout=4))
    4.0
    """
    override = os.environ.get(TIMEOUT_ENV, "").strip()
    return check_timeout(override, TIMEOUT_ENV) if override else account.timeout


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost`` — the only hosts plaintext may go to."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_security(account: Account, host: str) -> None:
    """Refuse plaintext to anything but loopback, before any connection is made."""
    if account.security == "plain" and not is_loopback(host):
        raise AccountError(
            f"security 'plain' sends the password unencrypted; it is allowed only for loopback hosts, not {host}"
        )


def save_account(home: Path, account: Account) -> None:
    """Write HOME/account.json atomically with mode 0600 (HOME is created 0700)."""
    home = Path(home)
    ensure_home(home)
    data = json.dumps(dataclasses.asdict(account), indent=2, sort_keys=True).encode() + b"\n"
    write_private(home / ACCOUNT_FILE, data)


def load_account(home: Path) -> Account:
    path = Path(home) / ACCOUNT_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AccountError("no account configured; run `autosmime account add`") from None
    except OSError as e:
        raise AccountError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        known = {f.name for f in dataclasses.fields(Account)}
        return Account(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError) as e:
        raise AccountError(f"{path} is not a valid account file: {e}") from None
