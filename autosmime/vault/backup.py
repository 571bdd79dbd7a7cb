"""The key backup protocol on an open mailbox session: merge, write, verify, prune, restore.

    >>> from autosmime.mailbox.memory import MemoryServer
    >>> from autosmime.vault.backup import write_backup, restore_backup
    >>> with MemoryServer().session() as box:                                   # doctest: +SKIP
    ...     write_backup(box, vault, account, code).seq
    1

The invariants everything here serves:

- the folder never lacks a valid backup: a new backup is APPENDed, fetched
  back and fully verified with the recovery code before any older one is
  deleted, so a connection cut at any byte leaves the old backups, or the old
  ones plus the new one;
- every backup holds every key the account ever held: before writing, the
  newest authentic backups are read and every key this device lacks is taken
  in (the vault then holds it too), and statuses are merged by the time they
  were set; restore takes in the keys of every authentic candidate, not only
  the newest;
- pruning never deletes a backup holding a key the new, verified backup lacks.

At most ``max_candidates`` messages (the newest by UID) are examined, so a
folder flooded with planted messages costs a bounded amount of work, and each
costs as little as it can: checks that need no key first, one Argon2id run per
distinct (salt, parameters) in a run (every backup under one code shares its
salt), none for a message this device already authenticated (its record of
them, ``backup_known`` in the vault state), and no PKCS#12
derivation for any message that is not authentic. Opening
sessions, credentials, the recovery code's life and the retry queue belong to
:mod:`autosmime.agent`; the format is :mod:`autosmime.vault.format` and
docs/backup-format.md.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autosmime.errors import (
    AutosmimeError,
    BackupError,
    BackupRejected,
    NoAuthenticBackup,
    NoBackupFound,
    RecoveryCodeNeeded,
    WrongRecoveryCode,
)
from autosmime.mailbox.account import Account
from autosmime.mailbox.session import MailboxSession
from autosmime.pki.certs import fingerprint
from autosmime.vault import format as fmt
from autosmime.vault.store import Incoming, StatusNote, Vault

log = logging.getLogger(__name__)

KEEP = 3  # authentic backups kept in the folder (older ones holding nothing new are deleted)
# Newest backup messages examined by a backup or restore. Each costs one Argon2id run
# (~0.2 s at the format's ceiling) before it can be told from a planted one.
MAX_CANDIDATES = 8
# The device's record of backups it authenticated under its current code (vault state): a tag of each
# message's bytes bound to the code (known_tag) and its Message-ID, so they are recognised without a
# derivation and found beyond the candidates.
KNOWN = "backup_known"
KNOWN_MAX = 16
# Behind a flood, the messages right after the newest backup this device knows are where another
# device's later backups are: this many of them are read (parsed, no derivation unless they share a
# known backup's salt, whose key is then derived once for all of them).
FOLLOW_MAX = 32

__all__ = ["KEEP", "KNOWN", "MAX_CANDIDATES", "BackupParams", "FolderScan", "Found", "RestoreResult", "Written",
           "folder_has_backups", "remove_backups", "restore_backup", "scan_folder", "take_in", "write_backup"]


@dataclass(frozen=True)
class BackupParams:
    """Costs and bounds of the protocol. The defaults are the specification's; fast tests lower the costs."""

    kdf: fmt.KdfParams = fmt.SPEC_KDF
    pfx_iterations: int = fmt.PFX_ITERATIONS
    keep: int = KEEP
    max_candidates: int = MAX_CANDIDATES


DEFAULT_PARAMS = BackupParams()


@dataclass(frozen=True)
class Written:
    """A backup that was stored and verified in place."""

    seq: int
    keys: int  # keys in it
    merged: int  # keys this device took in from other devices' backups first
    pruned: int  # older backups deleted
    unauthentic: int = 0  # newest candidates the code does not authenticate (planted, or under another code)


@dataclass(frozen=True)
class RestoreResult:
    """What a restore imported."""

    seq: int  # sequence number of the newest backup restored
    created: str  # its creation time (RFC 3339)
    keys: int  # keys in the account's backups (the union over every authentic candidate)
    added: int  # keys that were new to this device
    skipped: int  # newer candidates that were invalid and skipped
    unauthentic: int = 0  # candidates examined that the code does not authenticate


