"""Key flows that need no CA: import a PKCS#12 file, and this device's status.

    >>> from autosmime.agent.keys import import_file, device_status
    >>> outcome = import_file(agent, data, b"password")              # doctest: +SKIP
    >>> len(outcome.new), outcome.backup.state                       # doctest: +SKIP
    (2, <BackupState.STORED: 'stored'>)
    >>> device_status(agent).recovery_code_unseen                    # doctest: +SKIP
    False
"""

from __future__ import annotations

from autosmime.agent import backup as backups
from autosmime.agent.context import Agent
from autosmime.agent.outcomes import DeviceStatus, ImportedKey, ImportOutcome, KeySummary
from autosmime.errors import AccountError, MailboxError, NoKey
from autosmime.pki.certs import fingerprint

__all__ = ["device_status", "import_file"]


def import_file(agent: Agent, data: bytes, password: bytes | None, *,
                recovery_code_out: object = None) -> ImportOutcome:
    """Add every key of a PKCS#12 file to the vault, then back up (queued if the server is unreachable).

    On a device without the recovery code whose account already has backups
    this stops first, before adding anything (RecoveryCodeNeeded, exit 4).
    """
    from pathlib import Path

    from autosmime.pki.pkcs12 import parse_pfx
    from autosmime.vault.recovery import load_code

    pairs = parse_pfx(data, password, require_protected=False)  # a wrong password changes nothing
    if load_code(agent.home) is None:
        try:
            with agent.open_mailbox() as box:
                backups.check_code_for_account(agent, box)
        except (MailboxError, AccountError):
            pass  # cannot look now: the keys are kept here, and the backup waits for the mailbox
    vault = agent.vault()
    before = {e.fingerprint for e in vault.entries()}
    vault.add_many([(p.key, p.cert, p.chain) for p in pairs], source="import", device=agent.device)
    wanted = {fingerprint(p.cert) for p in pairs} - before
    new = tuple(ImportedKey(e.fingerprint, e.email, e.cert.subject.rfc4514_string())
                for e in vault.entries() if e.fingerprint in wanted)
    out = Path(str(recovery_code_out)) if recovery_code_out is not None else None
    return ImportOutcome(new=new, backup=backups.after_key_change(agent, recovery_code_out=out))


def device_status(agent: Agent) -> DeviceStatus:
    """Account, keys, backup and recovery code of this device, from local files only."""
    from autosmime.mailbox.account import load_account
    from autosmime.vault.recovery import load_code

    try:
        account = load_account(agent.home)
    except AccountError:
        account = None
    summary = None
    if account is not None:
        summary = {"email": account.email, "imap": f"{account.imap_host}:{account.imap_port}",
                   "smtp": f"{account.smtp_host}:{account.smtp_port}", "security": account.security,
                   "backup_folder": account.backup_folder}
    if not agent.has_vault():
        return DeviceStatus(home=agent.home, account=summary, recovery_code_stored=load_code(agent.home) is not None)
    vault = agent.vault(create=False)
    counts: dict[str, int] = {}
    for e in vault.entries():
        status = e.effective_status()
        counts[status] = counts.get(status, 0) + 1
    roles: dict[str, KeySummary | None] = {}
    for role, getter in (("signing", vault.signing_pair), ("encryption", vault.encryption_pair)):
        try:
            pair = getter()
        except NoKey:
            roles[role] = None
            continue
        roles[role] = KeySummary(fingerprint(pair.cert), pair.cert.not_valid_after_utc.isoformat())
    state = vault.state
    seq = state.get(backups.SEQ_SEEN)
    return DeviceStatus(
        home=agent.home, account=summary, keys=counts, signing=roles["signing"], encryption=roles["encryption"],
        backup_pending=bool(state.get(backups.PENDING)), backup_pending_reason=state.get(backups.PENDING_REASON),
        backup_last_ok=state.get(backups.LAST_OK), backup_seq_seen=int(seq) if seq is not None else None,
        recovery_code_stored=load_code(agent.home) is not None,
        recovery_code_unseen=bool(state.get(backups.CODE_UNSEEN)))
