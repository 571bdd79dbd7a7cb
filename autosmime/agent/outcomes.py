"""What the agent's flows return: typed results for the CLI (or any other front end) to word.

    >>> from autosmime.agent.outcomes import BackupOutcome, BackupState
    >>> BackupOutcome(BackupState.STORED, seq=3, keys=2).stored
    True

No sentences and no raw vault-state names: the front end decides the words.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Approval", "BackupOutcome", "BackupState", "DeviceStatus", "ImportOutcome", "ImportedKey",
           "InviteOutcome", "KeySummary", "RestoreOutcome"]


class BackupState(enum.Enum):
    STORED = "stored"  # written and verified in the mailbox
    PENDING = "pending"  # could not be written; queued for a retry
    NOTHING = "nothing"  # the vault holds no keys: nothing to back up


@dataclass(frozen=True)
class BackupOutcome:
    state: BackupState
    seq: int | None = None  # the backup's sequence number when stored
    keys: int = 0  # keys in it
    merged: int = 0  # keys taken in from other devices' backups first
    reason: str | None = None  # why it is pending (one line, safe to show)
    code_created: bool = False  # a new recovery code was made for the account
    code_shown: bool = False  # ... and shown on the terminal
    code_file: Path | None = None  # ... or written to this file
    was_pending: bool = False  # this stored a backup that had been queued
    unauthentic: int = 0  # newest messages in the folder the code does not authenticate (planted?)

    @property
    def stored(self) -> bool:
        return self.state is BackupState.STORED

    @property
    def pending(self) -> bool:
        return self.state is BackupState.PENDING


@dataclass(frozen=True)
class CodeShown:
    """``recovery-code show``: the code, and whether it opens the account's backups now."""

    code: str
    opens: bool | None  # None: not checked (no account, or the mailbox could not be reached)
    backups: int = 0    # authentic backups the code opens among the newest examined
    detail: str = ""    # why it does not open them, or why it was not checked


@dataclass(frozen=True)
class RestoreOutcome:
    seq: int  # the newest backup restored
    created: str  # its creation time, RFC 3339
    keys: int  # keys the account's backups hold
    added: int  # keys new to this device
    skipped: int  # newer invalid candidates skipped
    unauthentic: int = 0  # candidates examined that the code does not authenticate (planted?)


@dataclass(frozen=True)
class ImportedKey:
    fingerprint: str
    address: str | None
    subject: str
    status: str = "active"  # as stored after the import
    kept_active: str | None = None  # the valid CA-issued key's fingerprint that stayed active instead of this one
    not_for_account: str | None = None  # the account's address, when this key is not for it (imported retired)


@dataclass(frozen=True)
class ImportOutcome:
    new: tuple[ImportedKey, ...]  # keys the file added (empty: all were held already)
    backup: BackupOutcome


@dataclass(frozen=True)
class Approval:
    device: str  # the new device's name, as its request gave it
    c2: str  # the code the new device must show
    invited: bool = False  # answered on an invitation: nothing to compare


@dataclass(frozen=True)
class InviteOutcome:
    code: str = field(repr=False)  # the invitation code, to type on the new device (shown once)
    invite_id: str
    expires: str  # ISO 8601 UTC


@dataclass(frozen=True)
class KeySummary:
    fingerprint: str
    not_after: str  # ISO 8601


@dataclass(frozen=True)
class DeviceStatus:
    """This device at a glance; computed without any network."""

    home: Path
    account: dict | None  # email, imap, smtp, security, backup_folder
    keys: dict[str, int] = field(default_factory=dict)  # effective status -> count
    signing: KeySummary | None = None
    encryption: KeySummary | None = None
    backup_pending: bool = False
    backup_pending_reason: str | None = None
    backup_last_ok: str | None = None
    backup_seq_seen: int | None = None
    recovery_code_stored: bool = False
    recovery_code_unseen: bool = False  # created here but never shown nor written out


@dataclass(frozen=True)
class KeyChange:
    fingerprint: str
    address: str | None
    status: str  # the status now stored
    changed: bool  # False: it already had that status
    retired: tuple[str, ...] = ()  # fingerprints activating it retired
    no_active_left: bool = False  # retiring it left its address without an active key
    backup: BackupOutcome | None = None