@dataclass(frozen=True)
class Found:
    """One authentic backup in the folder (manifest authenticated, PKCS#12 not opened yet)."""

    uid: int
    raw: bytes = field(repr=False)
    authenticated: fmt.Unverified = field(repr=False)

    @property
    def manifest(self) -> fmt.Manifest:
        return self.authenticated.manifest

    def open(self, code: str, *, seq_seen: int = 0) -> fmt.Backup:
        """The full check (PKCS#12 and all) without a second Argon2id run, nor the PKCS#12 MAC's derivation
        (the manifest MAC authenticated the file's bytes; see :func:`fmt.open_authenticated`)."""
        return fmt.open_authenticated(self.authenticated, code=code, seq_seen=seq_seen, pfx_mac=False)

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(c.fingerprint for c in self.manifest.certificates)



@dataclass(frozen=True)
class FolderScan:
    """The newest backup messages of the folder, as the recovery code sees them."""

    candidates: tuple[tuple[int, bytes], ...]  # (uid, raw), newest claimed sequence number first
    authentic: tuple[Found, ...]  # those written with the code for this account, same order
    others: int  # well-formed candidates the code does not authenticate (planted, or under another code)
    rejected: dict[int, BackupRejected] = field(default_factory=dict)  # uid -> why it is not authentic
    total: int = 0  # backup messages in the folder (the candidates are the newest of them)
    known_found: int = 0  # authentic ones found beyond the candidates through this device's record
    keys: fmt.KeyCache = field(default_factory=dict, repr=False)  # MAC keys derived in this run

    @property
    def beyond(self) -> int:
        """Backup messages in the folder that were not examined."""
        return max(0, self.total - len(self.candidates))


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def _now() -> str:
    return _utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


def _claimed_seq(raw: bytes) -> int:
    """The sequence number a message claims (unauthenticated: only for ordering), -1 if unreadable."""
    try:
        return fmt.read_message(raw).manifest.seq
    except BackupRejected:
        return -1


# Backups already found authentic in this process, so a long-lived device (or a
# retry loop) does not re-run Argon2id on the same messages. Keys are digests; bounded.
_AUTHENTIC: OrderedDict[tuple[bytes, bytes, str], fmt.Unverified] = OrderedDict()
_AUTHENTIC_MAX = 64


def _authentic(raw: bytes, code: str, address: str, *, keys: fmt.KeyCache,
               known: Mapping[str, str]) -> fmt.Unverified | BackupRejected:
    """The manifest if this backup was written with ``code`` for ``address`` and is intact, else why not.

    One Argon2id run at most (none above the format's ceiling, none when a
    check without a key fails, none when ``keys`` holds the key of its salt,
    none when ``known`` records its digest), and no PKCS#12 derivation: a bad
    MAC is WrongRecoveryCode without diagnosis.
    """
    memo = (hashlib.sha256(raw).digest(), hashlib.sha256(code.encode()).digest(), address.lower())
    if memo in _AUTHENTIC:
        _AUTHENTIC.move_to_end(memo)
        return _AUTHENTIC[memo]
    try:
        if known and known_tag(code, raw) in known:  # these bytes were authenticated here under this code
            found = fmt.read_message(raw)
            fmt.check_binding(found, address)
        else:
            found = fmt.authenticate(raw, code=code, address=address, diagnose=False, keys=keys)
    except BackupRejected as e:
        return e
    _AUTHENTIC[memo] = found
    while len(_AUTHENTIC) > _AUTHENTIC_MAX:
        _AUTHENTIC.popitem(last=False)
    return found


def folder_has_backups(box: MailboxSession, folder: str) -> bool:
    """True if the folder holds any message marked as a backup (authentic or not)."""
    return box.folder_exists(folder) and bool(box.search_header(folder, fmt.MARKER_HEADER, fmt.MARKER_VALUE))


