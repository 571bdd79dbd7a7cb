"""Key backup flows: back up, queue and retry, restore, and the account's one recovery code.

    >>> from autosmime.agent import Agent
    >>> from autosmime.agent.backup import backup, restore
    >>> backup(Agent(home), recovery_code_out=Path("code.txt")).seq          # doctest: +SKIP
    1
    >>> restore(Agent(new_home), Path("code.txt").read_text()).keys          # doctest: +SKIP
    2

The queue: a backup that cannot reach the server is marked pending in the
vault state (with the reason, one line) and retried by the next ``backup``,
by the next command that changes keys (``import``, ``restore``), and by the
agent's watch; never by commands that need no network.

One recovery code per account: a device without the code creates one only
when the folder holds no backup at all; otherwise it stops with
RecoveryCodeNeeded (exit 4): restore or join first, or rotate on purpose.
The code is shown once when it is created (``Agent.present_code``) and/or
written to ``--recovery-code-out``; until either happened, ``status`` warns.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
from pathlib import Path

from autosmime.agent.context import Agent
from autosmime.agent.outcomes import BackupOutcome, BackupState, CodeShown, RestoreOutcome
from autosmime.errors import AccountError, AutosmimeError, BackupError, MailboxError, RecoveryCodeNeeded
from autosmime.mailbox.session import MailboxSession
from autosmime.vault import backup as protocol
from autosmime.vault.recovery import load_code, new_code, normalize, save_code
from autosmime.vault.store import Vault

__all__ = ["after_key_change", "backup", "check_code_for_account", "restore", "retry_pending", "rotate_code",
           "show_code"]

log = logging.getLogger(__name__)

# Vault state names (the agent's own bookkeeping; callers get typed outcomes)
PENDING = "backup_pending"
PENDING_REASON = "backup_pending_reason"
LAST_OK = "backup_last_ok"
CODE_UNSEEN = "recovery_code_unseen"
SEQ_SEEN = "backup_seq_seen"
VERIFIED = "backup_verified"  # the newest backup's last check (also written by agent.watch's daily check)

_NEED_CODE = ("this account already has key backups under a recovery code this device does not have; "
              "run `autosmime restore` with that code or `autosmime restore --join` first "
              "(or `autosmime recovery-code rotate` to replace the code for every device)")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reason(e: AutosmimeError) -> str:
    """The pending reason: it may quote the server, so it is stored (and shown) only as server_text made it."""
    from autosmime.mailbox.text import server_text

    return server_text(str(e))


def _write_code_file(path: Path, code: str) -> None:
    from autosmime._files import write_private

    try:
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, (code + "\n").encode("utf-8"))
    except OSError as e:
        raise BackupError(f"cannot write the recovery code to {path}: {e.strerror}") from None


def _hand_over(agent: Agent, vault: Vault, code: str, out: Path | None, *, created: bool) -> tuple[bool, bool]:
    """Write the code to ``out`` and, if new, show it once; returns (shown, written)."""
    if created:  # unseen until shown or written: a write that fails below (a bad path) leaves it flagged
        vault.update_state(**{CODE_UNSEEN: True})
    written = False
    if out is not None:
        _write_code_file(out, code)
        written = True
    shown = bool(created and agent.present_code is not None and agent.present_code(code))
    if shown or written:
        vault.update_state(**{CODE_UNSEEN: None})
    return shown, written


def check_code_for_account(agent: Agent, box: MailboxSession) -> None:
    """RecoveryCodeNeeded if this device has no recovery code but the folder holds backups (someone's code)."""
    if load_code(agent.home) is not None:
        return
    account = agent.account()
    scan = protocol.scan_folder(box, account.backup_folder, address=account.email, code=None,
                                params=agent.backup_params)
    if scan.others:
        raise RecoveryCodeNeeded(_NEED_CODE)


def _store(agent: Agent, vault: Vault, box: MailboxSession, code: str) -> protocol.Written:
    written = protocol.write_backup(box, vault, agent.account(), code, params=agent.backup_params,
                                    device=agent.device)
    now = _now()  # write_backup read it back and verified it: that is this backup's health check too
    vault.update_state(**{LAST_OK: now, PENDING: False, PENDING_REASON: None,
                          VERIFIED: {"at": now, "ok": True, "seq": written.seq, "keys": written.keys, "by": "backup",
                                    "unauthentic": written.unauthentic}})
    return written


def _run(agent: Agent, vault: Vault, *, recovery_code_out: Path | None, queue: bool) -> BackupOutcome:
    """Back up now; with ``queue``, server trouble marks the backup pending instead of raising."""
    was_pending = bool(vault.state.get(PENDING))
    code = load_code(agent.home)
    created = shown = False
    written_to = None
    if code is not None and recovery_code_out is not None:
        _hand_over(agent, vault, code, recovery_code_out, created=False)
        written_to = recovery_code_out
    if not vault.entries():
        return BackupOutcome(BackupState.NOTHING, code_file=written_to)
    try:
        with agent.open_mailbox() as box:
            if code is None:
                check_code_for_account(agent, box)
                code = new_code()
                save_code(agent.home, code)
                created = True
                shown, wrote = _hand_over(agent, vault, code, recovery_code_out, created=True)
                written_to = recovery_code_out if wrote else None
            result = _store(agent, vault, box, code)
    except RecoveryCodeNeeded:
        raise
    except (MailboxError, AccountError, BackupError) as e:
        if not queue:
            raise
        vault.update_state(**{PENDING: True, PENDING_REASON: _reason(e)})
        return BackupOutcome(BackupState.PENDING, keys=len(vault.entries()), reason=_reason(e),
                             code_created=created, code_shown=shown, code_file=written_to, was_pending=was_pending)
    return BackupOutcome(BackupState.STORED, seq=result.seq, keys=result.keys, merged=result.merged,
                         code_created=created, code_shown=shown, code_file=written_to, was_pending=was_pending,
                         unauthentic=result.unauthentic)


def backup(agent: Agent, *, recovery_code_out: Path | None = None, queue: bool = True) -> BackupOutcome:
    """``autosmime backup``: store a backup now (sending a queued one with it).

    Server trouble makes a PENDING outcome (queued), or raises with ``queue``
    False; RecoveryCodeNeeded is always raised.
    """
    return _run(agent, agent.vault(), recovery_code_out=recovery_code_out, queue=queue)


def after_key_change(agent: Agent, *, recovery_code_out: Path | None = None) -> BackupOutcome:
    """Back up after the keys changed (import, restore, enrolment): what every key-changing flow calls."""
    return _run(agent, agent.vault(), recovery_code_out=recovery_code_out, queue=True)


def retry_pending(agent: Agent) -> BackupOutcome | None:
    """Retry a queued backup; None (and no network) when nothing is pending."""
    if not agent.has_vault():
        return None
    vault = agent.vault(create=False)
    if not vault.state.get(PENDING):
        return None
    return _run(agent, vault, recovery_code_out=None, queue=True)


def restore(agent: Agent, code: str, *, examine: int | None = None) -> RestoreOutcome:
    """Restore every key of the account's backups with ``code`` (then a queued backup of this device's own
    keys, if any, goes out too).

    ``examine``: how many of the newest backup messages to examine (default
    ``MAX_CANDIDATES``); the user raises it when NoAuthenticBackup says
    messages planted in front of the real backups hid them. Each one costs
    at most one Argon2id run, so the bound is the user's choice of cost.
    """
    code = normalize(code)
    params = agent.backup_params
    if examine is not None:
        if examine < 1:
            raise BackupError("--examine needs at least 1 message")
        params = dataclasses.replace(params, max_candidates=examine)
    with agent.open_mailbox() as box:
        result = protocol.restore_backup(box, agent.account(), code, agent.home, params=params)
    vault = agent.vault(create=False)
    vault.update_state(**{CODE_UNSEEN: None})  # the user typed or kept it: it is not unseen
    if vault.state.get(PENDING):
        try:
            retry_pending(agent)
        except RecoveryCodeNeeded:  # pragma: no cover - the code was just saved
            pass
    return RestoreOutcome(seq=result.seq, created=result.created, keys=result.keys, added=result.added,
                          skipped=result.skipped, unauthentic=result.unauthentic)


def rotate_code(agent: Agent, *, recovery_code_out: Path | None = None) -> BackupOutcome:
    """Replace the account's recovery code: a full backup under a new code, verified, then the old backups go.

    The keys of the backups under the old code (when this device has it) are
    merged first. The new code is saved and handed over only after its backup
    verified in place, and the old backups are deleted only after that.
    """
    vault = agent.vault()
    if not vault.entries():
        raise BackupError("the vault holds no keys; restore or import keys before rotating the recovery code")
    old = load_code(agent.home)
    account = agent.account()
    fresh = new_code()
    with agent.open_mailbox() as box:
        old_found: tuple[protocol.Found, ...] = ()
        if old is not None:
            scan = protocol.scan_folder(box, account.backup_folder, address=account.email, code=old,
                                        params=agent.backup_params, known=protocol.known_backups(vault))
            old_found = scan.authentic
            protocol.take_in(vault, old_found, old, account.email)
        result = protocol.write_backup(box, vault, account, fresh, params=agent.backup_params, device=agent.device,
                                       new_code=True)
        save_code(agent.home, fresh)
        shown, wrote = _hand_over(agent, vault, fresh, recovery_code_out, created=True)
        vault.update_state(**{LAST_OK: _now(), PENDING: False, PENDING_REASON: None})
        protocol.remove_backups(box, account.backup_folder, old_found)
    return BackupOutcome(BackupState.STORED, seq=result.seq, keys=result.keys, merged=result.merged,
                         code_created=True, code_shown=shown, code_file=recovery_code_out if wrote else None)


def show_code(agent: Agent, *, check: bool = True) -> CodeShown:
    """The recovery code saved on this device, for ``recovery-code show``; marks it seen.

    With ``check``, it is tried on the account's backup folder (one key derivation), so a code that
    another device rotated away is never handed out as if it still worked.
    """
    code = load_code(agent.home)
    if code is None:
        raise BackupError("no recovery code on this device; run `autosmime restore` or `autosmime restore --join`")
    if agent.has_vault():
        agent.vault(create=False).update_state(**{CODE_UNSEEN: None})
    if not check:
        return CodeShown(code, None, detail="not checked")
    try:
        account = agent.account()
        with agent.open_mailbox() as box:
            scan = protocol.scan_folder(box, account.backup_folder, address=account.email, code=code,
                                        params=agent.backup_params,
                                        known=protocol.known_backups(agent.vault(create=False)) if agent.has_vault() else None)
    except (AccountError, MailboxError) as e:
        return CodeShown(code, None, detail=f"not checked against the mailbox backups: {_reason(e)}")
    if scan.authentic:
        return CodeShown(code, True, backups=len(scan.authentic))
    if scan.others:
        return CodeShown(code, False, detail=(
            "this code opens none of the key backups in the mailbox: it was rotated on another device (or the "
            "newest messages there are planted); get the current code from that device, or `autosmime restore "
            "--join`"))
    return CodeShown(code, None, detail="no key backup in the mailbox yet to check it against")
