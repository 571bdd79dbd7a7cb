"""The device's vault: every key and certificate this user ever held, encrypted at rest.

    >>> from autosmime.vault.store import Vault
    >>> from autosmime.pki.profiles import new_key, make_ca, make_mailbox_cert
    >>> ca_key, ca = make_ca("Test CA", new_key("ec"))
    >>> key = new_key("ec"); cert = make_mailbox_cert("alice@example.test", key.public_key(), ca_key, ca)
    >>> import tempfile, pathlib; vault = Vault.open(pathlib.Path(tempfile.mkdtemp()) / "home")
    >>> vault.add(key, cert, (ca,))
    True
    >>> [(e.email, e.status) for e in vault.entries()]
    [('alice@example.test', 'active')]

Nothing is ever deleted: a newer certificate for an address makes the older
one "retired", and retired, expired and revoked keys still decrypt old mail.
A newer self-signed or short-lived certificate does not displace a valid
CA-issued one (it is added retired; :meth:`Vault.set_status` activates it).

On disk (HOME, 0700): ``vault.bin`` (0600) = header || AES-256-GCM(JSON),
with the header (magic, format version, nonce) as associated data. The
256-bit device key lives in the OS keyring, or in ``HOME/device.key`` (0600)
on machines without a real keyring. Every write is atomic and serialised by
an fcntl lock on ``HOME/vault.lock``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from autosmime._files import VAULT_FILE, ensure_home, locked, remove_stale_temps, write_private
from autosmime.errors import KeyFileError, NoKey, UsageError, VaultError
from autosmime.pki.certs import cert_address, fingerprint, key_roles, normalize_fingerprint, same_key
from autosmime.pki.keys import KeyPair, PrivateKey, as_private_key
from autosmime.vault._secrets import get_secret, put_secret

STATUSES = ("active", "retired", "revoked")
LOCK_FILE = "vault.lock"
DEVICE_KEY_FILE = "device.key"
_MAGIC = b"AUTOSMIME-VAULT\n"
_VERSION = b"\x01"
_HEADER_LEN = len(_MAGIC) + 1 + 12


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


@dataclass(frozen=True)
class VaultEntry:
    """One key with its certificate, as held in the vault."""

    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    status: str
    added: _dt.datetime
    source: str
    device: str = ""  # the device that first added the key to the account ("" if unknown)
    changed: _dt.datetime | None = None  # when the status was last set (None: when added)

    @property
    def status_changed(self) -> _dt.datetime:
        """When the stored status was last set: what decides between two devices' statuses."""
        return self.changed or self.added

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate DER, lower-case hex."""
        return fingerprint(self.cert)

    @property
    def email(self) -> str | None:
        return cert_address(self.cert)

    def effective_status(self, now: _dt.datetime | None = None) -> str:
        """The stored status, or "expired" once past notAfter (revoked stays revoked)."""
        if self.status == "revoked":
            return "revoked"
        if (now or _utcnow()) > self.cert.not_valid_after_utc:
            return "expired"
        return self.status

    def _age(self) -> tuple[_dt.datetime, _dt.datetime]:
        return (self.cert.not_valid_before_utc, self.added)


def _unpack(item) -> tuple[PrivateKey, x509.Certificate, tuple[x509.Certificate, ...], str | None]:
    """(key, cert, chain[, status]) tuples, KeyPairs and VaultEntries all work."""
    if isinstance(item, (KeyPair, VaultEntry)):
        return item.key, item.cert, tuple(item.chain), getattr(item, "status", None)
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3, 4):
        raise UsageError("vault items are (key, cert, chain) or (key, cert, chain, status)")
    key, cert = item[0], item[1]
    chain = tuple(item[2]) if len(item) > 2 and item[2] else ()
    status = item[3] if len(item) > 3 else None
    return key, cert, chain, status


def _encode_entry(e: VaultEntry) -> dict:
    der = e.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return {
        "key": b64(der),
        "cert": b64(e.cert.public_bytes(serialization.Encoding.DER)),
        "chain": [b64(c.public_bytes(serialization.Encoding.DER)) for c in e.chain],
        "status": e.status,
        "added": e.added.isoformat(),
        "source": e.source,
        "device": e.device,
        "changed": e.changed.isoformat() if e.changed else None,
    }


def _decode_entry(d: dict) -> VaultEntry:
    return VaultEntry(
        key=as_private_key(serialization.load_der_private_key(base64.b64decode(d["key"]), None)),
        cert=x509.load_der_x509_certificate(base64.b64decode(d["cert"])),
        chain=tuple(x509.load_der_x509_certificate(base64.b64decode(c)) for c in d["chain"]),
        status=d["status"],
        added=_dt.datetime.fromisoformat(d["added"]),
        source=d["source"],
        device=str(d.get("device") or ""),
        changed=_dt.datetime.fromisoformat(d["changed"]) if d.get("changed") else None,
    )


#: a certificate valid this long or less is "short-lived" (the CA/B Forum's bound for short-lived certificates)
SHORT_LIVED = _dt.timedelta(days=7)


def is_provisional(cert: x509.Certificate) -> bool:
    """A self-signed or short-lived certificate: a stopgap that should not displace a CA-issued one."""
    return cert.issuer == cert.subject or cert.not_valid_after_utc - cert.not_valid_before_utc <= SHORT_LIVED


def holds_valid_ca_cert(e: VaultEntry, now: _dt.datetime | None = None) -> bool:
    """True for a CA-issued (not provisional) certificate that is valid now."""
    now = now or _utcnow()
    return (not is_provisional(e.cert) and e.status != "revoked"
            and e.cert.not_valid_before_utc <= now <= e.cert.not_valid_after_utc)


def _rebalance(entries: list[VaultEntry], address: str | None) -> list[VaultEntry]:
    """Per role, only the newest active entry of an address stays active; older actives retire.

    A valid CA-issued certificate outranks a newer self-signed or short-lived
    one: importing a stopgap never silently replaces the key others encrypt to
    (``keys activate`` chooses it explicitly, through :meth:`Vault.set_status`).
    """
    now = _utcnow()
    actives = [e for e in entries if e.status == "active" and e.email == address]
    keep: set[int] = set()
    for role in ("sign", "encrypt"):
        candidates = [e for e in actives if role in key_roles(e.cert)]
        if candidates:
            keep.add(id(max(candidates, key=lambda e: (holds_valid_ca_cert(e, now), e._age()))))
    retire = {id(e) for e in actives} - keep
    return [_replace_status(e, "retired") if id(e) in retire else e for e in entries]


def _replace_status(e: VaultEntry, status: str, when: _dt.datetime | None = None) -> VaultEntry:
    if status == e.status:
        return e
    return dataclasses.replace(e, status=status, changed=when or _utcnow())


@dataclass(frozen=True)
class Incoming:
    """A key another device holds (from an authenticated backup), with its account history."""

    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    status: str
    added: _dt.datetime
    changed: _dt.datetime
    device: str


@dataclass(frozen=True)
class StatusNote:
    """A status another device set for a key, and when."""

    fingerprint: str
    status: str
    changed: _dt.datetime


class Vault:
    """Every key this device holds; open with :meth:`Vault.open`."""

    def __init__(self, home: Path, device_key: bytes) -> None:
        self.home = home
        self._aead = AESGCM(device_key)
        self._entries: list[VaultEntry] = []
        self._state: dict = {}
        self._stamp: tuple | None = None

    # --- opening ---------------------------------------------------------

    @classmethod
    def open(cls, home: Path, *, create: bool = True) -> Vault:
        home = Path(home).expanduser().absolute()
        path = home / VAULT_FILE
        if not path.exists() and not create:
            raise VaultError(f"no key vault in {home}")
        if create:
            ensure_home(home)
        elif not home.is_dir():
            raise VaultError(f"no key vault in {home}")
        with locked(home / LOCK_FILE):
            stored = get_secret(home, "device-key", DEVICE_KEY_FILE)
            if not path.exists():
                if stored is None:
                    stored = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
                    put_secret(home, "device-key", DEVICE_KEY_FILE, stored)
                vault = cls(home, cls._device_key(stored))
                os.chmod(home, 0o700)
                vault._save()
                return vault
            if stored is None:
                raise VaultError(
                    f"the device key for the vault in {home} is missing (OS keyring entry or {DEVICE_KEY_FILE})"
                )
            vault = cls(home, cls._device_key(stored))
            vault._load()
            return vault

    @staticmethod
    def _device_key(stored: str) -> bytes:
        try:
            key = base64.b64decode(stored, validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise VaultError("the vault's device key is malformed")
        return key

    # --- disk ------------------------------------------------------------

    @property
    def _path(self) -> Path:
        return self.home / VAULT_FILE

    def _file_stamp(self) -> tuple | None:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        stamp = self._file_stamp()
        if stamp is not None and stamp == self._stamp:
            return
        try:
            blob = self._path.read_bytes()
        except FileNotFoundError:
            raise VaultError(f"the key vault file {self._path} has disappeared") from None
        except OSError as e:
            raise VaultError(f"cannot read the key vault {self._path}: {e.strerror}") from None
        if len(blob) < _HEADER_LEN + 16 or not blob.startswith(_MAGIC):
            raise VaultError(f"{self._path} is not an autosmime key vault (corrupted or foreign file)")
        if blob[len(_MAGIC):len(_MAGIC) + 1] != _VERSION:
            raise VaultError(f"{self._path} is a key vault of an unknown format version")
        header = blob[:_HEADER_LEN]
        try:
            plain = self._aead.decrypt(header[-12:], blob[_HEADER_LEN:], header)
        except InvalidTag:
            raise VaultError(
                f"the key vault {self._path} cannot be decrypted: it is corrupted or belongs to another device key"
            ) from None
        try:
            doc = json.loads(plain)
            entries = [_decode_entry(d) for d in doc["entries"]]
            state = dict(doc["state"])
        except (ValueError, KeyError, TypeError) as e:
            raise VaultError(f"the key vault {self._path} is damaged: {type(e).__name__}") from None
        self._entries, self._state, self._stamp = entries, state, stamp

    def _save(self) -> None:
        doc = {"version": 1, "entries": [_encode_entry(e) for e in self._entries], "state": self._state}
        nonce = secrets.token_bytes(12)
        header = _MAGIC + _VERSION + nonce
        blob = header + self._aead.encrypt(nonce, json.dumps(doc).encode("utf-8"), header)
        remove_stale_temps(self.home)
        write_private(self._path, blob)
        self._stamp = self._file_stamp()

    def _read(self) -> None:
        with locked(self.home / LOCK_FILE, shared=True):
            self._load()

    # --- reading ---------------------------------------------------------

    def entries(self) -> list[VaultEntry]:
        """Every entry, in the order added."""
        self._read()
        return list(self._entries)

    def decryption_keys(self) -> list[tuple[PrivateKey, x509.Certificate]]:
        """Every key ever held (retired, expired and revoked too), newest certificate first."""
        self._read()
        ordered = sorted(self._entries, key=VaultEntry._age, reverse=True)
        return [(e.key, e.cert) for e in ordered]

    def signing_pair(self, email: str | None = None) -> KeyPair:
        """The active, unexpired signing key for ``email`` (any address if None)."""
        return self._active_pair(email, "sign")

    def encryption_pair(self, email: str | None = None) -> KeyPair:
        """The active, unexpired encryption key for ``email``: what others (and Sent copies) encrypt to."""
        return self._active_pair(email, "encrypt")

    def _active_pair(self, email: str | None, role: str) -> KeyPair:
        self._read()
        wanted = email.lower() if email else None
        now = _utcnow()
        usable = [
            e for e in self._entries
            if e.effective_status(now) == "active" and (wanted is None or e.email == wanted)
            and role in key_roles(e.cert)
        ]
        if not usable:
            raise NoKey(f"no active key for {email}" if email else "no active key in the vault")
        best = max(usable, key=VaultEntry._age)
        return KeyPair(best.key, best.cert, best.chain)

    @property
    def state(self) -> dict:
        self._read()
        return json.loads(json.dumps(self._state))

    # --- writing ---------------------------------------------------------

    def add(self, key, cert, chain=(), *, source: str = "import", status: str | None = None) -> bool:
        """Add one key; False if that certificate is already held."""
        return self.add_many([(key, cert, tuple(chain), status)], source=source) == 1

    def add_many(self, items: Sequence, *, source: str, device: str = "") -> int:
        """Add several keys in one atomic save; returns how many were new.

        Items are ``(key, cert, chain)`` or ``(key, cert, chain, status)`` (a
        restore keeps the statuses it found), or KeyPair / VaultEntry objects.
        """
        prepared = []
        for item in items:
            key, cert, chain, status = _unpack(item)
            if status is not None and status not in STATUSES:
                raise UsageError(f"unknown key status {status!r}")
            if not isinstance(cert, x509.Certificate) or not hasattr(key, "private_bytes"):
                raise KeyFileError("a vault item needs a private key and an X.509 certificate")
            if not same_key(key, cert):
                raise KeyFileError(f"the key does not belong to the certificate {cert.subject.rfc4514_string()}")
            prepared.append((key, cert, chain, status))
        with locked(self.home / LOCK_FILE):
            self._stamp = None  # always re-read under the write lock
            self._load()
            held = {e.fingerprint for e in self._entries}
            entries = list(self._entries)
            added = 0
            for key, cert, chain, status in prepared:
                fp = fingerprint(cert)
                if fp in held:
                    continue
                held.add(fp)
                entry = VaultEntry(key, cert, chain, status or "active", _utcnow(), source, device)
                entries.append(entry)
                entries = _rebalance(entries, entry.email)
                added += 1
            if added:
                self._entries = entries
                self._save()
            return added

    def merge(self, incoming: Sequence[Incoming], statuses: Sequence[StatusNote] = (), *,
              source: str = "merge") -> tuple[int, int]:
        """Take in what other devices hold: (keys added, statuses changed), in one atomic save.

        A key not held here is added with its original time and device. For a
        key held on both sides the status set last wins (``changed``); on a
        tie the stronger one (revoked over retired over active). Then, per
        address and role, only the newest active key stays active.
        """
        strength = {s: i for i, s in enumerate(STATUSES)}
        with locked(self.home / LOCK_FILE):
            self._stamp = None
            self._load()
            by_fp = {e.fingerprint: i for i, e in enumerate(self._entries)}
            entries = list(self._entries)
            added = changed = 0
            touched: set[str | None] = set()
            notes = list(statuses)
            for item in incoming:
                if item.status not in STATUSES:
                    continue  # a later version's status: keep ours
                fp = fingerprint(item.cert)
                if fp in by_fp:
                    notes.append(StatusNote(fp, item.status, item.changed))
                    continue
                if not same_key(item.key, item.cert):
                    raise KeyFileError("a backup key does not belong to its certificate")
                entries.append(VaultEntry(item.key, item.cert, item.chain, item.status, item.added, source,
                                          item.device, item.changed))
                by_fp[fp] = len(entries) - 1
                added += 1
                touched.add(entries[-1].email)
            for note in notes:
                index = by_fp.get(note.fingerprint)
                if index is None or note.status not in STATUSES:
                    continue
                mine = entries[index]
                theirs_wins = (note.changed, strength[note.status]) > (mine.status_changed, strength[mine.status])
                if theirs_wins and note.status != mine.status:
                    entries[index] = dataclasses.replace(mine, status=note.status, changed=note.changed)
                    changed += 1
                    touched.add(mine.email)
            for address in touched:
                entries = _rebalance(entries, address)
            if added or changed:
                self._entries = entries
                self._save()
            return added, changed

    def set_status(self, fingerprint: str, status: str) -> None:
        """Mark one entry active, retired or revoked (activating retires the address's other active one)."""
        if status not in STATUSES:
            raise UsageError(f"unknown key status {status!r} (use one of {', '.join(STATUSES)})")
        fp = normalize_fingerprint(fingerprint)
        with locked(self.home / LOCK_FILE):
            self._stamp = None
            self._load()
            target = next((e for e in self._entries if e.fingerprint == fp), None)
            if target is None:
                raise NoKey(f"no key with fingerprint {fp[:16]}… in the vault")
            updated = []
            for e in self._entries:
                if e is target:
                    e = _replace_status(e, status)
                elif (status == "active" and e.status == "active" and e.email == target.email
                      and key_roles(e.cert) & key_roles(target.cert)):
                    e = _replace_status(e, "retired")
                updated.append(e)
            self._entries = updated
            self._save()

    def update_state(self, **changes) -> None:
        """Merge ``changes`` into the persisted state (None removes a name), atomically."""
        with locked(self.home / LOCK_FILE):
            self._stamp = None
            self._load()
            self._save_state(changes)

    def modify_state(self, name: str, change: Callable[[Any], Any]) -> Any:
        """Replace state ``name`` by ``change(current value or None)`` under the vault lock; returns the new value.

        For read-modify-write of one value (a list several processes append to
        and take from): ``update_state`` would lose a concurrent change.
        """
        with locked(self.home / LOCK_FILE):
            self._stamp = None
            self._load()
            value = change(json.loads(json.dumps(self._state.get(name))))
            self._save_state({name: value})
            return json.loads(json.dumps(value))

    def _save_state(self, changes: dict[str, Any]) -> None:
        """Apply ``changes`` (None removes a name) to the loaded state and save; the caller holds the lock."""
        try:
            json.dumps(changes)
        except (TypeError, ValueError) as e:
            raise UsageError(f"vault state values must be JSON data: {e}") from None
        state = dict(self._state)
        for name, value in changes.items():
            if value is None:
                state.pop(name, None)
            else:
                state[name] = value
        self._state = state
        self._save()

    # --- ACME accounts (certificate enrolment) ----------------------------

    def acme_account(self, ca_url: str) -> dict | None:
        """The ACME account record for the CA at ``ca_url`` (its key PEM, kid, settings), or None.

        Kept in the encrypted vault state, not in a file of its own: the account key
        proves who asked for every certificate, so it deserves the keys' protection.
        """
        record = self.state.get("acme_accounts", {}).get(ca_url)
        return dict(record) if isinstance(record, dict) else None

    def update_acme_account(self, ca_url: str, **fields) -> None:
        """Merge ``fields`` (JSON data; None removes one) into the record for ``ca_url``, atomically."""
        try:
            json.dumps(fields)
        except (TypeError, ValueError) as e:
            raise UsageError(f"ACME account fields must be JSON data: {e}") from None
        with locked(self.home / LOCK_FILE):
            self._stamp = None
            self._load()
            state = dict(self._state)
            accounts = dict(state.get("acme_accounts", {}))
            record = dict(accounts.get(ca_url, {}))
            for name, value in fields.items():
                if value is None:
                    record.pop(name, None)
                else:
                    record[name] = value
            accounts[ca_url] = record
            state["acme_accounts"] = accounts
            self._state = state
            self._save()
