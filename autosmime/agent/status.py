"""This device at a glance, from what is recorded locally: no network, ever.

    >>> from autosmime.agent import Agent
    >>> from autosmime.agent.status import status
    >>> st = status(Agent(home))                                   # doctest: +SKIP
    >>> st.certificate.days_left, st.certificate.renewal_due      # doctest: +SKIP
    (364, '2027-08-31T10:00:00+00:00')
    >>> st.backup.last_verified.ok, st.pending.backup_queued      # doctest: +SKIP
    (True, False)

What it reads: the account file, the vault (keys, and the state the flows
and the watch record there: the backup queue, the last backup stored and
verified, the watch's renewal decision, its last directory check, the join
requests it noticed), and the directory's log witness files. Every answer
carries the time it was recorded, so "last verified" means what it says.

The renewal date is the one :func:`autosmime.agent.enrol.decide_renewal`
gave when the watch last asked the CA (ARI); before that, the same rule
without ARI: 2/3 of the lifetime (1/2 under ten days).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autosmime.agent.context import Agent
from autosmime.agent.outcomes import DeviceStatus

__all__ = ["BackupHealth", "BackupVerified", "CertificateState", "DirectoryCheck", "JoinNotice", "PendingWork",
           "Publication", "Status", "active_entry", "status"]

# Vault state names written by the watch (and, for BACKUP_VERIFIED, by every stored backup)
BACKUP_VERIFIED = "backup_verified"        # {"at", "seq", "ok", "keys", "problem", "by", "unauthentic"} (= agent.backup.VERIFIED)
RENEWAL_CHECK = "renewal_check"            # {"fingerprint", "checked_at", "when", "source", "due"}
DIRECTORY_CHECK = "directory_check"        # {"at", "url", "ok", "events", "foreign", "published", "problem"}
JOIN_REQUESTS = "join_requests_seen"       # {"checked_at", "requests": [{"device", "created", "id"}]}
WATCH_TICK = "watch_last_tick"             # RFC 3339, the watch's last round of work


@dataclass(frozen=True)
class CertificateState:
    address: str
    fingerprint: str
    issuer: str
    not_before: str          # RFC 3339
    not_after: str
    days_left: int           # whole days until not_after (negative once expired)
    expired: bool
    renewal_due: str         # when renewal is due (RFC 3339)
    renewal_is_due: bool     # ... which is now or past
    renewal_source: str      # "ARI", "2/3 of the lifetime" (or 1/2 under ten days), as decide_renewal says
    renewal_checked: str | None  # when the watch last asked the CA (None: computed locally, no ARI)


@dataclass(frozen=True)
class BackupVerified:
    at: str
    ok: bool
    seq: int | None = None
    keys: int | None = None
    problem: str | None = None
    by: str = "check"        # "backup" (read back and verified right after it was stored) or "check" (the watch)
    unauthentic: int = 0     # newest messages in the backup folder the recovery code does not authenticate (planted?)


@dataclass(frozen=True)
class BackupHealth:
    last_stored: str | None       # when this device last stored a backup
    seq_seen: int | None
    queued: bool
    queued_reason: str | None
    last_verified: BackupVerified | None


@dataclass(frozen=True)
class DirectoryCheck:
    at: str
    ok: bool
    events: int                    # log entries for my address
    foreign: tuple[str, ...]       # SHA-256 of certificates in the log for my address that this device never held
    problem: str | None            # e.g. a forked log


@dataclass(frozen=True)
class Publication:
    directory: str | None          # the key directory in use (None: none configured)
    published: str | None          # SHA-256 of the active certificate when a proven lookup showed it
    leaf_index: int | None
    checkpoint_size: int | None    # the largest log checkpoint accepted (proven consistent with every earlier one)
    checkpoint_seen: str | None    # when it was stored
    last_check: DirectoryCheck | None


@dataclass(frozen=True)
class JoinNotice:
    device: str
    created: str
    id: str


@dataclass(frozen=True)
class InvitationNotice:
    id: str
    created: str
    expires: str


@dataclass(frozen=True)
class PendingWork:
    backup_queued: bool
    renewal_due: bool
    join_requests: tuple[JoinNotice, ...]
    join_checked: str | None       # when the watch last looked (None: never; join requests are only seen online)
    publish_needed: bool           # a directory is in use but the active certificate was not seen published
    outbox: int = 0                # mail `send` could not hand over yet (retried by the next send and the watch)
    invitations: tuple[InvitationNotice, ...] = ()  # this device's open invitations (never their codes)


@dataclass(frozen=True)
class Status:
    now: str
    device: DeviceStatus
    certificate: CertificateState | None
    backup: BackupHealth
    publication: Publication
    pending: PendingWork
    watch_last_tick: str | None


def _iso(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).isoformat(timespec="seconds")


def active_entry(vault: Any, address: str) -> Any | None:
    """The account's active certificate (the newest active one for its address), as renew picks it."""
    entries = [e for e in vault.entries() if e.email == address.lower() and e.status == "active"]
    if not entries:
        return None
    return max(entries, key=lambda e: (e.cert.not_valid_before_utc, e.added))


