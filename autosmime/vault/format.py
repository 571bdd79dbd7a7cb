"""Backup message format v1: one MIME message holding every key, readable by stock tools.

    >>> from autosmime.vault.format import build_message, verify_message, CertRecord
    >>> raw = build_message(address="alice@example.test", seq=1, p12=pfx_bytes,
    ...                     certificates=[CertRecord.of(cert, "active")], code=code)  # doctest: +SKIP
    >>> backup = verify_message(raw, code=code, address="alice@example.test", seq_seen=0)  # doctest: +SKIP
    >>> backup.manifest.seq, len(backup.keys)  # doctest: +SKIP
    (1, 1)

The message is ``multipart/mixed`` with a human explanation, a standard
PKCS#12 file (openable by Thunderbird, OpenSSL or NSS with the recovery code)
and a JSON manifest. The manifest is authenticated with HMAC-SHA256 under a key
stretched from the recovery code with Argon2id, so a planted, altered,
foreign-account or rolled-back backup is rejected before any key in it is
trusted. docs/backup-format.md is the normative description; this module is
its reference implementation.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import email
import email.policy
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.utils import format_datetime

from cryptography import x509
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from autosmime.errors import BackupRejected, KeyFileError, RolledBackBackup, WrongPassword, WrongRecoveryCode
from autosmime.pki.certs import fingerprint
from autosmime.pki.keys import KeyPair

MARKER_HEADER = "X-Autosmime-Backup"
MARKER_VALUE = "v1"
SUBJECT = "autosmime key backup"
P12_NAME = "autosmime-keys.p12"
MANIFEST_NAME = "autosmime-manifest.json"
FORMAT_NAME = "autosmime-key-backup"
VERSION = 1
PFX_ITERATIONS = 600_000
# Prefixed to the canonical manifest so a MAC made for anything else never verifies here.
MAC_CONTEXT = b"autosmime-key-backup-v1\x00"

# Anything beyond these is refused before any work, so a planted message
# cannot make a device spend minutes or gigabytes.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_CERTIFICATES = 10_000
MAX_SEQ = 2**53 - 1  # exact in every JSON reader

_CERT_KEYS = {"fingerprint", "status", "not_before", "not_after"}
_HISTORY_KEYS = {"added", "device", "changed"}
_STATUS = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost (RFC 9106 parameter names); memory in KiB."""

    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4

    # The ceiling a reader accepts (docs/backup-format.md §4): the cost every v1 backup is
    # written with, no more. Anyone can plant messages in the folder, and every candidate
    # costs one derivation before it can be told from a real backup: at the ceiling that is
    # ~0.2 s of one core, where the old 256 MiB x 16 passes cost ~4 s. The lower bounds are
    # Argon2's own minimums: the MAC key only needs the code to be secret, the cost is
    # defence in depth.
    MAX_MEMORY_KIB = 64 * 1024
    MAX_ITERATIONS = 3
    MAX_LANES = 4

    def check(self) -> None:
        ok = (
            1 <= self.lanes <= self.MAX_LANES
            and 1 <= self.iterations <= self.MAX_ITERATIONS
            and 8 * self.lanes <= self.memory_kib <= self.MAX_MEMORY_KIB
        )
        if not ok:
            raise BackupRejected("the backup's key-derivation parameters are out of the accepted range")


#: RFC 9106 "second recommended option": what every backup is written with.
SPEC_KDF = KdfParams()