def known_tag(code: str, raw: bytes) -> str:
    """What the device's record keeps of a backup it authenticated: the message's digest bound to the code
    (so a record never vouches for a message under another code; the code itself is on the device anyway)."""
    digest = hashlib.sha256(raw).digest()
    return hmac.new(code.encode("utf-8"), b"autosmime-known-backup-v1\x00" + digest, hashlib.sha256).hexdigest()


def known_backups(vault: Vault | None) -> dict[str, str]:
    """This device's record of the backups it authenticated under its current code: tag -> Message-ID."""
    record = vault.state.get(KNOWN) if vault is not None else None
    if not isinstance(record, list):
        return {}
    return {d: m for d, m in (e for e in record if isinstance(e, list) and len(e) == 2)
            if isinstance(d, str) and isinstance(m, str)}


def remember(vault: Vault, found: Sequence[Found], code: str, *, forget: Sequence[int] = (),
             reset: bool = False) -> list[list[str]]:
    """The device's record (``backup_known``) with ``found`` (authenticated under its current code) added and
    the UIDs in ``forget`` (deleted) dropped; ``reset`` when the code changed (the old record means nothing
    under a new one). The caller stores it with its other state changes (one atomic write)."""
    gone = {known_tag(code, f.raw) for f in found if f.uid in forget}
    record = {} if reset else known_backups(vault)
    seqs: dict[str, int] = {}
    for f in found:
        if f.uid not in forget:
            tag = known_tag(code, f.raw)
            record[tag] = fmt.read_message_id(f.raw)
            seqs[tag] = f.manifest.seq
    for tag in gone:
        record.pop(tag, None)
    # newest first by the sequence number where this run knows it; older record entries after them
    order = sorted(record, key=lambda d: seqs.get(d, -1), reverse=True)[:KNOWN_MAX]
    return [[d, record[d]] for d in order]


def scan_folder(box: MailboxSession, folder: str, *, address: str, code: str | None,
                params: BackupParams = DEFAULT_PARAMS, known: Mapping[str, str] | None = None) -> FolderScan:
    """The newest ``params.max_candidates`` backup messages, and which of them ``code`` authenticates.

    ``known`` is the device's record (:func:`known_backups`): those messages
    are recognised by :func:`known_tag` without a derivation, and when none of the
    newest candidates is authentic they are looked up by Message-ID beyond
    them, so messages planted after them do not hide them from this device.
    """
    if not box.folder_exists(folder):
        return FolderScan((), (), 0)
    known = known or {}
    keys: fmt.KeyCache = {}
    uids = box.search_header(folder, fmt.MARKER_HEADER, fmt.MARKER_VALUE)
    newest = sorted(uids)[-params.max_candidates:]
    fetched = box.fetch(folder, newest)
    # the claimed numbers, read once (unauthenticated: only for the order; -1 if unreadable)
    claims = {uid: _claimed_seq(raw) for uid, raw in fetched.items()}
    candidates = tuple(sorted(fetched.items(), key=lambda item: (claims[item[0]], item[0]), reverse=True))
    authentic: list[Found] = []
    rejected: dict[int, BackupRejected] = {}
    others = 0
    for uid, raw in candidates:
        found = (_authentic(raw, code, address, keys=keys, known=known) if code is not None
                 else BackupRejected("no recovery code"))
        if isinstance(found, fmt.Unverified):
            authentic.append(Found(uid, raw, found))
            continue
        rejected[uid] = found
        if claims[uid] >= 0:
            others += 1
    extra: list[tuple[int, bytes]] = []
    if code is not None and not authentic and known:
        seen = {known_tag(code, raw) for _uid, raw in candidates}
        for tag, message_id in list(known.items())[:KNOWN_MAX]:
            if tag in seen or not message_id:
                continue
            hits = [u for u in box.search_header(folder, "Message-ID", message_id) if u not in fetched]
            for uid, raw in box.fetch(folder, hits[:4]).items():  # a planted copy of the header costs a fetch
                if known_tag(code, raw) != tag:
                    continue
                found = _authentic(raw, code, address, keys=keys, known=known)
                if isinstance(found, fmt.Unverified):
                    authentic.append(Found(uid, raw, found))
                    extra.append((uid, raw))
                    seen.add(tag)
        if extra:
            extra.extend(_following(box, folder, uids, set(fetched) | {u for u, _ in extra}, authentic,
                                    code=code, address=address, keys=keys, known=known))
        authentic.sort(key=lambda f: (f.manifest.seq, f.uid), reverse=True)
        extra.sort(key=lambda item: (_claimed_seq(item[1]), item[0]), reverse=True)
    return FolderScan(candidates + tuple(extra), tuple(authentic), others, rejected, total=len(uids),
                      known_found=len(extra), keys=keys)