def certificate_state(entry: Any, record: dict | None, now: _dt.datetime) -> CertificateState:
    """The certificate's dates and its renewal time: the watch's recorded decision for it, else the local rule."""
    from cryptography.hazmat.primitives import hashes

    from autosmime.enroll.renewal import renewal_due

    cert = entry.cert
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    if record and record.get("fingerprint") == entry.fingerprint and record.get("when"):
        when = _dt.datetime.fromisoformat(str(record["when"]))
        due = now >= when or now >= na
        source, checked = str(record.get("source") or "ARI"), record.get("checked_at")
    else:
        due, when = renewal_due(nb, na, None, seed=cert.fingerprint(hashes.SHA256()), now=now)
        source = "2/3 of the lifetime" if na - nb >= _dt.timedelta(days=10) else "1/2 of the lifetime"
        checked = None
    return CertificateState(
        address=entry.email or "", fingerprint=entry.fingerprint, issuer=cert.issuer.rfc4514_string(),
        not_before=_iso(nb), not_after=_iso(na), days_left=(na - now).days, expired=now >= na,
        renewal_due=_iso(when), renewal_is_due=due, renewal_source=source, renewal_checked=checked)


def _verified(record: object) -> BackupVerified | None:
    if not isinstance(record, dict) or not record.get("at"):
        return None
    return BackupVerified(at=str(record["at"]), ok=bool(record.get("ok")), seq=record.get("seq"),
                          keys=record.get("keys"), problem=record.get("problem"), by=str(record.get("by", "check")),
                          unauthentic=int(record.get("unauthentic") or 0))


def _directory_check(record: object) -> DirectoryCheck | None:
    if not isinstance(record, dict) or not record.get("at"):
        return None
    return DirectoryCheck(at=str(record["at"]), ok=bool(record.get("ok")), events=int(record.get("events") or 0),
                          foreign=tuple(record.get("foreign") or ()), problem=record.get("problem"))


def _publication(home: Path, address: str | None, sha: str | None, record: object) -> Publication:
    """The directory in use, and what its log witness file says about my address (files only)."""
    import hashlib

    from autosmime.agent.publish import directory_url
    from autosmime.errors import UsageError

    try:
        url: str | None = directory_url(home, None)
    except UsageError:
        url = None
    published = leaf = size = None
    seen_at = None
    if url is not None:
        path = home / "directory" / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".json")
        try:
            witness = json.loads(path.read_text())
            size = int(witness.get("size", 0))
            seen_at = _iso(_dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.UTC))
            mine = witness.get("seen", {}).get((address or "").lower(), {})
            if sha is not None and sha in mine:
                published, leaf = sha, int(mine[sha])
        except (OSError, ValueError):
            pass
    check = _directory_check(record)
    if check is not None and isinstance(record, dict) and sha is not None and record.get("published") == sha:
        published = sha
    return Publication(directory=url, published=published, leaf_index=leaf, checkpoint_size=size,
                       checkpoint_seen=seen_at, last_check=check)


def status(agent: Agent, *, now: _dt.datetime | None = None) -> Status:
    """Everything recorded about this device; opens no connection."""
    from autosmime.agent import backup as backups
    from autosmime.agent.join import invites
    from autosmime.agent.keys import device_status
    from autosmime.agent.send import queued

    now = now or _dt.datetime.now(_dt.UTC)
    device = device_status(agent)
    state: dict = agent.vault(create=False).state if agent.has_vault() else {}
    address = device.account["email"] if device.account else None
    cert = None
    if address is not None and agent.has_vault():
        entry = active_entry(agent.vault(create=False), address)
        if entry is not None:
            cert = certificate_state(entry, state.get(RENEWAL_CHECK), now)
    backup = BackupHealth(last_stored=state.get(backups.LAST_OK), seq_seen=device.backup_seq_seen,
                          queued=device.backup_pending, queued_reason=device.backup_pending_reason,
                          last_verified=_verified(state.get(BACKUP_VERIFIED)))
    enc_sha = device.encryption.fingerprint if device.encryption else None
    publication = _publication(agent.home, address, enc_sha, state.get(DIRECTORY_CHECK))
    joins = state.get(JOIN_REQUESTS) or {}
    pending = PendingWork(
        backup_queued=device.backup_pending, renewal_due=bool(cert and cert.renewal_is_due),
        join_requests=tuple(JoinNotice(str(r.get("device", "")), str(r.get("created", "")), str(r.get("id", "")))
                            for r in joins.get("requests", [])),
        join_checked=joins.get("checked_at"),
        publish_needed=publication.directory is not None and enc_sha is not None and publication.published is None,
        outbox=len(queued(agent)),
        invitations=tuple(InvitationNotice(**r) for r in invites(agent, now=now)) if agent.has_vault() else ())
    return Status(now=_iso(now), device=device, certificate=cert, backup=backup, publication=publication,
                  pending=pending, watch_last_tick=state.get(WATCH_TICK))
