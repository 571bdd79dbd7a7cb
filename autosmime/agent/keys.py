"""Key flows that need no CA: import a PKCS#12 file, choose the active key, and this device's status.

    >>> from autosmime.agent.keys import import_file, device_status
    >>> outcome = import_file(agent, data, b"password")              # doctest: +SKIP
    >>> len(outcome.new), outcome.backup.state                       # doctest: +SKIP
    (2, <BackupState.STORED: 'stored'>)
    >>> device_status(agent).recovery_code_unseen                    # doctest: +SKIP
    False
    >>> set_key_status(agent, "3f2a...", "active").retired            # doctest: +SKIP
    ('9c41...',)
"""

from __future__ import annotations

from autosmime.agent import backup as backups
from autosmime.agent.context import Agent
from autosmime.agent.outcomes import DeviceStatus, ImportedKey, ImportOutcome, KeyChange, KeySummary
from autosmime.errors import AccountError, KeyStatusRefused, MailboxError, NoKey, UsageError
from autosmime.pki.certs import cert_addresses, fingerprint, key_roles, normalize_fingerprint
from autosmime.vault.store import VaultEntry, holds_valid_ca_cert, is_provisional

__all__ = ["device_status", "import_file", "set_key_status"]


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
    account = _account_address(agent)
    foreign = {e.fingerprint for e in vault.entries()
               if e.fingerprint in wanted and account is not None and account not in cert_addresses(e.cert)}
    for fp in foreign:  # kept (it opens mail sent to it), never used for this account: as `keys activate` rules
        if next(e for e in vault.entries() if e.fingerprint == fp).status == "active":
            vault.set_status(fp, "retired")
    entries = vault.entries()
    new = tuple(ImportedKey(e.fingerprint, e.email, e.cert.subject.rfc4514_string(), e.status,
                            _kept_instead(e, entries), account if e.fingerprint in foreign else None)
                for e in entries if e.fingerprint in wanted)
    out = Path(str(recovery_code_out)) if recovery_code_out is not None else None
    return ImportOutcome(new=new, backup=backups.after_key_change(agent, recovery_code_out=out))


def _account_address(agent: Agent) -> str | None:
    """The account's address, lower-cased; None on a device with no account (any address goes)."""
    try:
        return agent.account().email.lower()
    except AccountError:
        return None


def _kept_instead(entry: VaultEntry, entries: list[VaultEntry]) -> str | None:
    """The valid CA-issued key that stayed active although ``entry`` is newer (the vault's rule), if any."""
    if entry.status != "retired" or not is_provisional(entry.cert):
        return None
    for other in entries:
        if (other.status == "active" and other.email == entry.email and holds_valid_ca_cert(other)
                and key_roles(other.cert) & key_roles(entry.cert)
                and other.cert.not_valid_before_utc <= entry.cert.not_valid_before_utc):
            return other.fingerprint
    return None


def set_key_status(agent: Agent, fp: str, status: str) -> KeyChange:
    """Make one key "active" (its address's other active key of the same role retires) or "retired",
    then back up so the account's other devices learn it (queued if the mailbox is unreachable).

    Refused (KeyStatusRefused, nothing changed): activating a key that is expired,
    revoked or not for the account's address; retiring a revoked key.
    """
    if status not in ("active", "retired"):
        raise UsageError(f"a key can be made active or retired here, not {status!r}")
    wanted = normalize_fingerprint(fp)
    vault = agent.vault(create=False)
    entries = vault.entries()
    matches = [e for e in entries if e.fingerprint.startswith(wanted)] if len(wanted) >= 8 else []
    if not matches:
        raise NoKey(f"no key with fingerprint {fp} in the vault (see `autosmime keys`)")
    if len(matches) > 1:
        raise UsageError(f"{fp} matches {len(matches)} keys: give more of the fingerprint")
    target = matches[0]
    if target.status == "revoked":
        raise KeyStatusRefused(f"key {target.fingerprint[:16]} is revoked; a revoked key stays revoked")
    if status == "active":
        if target.effective_status() == "expired":
            raise KeyStatusRefused(f"key {target.fingerprint[:16]} expired on "
                                   f"{target.cert.not_valid_after_utc:%Y-%m-%d}; it can only decrypt old mail")
        address = _account_address(agent)
        if address is not None and address not in cert_addresses(target.cert):
            names = ", ".join(cert_addresses(target.cert)) or "no address"
            raise KeyStatusRefused(f"key {target.fingerprint[:16]} is for {names}, not for the account's "
                                   f"address {address}")
    if target.status == status:
        return KeyChange(target.fingerprint, target.email, status, changed=False)
    vault.set_status(target.fingerprint, status)
    after = {e.fingerprint: e for e in vault.entries()}
    retired = tuple(e.fingerprint for e in entries
                    if e.status == "active" and after[e.fingerprint].status == "retired"
                    and e.fingerprint != target.fingerprint)
    no_active_left = status == "retired" and not any(
        e.status == "active" and e.email == target.email and e.effective_status() == "active"
        for e in after.values())
    return KeyChange(target.fingerprint, target.email, status, changed=True, retired=retired,
                     no_active_left=no_active_left, backup=backups.after_key_change(agent))


def device_status(agent: Agent) -> DeviceStatus:
    """Account, keys, backup and recovery code of this device, from local files only."""
    from autosmime.mailbox.account import ACCOUNT_FILE, load_account
    from autosmime.vault.recovery import load_code

    try:
        account = load_account(agent.home)
    except AccountError:
        if (agent.home / ACCOUNT_FILE).exists():  # there is one, unreadable: "none" would send the user to
            raise                                  # `setup`, which refuses the broken file
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