def _following(box: MailboxSession, folder: str, uids: Sequence[int], examined: set[int], authentic: list[Found],
               *, code: str, address: str, keys: fmt.KeyCache, known: Mapping[str, str]) -> list[tuple[int, bytes]]:
    """Backups written after the newest one this device knows, hidden from the candidates by newer messages.

    Every writer reuses the salt of the newest backup it authenticated, so
    another device's later backups share a known backup's salt: only those
    are authenticated (one Argon2id for the shared key at most), the others
    cost a parse. Adds what it finds to ``authentic``; returns (uid, raw).
    """
    chain = {(f.manifest.salt, f.manifest.kdf) for f in authentic}
    newest_known = max(f.uid for f in authentic)
    following = [u for u in sorted(uids) if u > newest_known and u not in examined][:FOLLOW_MAX]
    out = []
    for uid, raw in sorted(box.fetch(folder, following).items()):
        try:
            manifest = fmt.read_message(raw).manifest
        except BackupRejected:
            continue
        if (manifest.salt, manifest.kdf) not in chain:
            continue
        found = _authentic(raw, code, address, keys=keys, known=known)
        if isinstance(found, fmt.Unverified):
            authentic.append(Found(uid, raw, found))
            out.append((uid, raw))
    return out


def _when(text: str | None) -> _dt.datetime | None:
    if text is None:
        return None
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.UTC)


_LONG_AGO = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def _incoming(backup: fmt.Backup, wanted: frozenset[str] | set[str]) -> list[Incoming]:
    """The keys of a verified backup whose fingerprints are in ``wanted``, with their history."""
    out = []
    for pair in backup.keys:
        record = backup.record_of(pair)
        if record.fingerprint not in wanted:
            continue
        # Backups written before the history fields: the key's age is unknown, and its status
        # loses against any status a device set knowingly.
        added = _when(record.added) or _utcnow()
        changed = _when(record.changed) or _LONG_AGO
        out.append(Incoming(pair.key, pair.cert, tuple(pair.chain), record.status, added, changed,
                            record.device or ""))
    return out


def _notes(found: Sequence[Found]) -> list[StatusNote]:
    """Every status the manifests record with the time it was set (older manifests record none)."""
    notes = []
    for f in found:
        for c in f.manifest.certificates:
            when = _when(c.changed)
            if when is not None:
                notes.append(StatusNote(c.fingerprint, c.status, when))
    return notes


def take_in(vault: Vault, found: Sequence[Found], code: str, address: str, *, source: str = "merge") -> int:
    """Merge into ``vault`` every key (and status) of ``found`` it lacks; returns how many keys were new.

    A PKCS#12 is opened only when its manifest lists a key the vault does not
    hold yet. A backup that does not fully verify contributes nothing (and,
    holding a key the new backup lacks, is then never pruned).
    """
    have = {e.fingerprint for e in vault.entries()}
    incoming: list[Incoming] = []
    for f in found:
        missing = f.fingerprints - have
        if not missing:
            continue
        try:
            backup = f.open(code)
        except BackupRejected as e:
            log.warning("an authentic-looking key backup (message UID %d) does not verify: %s", f.uid, e)
            continue
        incoming.extend(_incoming(backup, missing))
        have |= missing
    added, _changed = vault.merge(incoming, _notes(found), source=source)
    return added


