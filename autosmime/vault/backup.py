"""Key backup lifecycle: write every key into the user's mailbox, retry when offline, restore.

    >>> from autosmime.vault.store import Vault
    >>> from autosmime.vault.backup import backup_after_change, restore
    >>> vault = Vault.open(home)                                              # doctest: +SKIP
    >>> backup_after_change(vault, recovery_code_out=Path("code.txt"))      # doctest: +SKIP
    'key backup 1 stored in autosmime-keys (2 keys)'
    >>> restore(new_home, code=Path("code.txt").read_text()).keys            # doctest: +SKIP
    2

The invariant everything here serves: the backup folder never lacks a valid
backup. A new backup is APPENDed, fetched back and fully verified with the
recovery code before any older one is deleted, so a connection cut at any
byte leaves either the old backups or the old ones plus the new one.
The format itself is in :mod:`autosmime.vault.format` and docs/backup-format.md.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from autosmime.errors import (
    AccountError,
    AutosmimeError,
    BackupError,
    BackupRejected,
    MailboxError,
    NoBackupFound,
    WrongRecoveryCode,
)
from autosmime.mailbox.credentials import account_and_password
from autosmime.mailbox.imap import ImapMailbox
from autosmime.mailbox.text import server_text
from autosmime.vault import format as fmt

log = logging.getLogger(__name__)

KEEP = 3  # valid backups kept in the folder; older authentic ones are deleted


@dataclass(frozen=True)
class RestoreResult:
    """What a restore imported."""

    seq: int  # sequence number of the backup restored
    created: str  # its creation time (RFC 3339)
    keys: int  # keys in the backup
    added: int  # keys that were new to this device
    skipped: int  # newer candidates that were invalid and skipped


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _claimed_seq(raw: bytes) -> int:
    """The sequence number a message claims (unauthenticated: only for ordering), -1 if unreadable."""
    try:
        return fmt.read_message(raw).manifest.seq
    except BackupRejected:
        return -1


def _newest_first(raws: dict[int, bytes]) -> list[tuple[int, bytes]]:
    return sorted(raws.items(), key=lambda item: (_claimed_seq(item[1]), item[0]), reverse=True)


# Backups already found authentic in this process, so a long-lived device (or
# a retry loop) does not re-run Argon2id on the same messages every time.
# Keys are digests only; bounded.
_AUTHENTIC: OrderedDict[tuple[bytes, bytes, str], fmt.Manifest] = OrderedDict()
_AUTHENTIC_MAX = 64


def _authentic(raw: bytes, code: str, address: str) -> fmt.Manifest | None:
    """The manifest if this backup was written with ``code`` for ``address`` and is intact, else None.

    Cheaper than a full verify (no PKCS#12 decryption): enough to decide which
    of our own older backups may be pruned, since each was fully verified
    when it was written.
    """
    memo = (hashlib.sha256(raw).digest(), hashlib.sha256(code.encode()).digest(), address.lower())
    if memo in _AUTHENTIC:
        _AUTHENTIC.move_to_end(memo)
        return _AUTHENTIC[memo]
    try:
        manifest = fmt.authenticate(raw, code=code, address=address).manifest
    except BackupRejected:
        return None
    _AUTHENTIC[memo] = manifest
    while len(_AUTHENTIC) > _AUTHENTIC_MAX:
        _AUTHENTIC.popitem(last=False)
    return manifest


def _entries(vault):
    entries = list(vault.entries())
    if not entries:
        raise BackupError("the vault holds no keys; nothing to back up")
    return entries


def _code_for(vault, code: str | None) -> str:
    from autosmime.vault.recovery import load_code, normalize

    if code is None:
        code = load_code(vault.home)
        if code is None:
            raise BackupError("no recovery code on this device; run `autosmime backup --recovery-code-out FILE`")
    return normalize(code)


def backup_now(vault, *, account=None, password=None, code: str | None = None) -> int:
    """Write a new backup of every key in ``vault``; returns its sequence number.

    Raises MailboxError (server trouble), AccountError, BackupError. The
    device state (``backup_seq_seen``, ``backup_last_ok``, ``backup_pending``)
    is updated only after the new backup was read back and verified.
    """
    from autosmime.pki.pkcs12 import build_pfx

    code = _code_for(vault, code)
    entries = _entries(vault)
    account, password = account_and_password(vault.home, account, password)
    address = account.email
    folder = account.backup_folder
    pfx = build_pfx(entries, code.encode("utf-8"), iterations=fmt.PFX_ITERATIONS)
    records = [fmt.CertRecord.of(e.cert, e.status) for e in entries]
    seen = int(vault.state.get("backup_seq_seen", 0) or 0)

    with ImapMailbox.connect(account, password) as box:
        box.ensure_folder(folder)
        old = _newest_first(box.fetch(folder, box.search_header(folder, fmt.MARKER_HEADER, fmt.MARKER_VALUE)))
        authentic = [(uid, m) for uid, m in ((uid, _authentic(raw, code, address)) for uid, raw in old) if m]
        seq = max([seen] + [m.seq for _, m in authentic]) + 1

        raw = fmt.build_message(address=address, seq=seq, p12=pfx, certificates=records, code=code)
        uid = box.append(folder, raw, (r"\Seen",))
        if uid is None:  # server without UIDPLUS: find it by its unique Message-ID
            msgid = fmt.read_message_id(raw)
            found = box.search_header(folder, "Message-ID", msgid)
            if len(found) != 1:
                raise BackupError("the new backup could not be found again in the folder")
            uid = found[0]
        stored = box.fetch(folder, [uid]).get(uid)
        if stored is None:
            raise BackupError("the new backup could not be read back from the folder")
        written = fmt.verify_message(stored, code=code, address=address, seq_seen=seq)
        if written.manifest.seq != seq:
            raise BackupError("the backup read back is not the one just written")

        # Only now, with a verified newer backup in place, may old ones go.
        surplus = [uid for uid, _ in authentic[KEEP - 1:]]
        if surplus:
            box.delete(folder, surplus)

    vault.update_state(backup_seq_seen=seq, backup_last_ok=_now(), backup_pending=False,
                       backup_pending_reason=None)
    log.info("key backup %d stored in %s", seq, folder)
    return seq


def _write_code_file(path: Path, code: str) -> None:
    from autosmime._files import write_private

    try:
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, (code + "\n").encode("utf-8"))
    except OSError as e:
        raise BackupError(f"cannot write the recovery code to {path}: {e.strerror}") from None


def _queue(vault, reason: AutosmimeError) -> str:
    # the reason may quote the server: stored (and later shown) only as server_text made it
    vault.update_state(backup_pending=True, backup_pending_reason=server_text(str(reason)))
    return f"key backup pending (will retry): {reason}"


def backup_after_change(vault, *, recovery_code_out: Path | None = None) -> str:
    """Back up after the keys changed; never raises for server trouble, queues instead.

    Creates the recovery code on first use and, when asked, writes it (0600)
    to ``recovery_code_out`` before anything touches the network, so the user
    has it even if the server is down. Returns a one-line status.
    """
    from autosmime.vault.recovery import get_or_create_code

    code = get_or_create_code(vault.home)
    if recovery_code_out is not None:
        _write_code_file(recovery_code_out, code)
    if not vault.entries():  # nothing to lose yet; not a failure to retry
        return "no key backup needed: the vault holds no keys yet"
    try:
        seq = backup_now(vault, code=code)
    except (MailboxError, AccountError, BackupError) as e:
        return _queue(vault, e)
    return f"key backup {seq} stored ({len(vault.entries())} keys)"


def retry_pending(vault) -> str | None:
    """Retry a queued backup; a quick no-op (None) when nothing is pending."""
    if not vault.state.get("backup_pending"):
        return None
    try:
        seq = backup_now(vault)
    except (MailboxError, AccountError, BackupError) as e:
        return _queue(vault, e)
    return f"pending key backup stored as backup {seq}"


def restore(home: Path, *, code: str, account=None, password=None) -> RestoreResult:
    """Import every key of the newest valid backup into the vault at ``home``.

    NoBackupFound (exit 3) when the folder is missing or empty. If no
    candidate is valid, the newest one's error (WrongRecoveryCode,
    BackupRejected, RolledBackBackup) is raised. The local vault is written
    only after a backup passed every check.
    """
    from autosmime.vault.recovery import normalize, save_code
    from autosmime.vault.store import Vault

    home = Path(home)
    code = normalize(code)
    account, password = account_and_password(home, account, password)
    seen = _seq_seen(home)

    with ImapMailbox.connect(account, password) as box:
        folder = account.backup_folder
        if not box.folder_exists(folder):
            raise NoBackupFound(f"no key backup folder {folder!r} in the mailbox")
        uids = box.search_header(folder, fmt.MARKER_HEADER, fmt.MARKER_VALUE)
        if not uids:
            raise NoBackupFound(f"no key backup in the mailbox folder {folder!r}")
        candidates = _newest_first(box.fetch(folder, uids))
    if not candidates:
        raise NoBackupFound(f"no key backup in the mailbox folder {folder!r}")

    rejected: list[tuple[int, BackupRejected]] = []
    backup = None
    for uid, raw in candidates:
        try:  # no diagnosis per candidate: planted messages would each cost a PKCS#12 derivation
            backup = fmt.verify_message(raw, code=code, address=account.email, seq_seen=seen, diagnose=False)
            break
        except BackupRejected as e:
            rejected.append((uid, e))
    if backup is None:
        for uid, e in rejected[1:]:
            log.debug("older key backup (message UID %d) is invalid too: %s", uid, e)
        newest = rejected[0][1]  # the one error shown is worth the derivation that words it
        raise fmt.diagnose(candidates[0][1], code) if isinstance(newest, WrongRecoveryCode) else newest
    for uid, e in rejected:
        log.warning("skipped a newer key backup that is not valid (message UID %d): %s", uid, e)

    vault = Vault.open(home, create=True)
    items = [(pair.key, pair.cert, pair.chain, backup.status_of(pair)) for pair in backup.keys]
    added = vault.add_many(items, source="restore")
    save_code(home, code)
    vault.update_state(backup_seq_seen=max(seen, backup.manifest.seq))
    return RestoreResult(seq=backup.manifest.seq, created=backup.manifest.created, keys=len(backup.keys),
                         added=added, skipped=len(rejected))


def _seq_seen(home: Path) -> int:
    """The highest backup number this device accepted, without creating a vault."""
    from autosmime.vault.store import Vault

    try:
        vault = Vault.open(home, create=False)
    except AutosmimeError:
        return 0
    return int(vault.state.get("backup_seq_seen", 0) or 0)