@dataclass(frozen=True)
class CertRecord:
    """One key's certificate as the manifest lists it."""

    fingerprint: str  # SHA-256 of the DER certificate, lowercase hex
    status: str
    not_before: str  # RFC 3339 UTC, "Z"
    not_after: str
    # The key's history in the account (all three or none; backups written before them have none):
    added: str | None = None  # when a device first added the key, RFC 3339
    device: str | None = None  # which device that was (its name, printable ASCII)
    changed: str | None = None  # when the status was last set, RFC 3339

    @classmethod
    def of(cls, cert: x509.Certificate, status: str, *, added: _dt.datetime | None = None, device: str = "",
           changed: _dt.datetime | None = None) -> CertRecord:
        if added is None:
            return cls(fingerprint(cert), status, _rfc3339(cert.not_valid_before_utc),
                       _rfc3339(cert.not_valid_after_utc))
        return cls(fingerprint(cert), status, _rfc3339(cert.not_valid_before_utc),
                   _rfc3339(cert.not_valid_after_utc), _rfc3339(added), clean_device(device),
                   _rfc3339(changed or added))

    def to_json(self) -> dict:
        out: dict[str, str | None] = {"fingerprint": self.fingerprint, "status": self.status,
               "not_before": self.not_before, "not_after": self.not_after}
        if self.added is not None:
            out.update(added=self.added, device=self.device, changed=self.changed)
        return out


MAX_DEVICE_NAME = 64


def clean_device(name: str) -> str:
    """A device name as the manifest carries it: printable ASCII, 1-64 characters ("unknown" if none)."""
    text = "".join(ch for ch in name if ch.isascii() and ch.isprintable())[:MAX_DEVICE_NAME]
    return text or "unknown"


@dataclass(frozen=True)
class Manifest:
    """The authenticated description of one backup."""

    address: str
    seq: int
    created: str
    p12_sha256: str
    certificates: tuple[CertRecord, ...]
    kdf: KdfParams
    salt: bytes

    def to_json(self) -> dict:
        """The manifest without its MAC: exactly the object the MAC covers."""
        return {
            "format": FORMAT_NAME,
            "version": VERSION,
            "address": self.address,
            "seq": self.seq,
            "created": self.created,
            "p12": {"name": P12_NAME, "sha256": self.p12_sha256},
            "certificates": [c.to_json() for c in self.certificates],
            "kdf": {"alg": "argon2id", "memory_kib": self.kdf.memory_kib,
                    "iterations": self.kdf.iterations, "lanes": self.kdf.lanes,
                    "salt": base64.b64encode(self.salt).decode("ascii")},
        }


@dataclass(frozen=True)
class Backup:
    """A backup that passed every check: its keys can be trusted."""

    manifest: Manifest
    keys: tuple[KeyPair, ...]
    p12: bytes

    def status_of(self, pair: KeyPair) -> str:
        return self.record_of(pair).status

    def record_of(self, pair: KeyPair) -> CertRecord:
        """The manifest's entry for one of this backup's keys."""
        fp = fingerprint(pair.cert)
        return next(c for c in self.manifest.certificates if c.fingerprint == fp)


@dataclass(frozen=True)
class Unverified:
    """What a backup message claims, before the recovery code checked it."""

    manifest: Manifest
    mac: bytes
    p12: bytes