def write_backup(box: MailboxSession, vault: Vault, account: Account, code: str, *,
                 params: BackupParams = DEFAULT_PARAMS, device: str = "", new_code: bool = False) -> Written:
    """Merge the newest authentic backups into ``vault``, then store and verify a backup of every key.

    ``code`` is the recovery code in its shown form. Raises MailboxError
    (server trouble), RecoveryCodeNeeded (the folder's backups are all under
    another code: writing would split the account, unless ``new_code`` says
    this is a deliberate new code) and BackupError. The vault's
    ``backup_seq_seen`` is raised to the new number only after it was read
    back and verified.
    """
    from autosmime.pki.pkcs12 import build_pfx

    address, folder = account.email, account.backup_folder
    box.ensure_folder(folder)
    scan = scan_folder(box, folder, address=address, code=code, params=params,
                       known=None if new_code else known_backups(vault))
    if scan.others and not scan.authentic and not new_code:
        if scan.beyond:  # more messages than examined: planted ones may hide ours, or the code was rotated
            raise NoAuthenticBackup(
                f"the {_plural(len(scan.candidates), 'newest message')} in {folder} {_are(len(scan.candidates))} "
                "not authentic under this device's recovery code (messages planted in the folder, or the code "
                "was rotated on another device), and no backup this device knows is left there; "
                "`autosmime restore --examine N` with the code looks further")
        raise RecoveryCodeNeeded("the key backups in the mailbox do not open with this device's recovery code "
                                 "(was it rotated on another device?); run `autosmime restore` with the current "
                                 "code or `autosmime restore --join`")
    merged = take_in(vault, scan.authentic, code, address, source="merge")
    entries = vault.entries()
    if not entries:
        raise BackupError("the vault holds no keys; nothing to back up")
    seen = int(vault.state.get("backup_seq_seen", 0) or 0)
    seq = max([seen] + [f.manifest.seq for f in scan.authentic]) + 1

    pfx = build_pfx(entries, code.encode("utf-8"), iterations=params.pfx_iterations)
    records = [fmt.CertRecord.of(e.cert, e.status, added=e.added, device=e.device or device,
                                 changed=e.status_changed) for e in entries]
    # Every backup under one code shares the salt of the newest one (same parameters): readers derive
    # its key once for all of them, and so does the read-back check below.
    salt = next((f.manifest.salt for f in scan.authentic if f.manifest.kdf == params.kdf), None)
    raw = fmt.build_message(address=address, seq=seq, p12=pfx, certificates=records, code=code, kdf=params.kdf,
                            salt=salt, keys=scan.keys)
    uid = box.append(folder, raw, (r"\Seen",))
    if uid is None:  # a server without UIDPLUS: find it by its unique Message-ID
        found = box.search_header(folder, "Message-ID", fmt.read_message_id(raw))
        if len(found) != 1:
            raise BackupError("the new backup could not be found again in the folder")
        uid = found[0]
    stored = box.fetch(folder, [uid]).get(uid)
    if stored is None:
        raise BackupError("the new backup could not be read back from the folder")
    written = fmt.verify_message(stored, code=code, address=address, seq_seen=seq, keys=scan.keys)
    if written.manifest.seq != seq:
        raise BackupError("the backup read back is not the one just written")

    # Only now, with a verified newer backup in place, may old ones go: those beyond
    # the newest `keep`, and only if every key they hold is in the new one.
    held = {c.fingerprint for c in written.manifest.certificates}
    surplus = [f.uid for f in scan.authentic[params.keep - 1:] if f.fingerprints <= held]
    if surplus:
        box.delete(folder, surplus)
    known = remember(vault, (Found(uid, stored, fmt.Unverified(written.manifest, b"", written.p12)),
                             *scan.authentic), code, forget=surplus, reset=new_code)
    vault.update_state(**{"backup_seq_seen": seq, KNOWN: known})
    log.info("key backup %d stored in %s", seq, folder)
    return Written(seq=seq, keys=len(entries), merged=merged, pruned=len(surplus), unauthentic=len(scan.rejected))


def remove_backups(box: MailboxSession, folder: str, found: Sequence[Found]) -> None:
    """Delete these backups (after a rotation has stored and verified their successor under the new code)."""
    box.delete(folder, [f.uid for f in found])


