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

Security is chosen per protocol: ``security`` holds one mode for both servers
(``"starttls"``, the default, ``"tls"`` or ``"plain"``) or one each, as in
``"imap=tls,smtp=starttls"`` (IMAP on 993 with TLS and submission on 587 with
STARTTLS, the most common pair). Files written before there was a per-protocol
form hold a single mode and load unchanged.

    >>> acct = Account("a@example.test", "imap.example.test", 993, "smtp.example.test", 587,
    ...                security="smtp=starttls, imap=tls")
    >>> acct.security, acct.imap_security, acct.smtp_security
    ('imap=tls,smtp=starttls', 'tls', 'starttls')
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
Security = Literal["starttls", "tls", "plain"]
#: what ``--security`` accepts, for help texts
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
    security: str = "starttls"          # one mode for both servers, or "imap=MODE,smtp=MODE"
    ca_file: str | None = None
    password_file: str | None = None
    backup_folder: str = "autosmime-keys"
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        self.timeout = check_timeout(self.timeout, "timeout")
        if not self.username:
            self.username = self.email
        self.security = format_security(*parse_security(self.security))
        if "@" not in self.email:
            raise AccountError(f"not an email address: {self.email!r}")
        for name in ("imap_port", "smtp_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                raise AccountError(f"{name.replace('_', ' ')} must be 1-65535, not {port!r}")

    @property
    def imap_security(self) -> Security:
        return parse_security(self.security)[0]

    @property
    def smtp_security(self) -> Security:
        return parse_security(self.security)[1]


def parse_security(spec: object) -> tuple[Security, Security]:
    """``(imap, smtp)`` modes of a ``--security`` value; AccountError naming the accepted forms otherwise.

    >>> parse_security("tls"), parse_security("imap=tls,smtp=starttls")
    (('tls', 'tls'), ('tls', 'starttls'))
    """
    text = spec.strip().lower() if isinstance(spec, str) else ""
    modes: dict[str, str] = {}
    if text in SECURITY_MODES:
        modes = {"imap": text, "smtp": text}
    elif "=" in text:
        for part in text.split(","):
            key, _, mode = (p.strip() for p in part.partition("="))
            if key not in ("imap", "smtp") or key in modes or mode not in SECURITY_MODES:
                modes = {}
                break
            modes[key] = mode
    if set(modes) != {"imap", "smtp"}:
        raise AccountError(f"security must be one of {', '.join(SECURITY_MODES)} or imap=MODE,smtp=MODE "
                           f"(e.g. imap=tls,smtp=starttls), not {spec!r}")
    return modes["imap"], modes["smtp"]  # type: ignore[return-value]


def format_security(imap: str, smtp: str) -> str:
    """The one spelling of a pair of modes: a single mode when both are the same.

    >>> format_security("tls", "tls"), format_security("tls", "starttls")
    ('tls', 'imap=tls,smtp=starttls')
    """
    return imap if imap == smtp else f"imap={imap},smtp={smtp}"


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


def check_security(mode: str, host: str) -> None:
    """Refuse plaintext to anything but loopback, before any connection is made."""
    if mode == "plain" and not is_loopback(host):
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
        raise AccountError("no account configured: run `autosmime setup ADDRESS` (or `autosmime account add`)") from None
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