def _rfc3339(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_json(obj: object) -> bytes:
    """Sorted keys, no whitespace, ASCII only: the bytes the MAC is computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


#: MAC keys already derived in one backup or restore run: (code, salt, parameters) -> key. Held in
#: memory for that run only, never persisted; a message that shares a salt and parameters with one
#: already derived (every backup under one code does, §4) costs no second Argon2id run.
KeyCache = dict[tuple[str, bytes, KdfParams], bytes]


def mac_key(code: str, salt: bytes, kdf: KdfParams, cache: KeyCache | None = None) -> bytes:
    """The 32-byte HMAC key stretched from the recovery code (as shown, UTF-8), derived once per ``cache``."""
    kdf.check()
    memo = (code, bytes(salt), kdf)
    if cache is not None and memo in cache:
        return cache[memo]
    key = Argon2id(salt=salt, length=32, iterations=kdf.iterations, lanes=kdf.lanes,
                   memory_cost=kdf.memory_kib).derive(code.encode("utf-8"))
    if cache is not None:
        cache[memo] = key
    return key


def manifest_mac(key: bytes, manifest: Manifest) -> bytes:
    return hmac.new(key, MAC_CONTEXT + canonical_json(manifest.to_json()), hashlib.sha256).digest()


_EXPLANATION = """\
This message is the automatic key backup of autosmime for {address}.
It holds every S/MIME key and certificate this account has used, so that
mail encrypted to old certificates stays readable. Keep it in this folder.

To restore on a new device with autosmime:   autosmime restore
To use the keys in Thunderbird without autosmime: save the attachment
{p12}, then Settings > Privacy & Security > Manage Certificates >
Your Certificates > Import, and type your recovery code exactly as shown
(with the dashes) when asked for the password.

The recovery code is not in this message. Do not reply to or forward it.
"""


def folder_message(address: str, subject: str, now: _dt.datetime, markers: dict[str, str]) -> EmailMessage:
    """A message of the user's to the user, as stored in the backup folder: generic headers plus our markers."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = address
    msg["To"] = address
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{secrets.token_hex(16)}@{address.rpartition('@')[2] or 'autosmime.invalid'}>"
    for name, value in markers.items():
        msg[name] = value
    return msg


def build_message(*, address: str, seq: int, p12: bytes, certificates: list[CertRecord] | tuple[CertRecord, ...],
                  code: str, kdf: KdfParams = SPEC_KDF, now: _dt.datetime | None = None, salt: bytes | None = None,
                  keys: KeyCache | None = None) -> bytes:
    """The raw RFC 5322 message (CRLF) of one backup; ``p12`` must be protected with ``code``.

    ``salt``: the salt of an authentic backup under the same code and ``kdf``
    to reuse (so a reader derives one key for all of them, §4), else a fresh
    random one. ``keys``: the run's derived keys (see :data:`KeyCache`).
    """
    if not 1 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number out of range: {seq}")
    now = (now or _dt.datetime.now(_dt.UTC)).replace(microsecond=0)
    salt = os.urandom(16) if salt is None else salt
    manifest = Manifest(address=address, seq=seq, created=_rfc3339(now),
                        p12_sha256=hashlib.sha256(p12).hexdigest(),
                        certificates=tuple(certificates), kdf=kdf, salt=salt)
    body = manifest.to_json()
    body["mac"] = {"alg": "hmac-sha256",
                   "value": base64.b64encode(manifest_mac(mac_key(code, salt, kdf, keys), manifest)).decode("ascii")}

    msg = folder_message(address, SUBJECT, now, {MARKER_HEADER: MARKER_VALUE})
    msg.set_content(_EXPLANATION.format(address=address, p12=P12_NAME))
    msg.add_attachment(p12, maintype="application", subtype="pkcs12", filename=P12_NAME)
    msg.add_attachment(canonical_json(body), maintype="application", subtype="json", filename=MANIFEST_NAME)
    return msg.as_bytes(policy=email.policy.SMTP)


# --- reading --------------------------------------------------------------------------


def _b64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise BackupRejected(f"the backup's {what} is not a string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BackupRejected(f"the backup's {what} is not valid base64") from None


def _part_bytes(part: Message, what: str) -> bytes:
    if (part.get("Content-Transfer-Encoding") or "").strip().lower() != "base64":
        raise BackupRejected(f"the backup's {what} is not base64-encoded")
    payload = part.get_payload(decode=False)
    if not isinstance(payload, str):
        raise BackupRejected(f"the backup's {what} is malformed")
    return _b64("".join(payload.split()), what)


def _exact_keys(obj: object, keys: set[str], what: str) -> dict:
    if not isinstance(obj, dict) or set(obj) != keys:
        raise BackupRejected(f"the backup manifest's {what} has unexpected fields")
    return obj


def _int(value: object, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise BackupRejected(f"the backup manifest's {what} is out of range")
    return value


def _str(value: object, what: str, limit: int = 320) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BackupRejected(f"the backup manifest's {what} is missing or too long")
    return value


def _time(value: object, what: str) -> str:
    text = _str(value, what, 20)
    try:
        _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise BackupRejected(f"the backup manifest's {what} is not an RFC 3339 UTC time") from None
    return text


def _hex(value: object, what: str, length: int) -> str:
    text = _str(value, what, length)
    if len(text) != length or any(c not in "0123456789abcdef" for c in text):
        raise BackupRejected(f"the backup manifest's {what} is not {length} lowercase hex digits")
    return text


def parse_manifest(data: bytes) -> tuple[Manifest, bytes]:
    """The manifest and its MAC, checked for shape only (nothing here is authentic yet)."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BackupRejected("the backup manifest is too large")
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=lambda c: None)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BackupRejected("the backup manifest is not valid JSON") from None
    obj = _exact_keys(obj, {"format", "version", "address", "seq", "created", "p12", "certificates",
                            "kdf", "mac"}, "top level")
    if obj["format"] != FORMAT_NAME or obj["version"] != VERSION or type(obj["version"]) is not int:
        raise BackupRejected("the backup manifest is not format v1")
    p12 = _exact_keys(obj["p12"], {"name", "sha256"}, "p12 entry")
    if p12["name"] != P12_NAME:
        raise BackupRejected("the backup manifest names an unexpected attachment")
    kdf = _exact_keys(obj["kdf"], {"alg", "memory_kib", "iterations", "lanes", "salt"}, "kdf entry")
    if kdf["alg"] != "argon2id":
        raise BackupRejected("the backup manifest names an unsupported key derivation")
    params = KdfParams(memory_kib=_int(kdf["memory_kib"], "kdf memory", 1, KdfParams.MAX_MEMORY_KIB),
                       iterations=_int(kdf["iterations"], "kdf iterations", 1, KdfParams.MAX_ITERATIONS),
                       lanes=_int(kdf["lanes"], "kdf lanes", 1, KdfParams.MAX_LANES))
    params.check()
    salt = _b64(kdf["salt"], "kdf salt")
    if not 16 <= len(salt) <= 64:
        raise BackupRejected("the backup manifest's salt has a wrong length")
    mac = _exact_keys(obj["mac"], {"alg", "value"}, "mac entry")
    if mac["alg"] != "hmac-sha256":
        raise BackupRejected("the backup manifest names an unsupported MAC")
    tag = _b64(mac["value"], "mac")
    if len(tag) != 32:
        raise BackupRejected("the backup manifest's MAC has a wrong length")
    certs_raw = obj["certificates"]
    if not isinstance(certs_raw, list) or not 1 <= len(certs_raw) <= MAX_CERTIFICATES:
        raise BackupRejected("the backup manifest lists no certificates or too many")
    certs = []
    for c in certs_raw:
        history = isinstance(c, dict) and "added" in c
        c = _exact_keys(c, _CERT_KEYS | (_HISTORY_KEYS if history else set()), "certificate entry")
        status = _str(c["status"], "certificate status", 32)
        if not _STATUS.fullmatch(status):
            raise BackupRejected("the backup manifest has a malformed certificate status")
        record = CertRecord(_hex(c["fingerprint"], "fingerprint", 64), status,
                            _time(c["not_before"], "notBefore"), _time(c["not_after"], "notAfter"))
        if history:
            device = _str(c["device"], "device name", MAX_DEVICE_NAME)
            if clean_device(device) != device:
                raise BackupRejected("the backup manifest has a malformed device name")
            record = CertRecord(record.fingerprint, status, record.not_before, record.not_after,
                                _time(c["added"], "added time"), device, _time(c["changed"], "status time"))
        certs.append(record)
    if len({c.fingerprint for c in certs}) != len(certs):
        raise BackupRejected("the backup manifest lists a certificate twice")
    manifest = Manifest(address=_str(obj["address"], "address"), seq=_int(obj["seq"], "sequence number", 1, MAX_SEQ),
                        created=_time(obj["created"], "creation time"),
                        p12_sha256=_hex(p12["sha256"], "p12 hash", 64),
                        certificates=tuple(certs), kdf=params, salt=salt)
    return manifest, tag


def read_message(raw: bytes) -> Unverified:
    """Split a backup message into manifest, MAC and PKCS#12 bytes; strict about shape."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BackupRejected("the backup message is too large")
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    markers = msg.get_all(MARKER_HEADER) or []
    if [m.strip() for m in markers] != [MARKER_VALUE]:
        raise BackupRejected(f"not a v1 backup message (no single {MARKER_HEADER}: {MARKER_VALUE} header)")
    if msg.get_content_type() != "multipart/mixed" or not msg.is_multipart():
        raise BackupRejected("the backup message is not multipart/mixed")
    payload = msg.get_payload()
    parts = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
    if not parts or len(parts) != len(payload):
        raise BackupRejected("the backup message is malformed")
    p12_parts = [p for p in parts if p.get_content_type() == "application/pkcs12"]
    json_parts = [p for p in parts if p.get_content_type() == "application/json"]
    others = [p for p in parts if p not in p12_parts and p not in json_parts]
    if len(p12_parts) != 1 or len(json_parts) != 1 or any(p.get_content_type() != "text/plain" for p in others):
        raise BackupRejected("the backup message does not hold exactly one PKCS#12 and one manifest")
    if p12_parts[0].get_filename() != P12_NAME or json_parts[0].get_filename() != MANIFEST_NAME:
        raise BackupRejected("the backup message's attachments have unexpected names")
    manifest, tag = parse_manifest(_part_bytes(json_parts[0], "manifest"))
    return Unverified(manifest, tag, _part_bytes(p12_parts[0], "PKCS#12 attachment"))


def _same_address(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def read_message_id(raw: bytes) -> str:
    """The Message-ID header of a raw message (used to find an APPENDed backup without UIDPLUS)."""
    return (email.message_from_bytes(raw, policy=email.policy.compat32).get("Message-ID") or "").strip()


_BAD_MAC = "the recovery code does not open this backup (or its manifest was altered)"


def check_binding(found: Unverified, address: str) -> None:
    """The checks that need no key: the attachment is the one the manifest names, for ``address``.

    Run before the MAC, so a message that fails them costs no derivation
    (the order of rejections changes nothing: every check must pass).
    """
    m = found.manifest
    if not hmac.compare_digest(hashlib.sha256(found.p12).hexdigest(), m.p12_sha256):
        raise BackupRejected("the backup's PKCS#12 attachment was altered or truncated")
    if not _same_address(m.address, address):
        raise BackupRejected("the backup belongs to another account")


def authenticate(raw: bytes, *, code: str, address: str, diagnose: bool = False,
                 keys: KeyCache | None = None) -> Unverified:
    """Shape, p12 hash, address, then MAC: the message was written with ``code`` for ``address``.

    Does not open the PKCS#12; :func:`verify_message` does everything. One
    Argon2id derivation at most (none when ``keys`` holds the key for the
    message's salt and parameters), and nothing at all when the manifest's
    parameters exceed the ceiling or a check without a key fails. A MAC that
    does not verify raises WrongRecoveryCode; ``diagnose`` words it better
    (see :func:`diagnose`) at the cost of the PKCS#12 MAC derivation.
    """
    found = read_message(raw)
    check_binding(found, address)
    m = found.manifest
    if not hmac.compare_digest(manifest_mac(mac_key(code, m.salt, m.kdf, keys), m), found.mac):
        raise _diagnose_bad_mac(found, code) if diagnose else WrongRecoveryCode(_BAD_MAC)
    return found


def verify_message(raw: bytes, *, code: str, address: str, seq_seen: int = 0, diagnose: bool = True,
                   keys: KeyCache | None = None) -> Backup:
    """Every check: shape, p12 hash and address (no key needed), MAC, protected PKCS#12, fingerprints, sequence.

    ``code`` is the recovery code in its canonical shown form. Raises
    WrongRecoveryCode, RolledBackBackup or BackupRejected; never returns a
    backup whose keys have not been authenticated by the code.

    Each key derivation of the message runs once at most, and only within
    the ceilings (Argon2id :class:`KdfParams`, PKCS#12 ``PFX_ITERATIONS``).
    A caller examining many candidates passes ``diagnose=False`` (a bad MAC
    is then WrongRecoveryCode at no further cost) and calls :func:`diagnose`
    for the one rejection it shows.
    """
    return open_authenticated(authenticate(raw, code=code, address=address, diagnose=diagnose, keys=keys),
                              code=code, seq_seen=seq_seen)


def open_authenticated(found: Unverified, *, code: str, seq_seen: int = 0, pfx_mac: bool = True) -> Backup:
    """The rest of :func:`verify_message` for a message :func:`authenticate` already accepted with ``code``
    (so a caller that examined candidates does not run their Argon2id twice): PKCS#12, fingerprints, sequence.

    ``pfx_mac`` False skips the derivation of the PKCS#12's own MAC key: the
    manifest MAC already authenticated the file's SHA-256, so that MAC can
    only confirm it (the MAC must still be present and within the ceiling).
    A restore saves that derivation; a writer checking what it just stored
    runs it, since stock tools will.
    """
    from autosmime.pki.pkcs12 import parse_pfx

    m = found.manifest
    try:
        pairs = parse_pfx(found.p12, code.encode("utf-8"), require_protected=True, max_iterations=PFX_ITERATIONS,
                          verify_mac=pfx_mac)
    except WrongPassword:
        raise BackupRejected("the backup's PKCS#12 attachment does not open with the recovery code") from None
    except KeyFileError as e:
        raise BackupRejected(f"the backup's PKCS#12 attachment is unusable: {e}") from None
    held = sorted(fingerprint(p.cert) for p in pairs)
    if held != sorted(c.fingerprint for c in m.certificates):
        raise BackupRejected("the backup's PKCS#12 does not hold exactly the certificates its manifest lists")
    if m.seq < seq_seen:
        raise RolledBackBackup(f"the backup is number {m.seq}, older than number {seq_seen} already seen here")
    return Backup(m, tuple(pairs), found.p12)


def diagnose(raw: bytes, code: str) -> BackupRejected:
    """The error to show for a message whose manifest MAC did not verify with ``code``.

    For the one rejection a caller reports, after ``verify_message(...,
    diagnose=False)`` raised WrongRecoveryCode: costs the PKCS#12 MAC
    derivation (at most ``PFX_ITERATIONS``), never the Argon2id again.
    """
    try:
        found = read_message(raw)
    except BackupRejected as e:
        return e
    return _diagnose_bad_mac(found, code)


def _diagnose_bad_mac(found: Unverified, code: str) -> BackupRejected:
    """Tell "wrong code" from "altered manifest" for the user; never used to accept anything.

    The manifest MAC cannot separate the two, but the PKCS#12 (protected by the
    same code) can: if it opens, the code was right and the manifest is not
    the one written with it. The PKCS#12 is untrusted here: a file asking for
    more than ``PFX_ITERATIONS`` (what every backup is written with) is not
    derived at all.
    """
    from autosmime.pki.pkcs12 import parse_pfx

    try:
        parse_pfx(found.p12, code.encode("utf-8"), require_protected=True, max_iterations=PFX_ITERATIONS)
    except WrongPassword:
        return WrongRecoveryCode("the recovery code does not open this backup")
    except BackupRejected as e:  # e.g. a planted unprotected PKCS#12
        return e
    except Exception:  # unreadable: the code was not shown to be right, nor the file to be ours
        return WrongRecoveryCode("the recovery code does not open this backup (or it is not a backup made with it)")
    return BackupRejected("the backup manifest was altered (its MAC does not verify)")
