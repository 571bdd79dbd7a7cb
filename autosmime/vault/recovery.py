"""The recovery code: the one secret that opens this user's key backups.

    >>> from autosmime.vault.recovery import new_code, normalize
    >>> code = new_code()
    >>> len(code.replace("-", "")), code.count("-")
    (28, 6)
    >>> normalize(code.lower().replace("-", " ")) == code
    True

28 characters of Crockford base32 (0-9, A-Z without I, L, O, U) = 140 bits
from :mod:`secrets`, shown in seven groups of four. Typing is forgiving:
case, spaces and dashes do not matter, and O/I/L read as 0/1/1.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from autosmime.errors import WrongRecoveryCode
from autosmime.vault._secrets import get_secret, put_secret

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 28
GROUP = 4
BITS = LENGTH * 5
CODE_FILE = "recovery-code"
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1"})


def _grouped(chars: str) -> str:
    return "-".join(chars[i:i + GROUP] for i in range(0, len(chars), GROUP))


def new_code(length: int = LENGTH) -> str:
    """A fresh code: 140 random bits, e.g. ``"7K3Q-..."`` (7 groups of 4); ``length`` characters
    of 5 bits each for other uses (an export password)."""
    return _grouped("".join(secrets.choice(ALPHABET) for _ in range(length)))


def typed_chars(text: str) -> str:
    """What the user typed, as the base32 characters meant: no spaces or dashes, upper case, O/I/L as 0/1/1."""
    return "".join(ch for ch in str(text) if not ch.isspace() and ch not in "-_").upper().translate(_CONFUSABLE)


def normalize(text: str) -> str:
    """What the user typed -> the code exactly as shown; WrongRecoveryCode if it cannot be one."""
    chars = typed_chars(text)
    if len(chars) != LENGTH or any(ch not in ALPHABET for ch in chars):
        raise WrongRecoveryCode(
            f"that is not a recovery code: it has {LENGTH} letters and digits in groups of {GROUP}"
        )
    return _grouped(chars)


def load_code(home: Path) -> str | None:
    """The code saved on this device, or None."""
    stored = get_secret(Path(home), "recovery-code", CODE_FILE)
    if stored is None:
        return None
    try:
        return normalize(stored)
    except WrongRecoveryCode:
        return None


def save_code(home: Path, code: str) -> None:
    """Keep the code on this device (OS keyring when real, else HOME/recovery-code 0600)."""
    put_secret(Path(home), "recovery-code", CODE_FILE, normalize(code))


def get_or_create_code(home: Path) -> str:
    """The saved code, or a new one saved now."""
    code = load_code(home)
    if code is None:
        code = new_code()
        save_code(home, code)
    return code