def restore_backup(box: MailboxSession, account: Account, code: str, home: Path, *,
                   params: BackupParams = DEFAULT_PARAMS) -> RestoreResult:
    """Import every key of the account's authentic backups into the vault at ``home``.

    The newest candidate that passes every check (rollback included) is the
    backup restored; the keys of the other authentic candidates are taken in
    too, so a key held only by an older backup is not lost. NoBackupFound
    (exit 3) when the folder is missing or holds no backup. If no candidate is
    valid, the newest one's error (WrongRecoveryCode, BackupRejected,
    RolledBackBackup) is raised. The vault is written only after a backup
    passed every check.
    """
    from autosmime.vault.recovery import load_code, save_code

    folder, address = account.backup_folder, account.email
    if not box.folder_exists(folder):
        raise NoBackupFound(f"no key backup folder {folder!r} in the mailbox")
    same_code = load_code(home) == code  # the device's record of known backups holds for this code only
    scan = scan_folder(box, folder, address=address, code=code, params=params,
                       known=_known_at(home) if same_code else None)
    if not scan.candidates:
        raise NoBackupFound(f"no key backup in the mailbox folder {folder!r}")
    seen = _seq_seen(home)

    rejected: list[tuple[int, BackupRejected]] = []
    authentic = {f.uid: f for f in scan.authentic}
    backup = None
    for uid, _raw in scan.candidates:
        if uid not in authentic:  # refused by the scan already: no second derivation
            rejected.append((uid, scan.rejected[uid]))
            continue
        try:
            backup = authentic[uid].open(code, seq_seen=seen)
            break
        except BackupRejected as e:
            rejected.append((uid, e))
    if backup is None:
        if not scan.authentic and scan.beyond:
            # Not "wrong code": the folder holds more than was examined, and anyone who can write to it
            # can put messages in front of the real backups. No diagnosis: it would cost a PKCS#12 derivation
            # of a file that may be planted, and could not tell the two cases apart anyway.
            n = len(scan.candidates)
            raise NoAuthenticBackup(
                f"the {_plural(n, 'newest message')} in {folder} {_are(n)} not authentic under this recovery code "
                f"(a wrong code, or messages planted in the folder; {scan.beyond} more not examined); "
                f"`autosmime restore --examine N` looks further")
        for uid, problem in rejected[1:]:
            log.debug("older key backup (message UID %d) is invalid too: %s", uid, problem)
        newest = rejected[0][1]  # the one error shown is worth the derivation that words it
        if isinstance(newest, WrongRecoveryCode):
            raise fmt.diagnose(scan.candidates[0][1], code)
        raise newest
    for uid, problem in rejected:
        log.warning("skipped a newer key backup that is not valid (message UID %d): %s", uid, problem)

    vault = Vault.open(home, create=True)
    before = {e.fingerprint for e in vault.entries()}
    vault.merge(_incoming(backup, frozenset(fingerprint(p.cert) for p in backup.keys)), (), source="restore")
    take_in(vault, scan.authentic, code, address, source="restore")  # keys only older backups still hold
    after = {e.fingerprint for e in vault.entries()}
    save_code(home, code)
    vault.update_state(**{"backup_seq_seen": max(seen, backup.manifest.seq),
                          KNOWN: remember(vault, scan.authentic, code, reset=not same_code)})
    keys = len(frozenset(fingerprint(p.cert) for p in backup.keys).union(*(f.fingerprints for f in scan.authentic)))
    return RestoreResult(seq=backup.manifest.seq, created=backup.manifest.created, keys=keys,
                         added=len(after - before), skipped=len(rejected), unauthentic=len(scan.rejected))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


def _known_at(home: Path) -> dict[str, str]:
    """The device's record of known backups, without creating a vault."""
    try:
        return known_backups(Vault.open(home, create=False))
    except AutosmimeError:
        return {}


def _seq_seen(home: Path) -> int:
    """The highest backup number this device accepted, without creating a vault."""
    try:
        vault = Vault.open(home, create=False)
    except AutosmimeError:
        return 0
    return int(vault.state.get("backup_seq_seen", 0) or 0)
