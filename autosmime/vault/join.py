"""Device join v1: a new device gets the recovery code from an existing one through the mailbox.

    >>> from autosmime.mailbox.memory import MemoryServer
    >>> from autosmime.vault.join import open_request, pending_requests, approve, poll_answers, withdraw
    >>> box = MemoryServer().session()
    >>> # new device:   ticket = open_request(box, address=a, folder=f); show ticket.code (C1)
    >>> # old device:   [r] = pending_requests(box, f); user checks r.code == C1
    >>> #               c2 = approve(box, address=a, folder=f, code=recovery_code, request=r); show c2
    >>> # new device:   [answer] = poll_answers(box, f, ticket, wait=5); user checks answer.c2 == c2
    >>> #               withdraw(box, f, ticket); restore with answer.code

The steps take an open mailbox session; :mod:`autosmime.agent.join` runs
them as the two flows (waiting, asking the user, reconnecting to withdraw).

The mail provider is the adversary: it reads, plants, deletes and replaces
messages in the backup folder. So the two ephemeral X25519 keys are bound to
what the user sees: the approver only answers a request whose short code (C1)
the user confirmed against the new device's screen, and the new device only
restores a code whose answer transcript code (C2) the user confirmed against
the old device's screen. Both codes are 40-bit Argon2id digests, so grinding a
second key with the same code needs ~2^40 × 0.1 s, far beyond the 15 minutes a
request lives. docs/backup-format.md ("Device join v1") is normative.

With an invitation the codes need no comparing: the old device makes a
one-time code (``Invitation.new()``, shown once, kept in its vault), the user
types it on the new device, and both messages carry an HMAC under a key derived
from it. The old device (its ``watch``, or ``approve``) then answers the
request by itself, and the new device accepts the answer by itself:

    >>> inv = Invitation.new()                       # old device: show inv.code once
    >>> Invitation.parse(inv.code.lower()) == inv    # new device: what the user typed
    True

The joiner's private key lives only in memory: a join is not restartable; a
killed joiner leaves a request that every device deletes after 15 minutes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import email
import email.policy
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from autosmime.errors import (
    BadInvitation,
    JoinCodeMismatch,
    JoinError,
    JoinTimeout,
    NoBackupFound,
    NoJoinRequest,
    WrongRecoveryCode,
)
from autosmime.mailbox.session import MailboxSession
from autosmime.vault.format import folder_message
from autosmime.vault.recovery import ALPHABET, new_code, typed_chars

log = logging.getLogger(__name__)

JOIN_HEADER = "X-Autosmime-Join"
REQUEST_VALUE = "request-v1"
ANSWER_VALUE = "answer-v1"
# On answers only: lets the joiner search for answers to its own request.
ANSWER_TO_HEADER = "X-Autosmime-Join-Request"
SUBJECT = "autosmime device join"
JSON_NAME = "autosmime-join.json"
FORMAT_NAME = "autosmime-device-join"
VERSION = 1

MAX_AGE = _dt.timedelta(minutes=15)
CLOCK_SKEW = _dt.timedelta(minutes=5)  # a request dated further ahead is not shown
MAX_MESSAGE_BYTES = 64 * 1024
MAX_REQUESTS = 16  # newest fresh requests shown; bounds the Argon2id work a planted flood causes
MAX_DEVICE_NAME = 64
MAX_CIPHERTEXT = 256

REQUEST_LABEL = b"autosmime join v1 request"
ANSWER_LABEL = b"autosmime join v1 answer"
KEY_INFO = b"autosmime join v1"
SAS_SALT = b"autosmime-join-sas-v1"
SAS_DIGITS = 12
# RFC 9106 Argon2id at ~0.1 s on a laptop core: the cost is what makes 40 bits enough (see the doc).
SAS_MEMORY_KIB = 64 * 1024
SAS_ITERATIONS = 2
SAS_LANES = 1

INVITE_REQUEST_LABEL = b"autosmime join v1 invited request"
INVITE_ANSWER_LABEL = b"autosmime join v1 invited answer"
INVITE_SALT = b"autosmime-join-invite-v1"
INVITE_SECRET_CHARS = 24  # Crockford base32: 120 bits
INVITE_GROUP = 5
MAX_INVITE_LIFETIME = _dt.timedelta(days=7)

_HEX_ID = re.compile(r"[0-9a-f]{32}")
_INVITE_ID = re.compile(r"[0-9a-f]{16}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")

_EXPLANATION = """\
This message was written by autosmime while adding a device to {address}.
It is deleted automatically within 15 minutes. It does not contain your
recovery code in readable form. Do not reply to or forward it.
"""


# --- short authentication strings ----------------------------------------------------


def sas(transcript: bytes) -> str:
    """12 decimal digits in 3 groups of 4 derived (slowly, on purpose) from ``transcript``."""
    digest = Argon2id(salt=SAS_SALT, length=8, iterations=SAS_ITERATIONS, lanes=SAS_LANES,
                      memory_cost=SAS_MEMORY_KIB).derive(transcript)
    digits = f"{int.from_bytes(digest, 'big') % 10**SAS_DIGITS:012d}"
    return " ".join(digits[i:i + 4] for i in range(0, SAS_DIGITS, 4))


def request_code(request_id: bytes, joiner_pub: bytes) -> str:
    """C1: what the new device shows and the approver must confirm."""
    return sas(REQUEST_LABEL + request_id + joiner_pub)


def answer_code(request_id: bytes, joiner_pub: bytes, approver_pub: bytes) -> str:
    """C2: what the approver shows and the new device must confirm."""
    return sas(ANSWER_LABEL + request_id + joiner_pub + approver_pub)


def normalize_sas(text: str) -> str | None:
    """What a user typed -> ``"1234 5678 9012"``, or None if it is not 12 digits."""
    digits = "".join(ch for ch in str(text) if not ch.isspace() and ch not in "-_")
    if len(digits) != SAS_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return " ".join(digits[i:i + 4] for i in range(0, SAS_DIGITS, 4))


def _shared_key(private: X25519PrivateKey, peer_pub: bytes, request_id: bytes, joiner_pub: bytes,
                approver_pub: bytes) -> bytes:
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_pub))
    except ValueError:  # wrong length or a low-order point (all-zero secret)
        raise JoinError("the join message carries an unusable public key") from None
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=request_id,
                info=KEY_INFO + joiner_pub + approver_pub).derive(shared)


def _raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --- invitations: the codes compared ahead of time -------------------------------------


@dataclass(frozen=True)
class Invitation:
    """A one-time secret the user carries from the old device to the new one.

        >>> inv = Invitation.new()
        >>> len(inv.code), inv.code.count("-")
        (29, 4)
        >>> Invitation.parse(inv.code.replace("-", " ").lower()).invite_id == inv.invite_id
        True

    24 Crockford base32 characters (120 bits from :mod:`secrets`) and one
    check character, in five groups of five (a recovery code has groups of
    four, so the two are not mistaken for each other). Whoever holds it and
    can write to the mailbox gets the recovery code once: it is single-use and
    expires (the approving device keeps it and its expiry, never the folder).
    """

    secret: str = field(repr=False)

    @classmethod
    def new(cls) -> Invitation:
        return cls(new_code(INVITE_SECRET_CHARS).replace("-", ""))

    @classmethod
    def parse(cls, text: str) -> Invitation:
        """What the user typed -> Invitation; BadInvitation if it is not one (a typo is caught by the check character)."""
        chars = typed_chars(text)
        if len(chars) != INVITE_SECRET_CHARS + 1 or any(ch not in ALPHABET for ch in chars):
            raise BadInvitation(f"that is not an invitation code: it has {INVITE_SECRET_CHARS + 1} letters and "
                                f"digits in groups of {INVITE_GROUP} (`autosmime invite` on your other device)")
        invitation = cls(chars[:-1])
        if invitation._check != chars[-1]:
            raise BadInvitation("that invitation code has a typo (its check character does not match); "
                                "compare it with your other device's screen")
        return invitation

    @property
    def _check(self) -> str:
        return ALPHABET[hashlib.sha256(INVITE_SALT + self.secret.encode("ascii")).digest()[0] % len(ALPHABET)]

    @property
    def code(self) -> str:
        chars = self.secret + self._check
        return "-".join(chars[i:i + INVITE_GROUP] for i in range(0, len(chars), INVITE_GROUP))

    @functools.cached_property
    def _derived(self) -> bytes:  # (iid, M): one HKDF per invitation, not one per MAC
        return HKDF(algorithm=hashes.SHA256(), length=40, salt=INVITE_SALT,
                    info=b"autosmime join v1 invitation").derive(self.secret.encode("ascii"))

    @property
    def invite_id(self) -> str:
        """16 hex digits naming the invitation in requests (reveals nothing of the secret)."""
        return self._derived[:8].hex()

    def request_mac(self, request_id: bytes, joiner_pub: bytes) -> bytes:
        return hmac.new(self._derived[8:], INVITE_REQUEST_LABEL + request_id + joiner_pub
                        + bytes.fromhex(self.invite_id), "sha256").digest()

    def answer_mac(self, request_id: bytes, joiner_pub: bytes, approver_pub: bytes, nonce: bytes,
                   ciphertext: bytes) -> bytes:
        return hmac.new(self._derived[8:], INVITE_ANSWER_LABEL + request_id + joiner_pub + approver_pub + nonce
                        + ciphertext, "sha256").digest()

    def vouches_for(self, request: JoinRequest) -> bool:
        """True if ``request`` was made with this invitation (its HMAC checks out)."""
        return (request.invite_id == self.invite_id and request.invite_mac is not None
                and hmac.compare_digest(request.invite_mac, self.request_mac(request.request_id, request.public_key)))


# --- messages --------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinRequest:
    """A request from a new device, as found in the folder (authenticated only by the user checking C1)."""

    uid: int
    request_id: bytes
    device: str
    created: _dt.datetime
    public_key: bytes
    invite_id: str | None = None  # set when the new device was given an invitation code
    invite_mac: bytes | None = field(default=None, repr=False)

    @property
    def code(self) -> str:
        """C1 (costs one Argon2id run, ~0.1 s)."""
        return request_code(self.request_id, self.public_key)


@dataclass(frozen=True)
class JoinAnswer:
    """An answer from an existing device, as found in the folder."""

    uid: int
    request_id: bytes
    created: _dt.datetime
    public_key: bytes
    nonce: bytes
    ciphertext: bytes
    mac: bytes | None = field(default=None, repr=False)  # under the invitation, when the request had one


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def _rfc3339(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _build(address: str, kind: str, body: dict, now: _dt.datetime, answer_to: str | None = None) -> bytes:
    markers = {JOIN_HEADER: kind, **({ANSWER_TO_HEADER: answer_to} if answer_to is not None else {})}
    msg = folder_message(address, SUBJECT, now, markers)
    msg.set_content(_EXPLANATION.format(address=address))
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    msg.add_attachment(data, maintype="application", subtype="json", filename=JSON_NAME)
    return msg.as_bytes(policy=email.policy.SMTP)


def build_request(*, address: str, request_id: bytes, device: str, public_key: bytes,
                  now: _dt.datetime | None = None, invitation: Invitation | None = None) -> bytes:
    """The raw message (CRLF) of a join request (vouched for by ``invitation`` when given)."""
    now = now or _utcnow()
    body: dict = {"format": FORMAT_NAME, "version": VERSION, "type": "request", "id": request_id.hex(),
                  "device": device, "created": _rfc3339(now), "public_key": _b64(public_key)}
    if invitation is not None:
        body["invite"] = {"id": invitation.invite_id, "mac": _b64(invitation.request_mac(request_id, public_key))}
    return _build(address, REQUEST_VALUE, body, now)


def build_answer(*, address: str, request_id: bytes, public_key: bytes, nonce: bytes, ciphertext: bytes,
                 now: _dt.datetime | None = None, mac: bytes | None = None) -> bytes:
    """The raw message (CRLF) of a join answer."""
    now = now or _utcnow()
    body = {"format": FORMAT_NAME, "version": VERSION, "type": "answer", "id": request_id.hex(),
            "created": _rfc3339(now), "public_key": _b64(public_key), "nonce": _b64(nonce),
            "ciphertext": _b64(ciphertext), **({"mac": _b64(mac)} if mac is not None else {})}
    return _build(address, ANSWER_VALUE, body, now, answer_to=request_id.hex())


class _Bad(Exception):
    """A join message that is not well-formed (ignored, never shown)."""


def _json_part(raw: bytes, kind: str) -> dict:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise _Bad("too large")
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    values = [" ".join(str(v).split()) for v in msg.get_all(JOIN_HEADER, [])]
    if values != [kind]:
        raise _Bad("join header")
    parts = [p for p in msg.walk() if p.get_content_type() == "application/json"]
    if len(parts) != 1:
        raise _Bad("json part")
    payload = parts[0].get_payload()
    if not isinstance(payload, str):
        raise _Bad("json part")
    if (parts[0].get("Content-Transfer-Encoding") or "").strip().lower() == "base64":
        try:
            data = base64.b64decode("".join(payload.split()).encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise _Bad("base64") from None
    else:
        data = payload.encode("utf-8", "replace")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _Bad("json") from None
    if not isinstance(body, dict):
        raise _Bad("json")
    return body


def _field_b64(body: dict, name: str, low: int, high: int) -> bytes:
    value = body.get(name)
    if not isinstance(value, str):
        raise _Bad(name)
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise _Bad(name) from None
    if not low <= len(data) <= high:
        raise _Bad(name)
    return data


def _common(body: dict, kind: str, keys: set[str], optional: set[str]) -> tuple[bytes, _dt.datetime]:
    if not keys <= set(body) <= keys | optional or body["format"] != FORMAT_NAME or body["version"] != VERSION \
            or body["type"] != kind:
        raise _Bad("fields")
    rid, created = body["id"], body["created"]
    if not isinstance(rid, str) or not _HEX_ID.fullmatch(rid):
        raise _Bad("id")
    if not isinstance(created, str) or not _TIME.fullmatch(created):
        raise _Bad("created")
    try:
        when = _dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.UTC)
    except ValueError:
        raise _Bad("created") from None
    return bytes.fromhex(rid), when


_REQUEST_KEYS = {"format", "version", "type", "id", "device", "created", "public_key"}
_ANSWER_KEYS = {"format", "version", "type", "id", "created", "public_key", "nonce", "ciphertext"}


def parse_request(uid: int, raw: bytes) -> JoinRequest:
    """A request message -> JoinRequest; JoinError if it is not a well-formed v1 request."""
    try:
        body = _json_part(raw, REQUEST_VALUE)
        rid, created = _common(body, "request", _REQUEST_KEYS, {"invite"})
        device = body["device"]
        if not isinstance(device, str) or not 1 <= len(device) <= MAX_DEVICE_NAME \
                or not device.isprintable() or not device.isascii():
            raise _Bad("device")  # shown on the approver's terminal: no control characters
        invite_id, invite_mac = None, None
        if "invite" in body:
            invite = body["invite"]
            if not isinstance(invite, dict) or set(invite) != {"id", "mac"} or not isinstance(invite["id"], str) \
                    or not _INVITE_ID.fullmatch(invite["id"]):
                raise _Bad("invite")
            invite_id, invite_mac = invite["id"], _field_b64(invite, "mac", 32, 32)
        return JoinRequest(uid, rid, device, created, _field_b64(body, "public_key", 32, 32), invite_id, invite_mac)
    except _Bad as e:
        raise JoinError(f"not a valid join request ({e})") from None


def parse_answer(uid: int, raw: bytes) -> JoinAnswer:
    """An answer message -> JoinAnswer; JoinError if it is not a well-formed v1 answer."""
    try:
        body = _json_part(raw, ANSWER_VALUE)
        rid, created = _common(body, "answer", _ANSWER_KEYS, {"mac"})
        return JoinAnswer(uid, rid, created, _field_b64(body, "public_key", 32, 32),
                          _field_b64(body, "nonce", 12, 12), _field_b64(body, "ciphertext", 17, MAX_CIPHERTEXT),
                          _field_b64(body, "mac", 32, 32) if "mac" in body else None)
    except _Bad as e:
        raise JoinError(f"not a valid join answer ({e})") from None


# --- the folder ------------------------------------------------------------------------


def _sweep(box: MailboxSession, folder: str, now: _dt.datetime) -> list[tuple[int, bytes]]:
    """Delete join messages older than MAX_AGE; returns the remaining raw requests.

    Messages that do not parse are left alone: they may be a later version's.
    """
    stale: list[int] = []
    requests: list[tuple[int, bytes]] = []
    for kind, parse in ((REQUEST_VALUE, parse_request), (ANSWER_VALUE, parse_answer)):
        for uid, raw in box.fetch(folder, box.search_header(folder, JOIN_HEADER, kind)).items():
            try:
                created = parse(uid, raw).created
            except JoinError:
                continue
            if now - created > MAX_AGE:
                stale.append(uid)
            elif kind == REQUEST_VALUE:
                requests.append((uid, raw))
    if stale:
        box.delete(folder, stale)
        log.info("deleted %d stale join message(s)", len(stale))
    return requests


def pending_requests(box: MailboxSession, folder: str, *, now: _dt.datetime | None = None,
                     limit: int | None = MAX_REQUESTS) -> list[JoinRequest]:
    """Fresh join requests in the backup folder, newest first (at most ``limit``; None: all).

    Deletes requests and answers older than 15 minutes on the way. Raises
    NoJoinRequest when there is none. Nothing here is authenticated: the
    user must compare each request's ``code`` with the new device's screen.
    """
    now = now or _utcnow()
    if not box.folder_exists(folder):
        raise NoJoinRequest(f"no join request: the mailbox has no folder {folder!r}")
    found = []
    for uid, raw in _sweep(box, folder, now):
        try:
            request = parse_request(uid, raw)
        except JoinError as e:
            log.debug("ignored message UID %d: %s", uid, e)
            continue
        if request.created - now > CLOCK_SKEW:
            log.warning("ignored a join request dated in the future (message UID %d)", uid)
            continue
        found.append(request)
    if not found:
        raise NoJoinRequest("no pending join request; run `autosmime restore --join` on the new device first")
    found.sort(key=lambda r: (r.created, r.uid), reverse=True)
    return found if limit is None else found[:limit]


def find_request(requests: list[JoinRequest], shown: str) -> JoinRequest:
    """The request whose C1 equals the code the user read on the new device; JoinCodeMismatch if none."""
    wanted = normalize_sas(shown)
    if wanted is None:
        raise JoinCodeMismatch(f"{shown.strip()!r} is not a join code: it has 12 digits in 3 groups of 4")
    for request in requests:
        if request.code == wanted:
            return request
    raise JoinCodeMismatch(f"no pending join request shows the code {wanted}; nothing was sent")


def approve(box: MailboxSession, *, address: str, folder: str, code: str, request: JoinRequest,
            invitation: Invitation | None = None) -> str:
    """Send ``code`` (this device's recovery code), encrypted for ``request``; returns C2 to show the user.

    Call only for a request whose ``code`` (C1) the user confirmed, or with
    the ``invitation`` that vouches for it (checked here: JoinError if it does
    not); the answer then carries the invitation's HMAC, so the new device
    needs no C2. Raises NoBackupFound when the folder holds no backup to
    restore from.
    """
    from autosmime.vault import format as fmt

    if invitation is not None and not invitation.vouches_for(request):
        raise JoinError(f"the join request from {request.device!r} was not made with this invitation")
    if not box.folder_exists(folder) or not box.search_header(folder, fmt.MARKER_HEADER, fmt.MARKER_VALUE):
        raise NoBackupFound(f"no key backup in the mailbox folder {folder!r}; run `autosmime backup` first")
    mine = X25519PrivateKey.generate()
    mine_pub = _raw_public(mine)
    key = _shared_key(mine, request.public_key, request.request_id, request.public_key, mine_pub)
    nonce = os.urandom(12)
    aad = request.request_id + request.public_key + mine_pub
    sealed = AESGCM(key).encrypt(nonce, code.encode("utf-8"), aad)
    mac = None if invitation is None else invitation.answer_mac(request.request_id, request.public_key, mine_pub,
                                                                nonce, sealed)
    raw = build_answer(address=address, request_id=request.request_id, public_key=mine_pub,
                       nonce=nonce, ciphertext=sealed, mac=mac)
    box.append(folder, raw, (r"\Seen",))
    log.info("answered join request %s", request.request_id.hex())
    return answer_code(request.request_id, request.public_key, mine_pub)


# --- the joining device ----------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    """A join request this device posted; its private key lives only here, in memory."""

    request_id: bytes
    private_key: X25519PrivateKey = field(repr=False)
    message_id: str
    invitation: Invitation | None = None

    @property
    def public_key(self) -> bytes:
        return _raw_public(self.private_key)

    @property
    def code(self) -> str:
        """C1, to show on this device (one Argon2id run)."""
        return request_code(self.request_id, self.public_key)


@dataclass(frozen=True)
class OpenedAnswer:
    """An answer to our request that decrypted to a recovery code.

    Usable only once the user confirmed ``c2``, or at once when ``invited``
    (it carries our invitation's HMAC: only the device holding the
    invitation could have made it).
    """

    uid: int
    code: str = field(repr=False)
    c2: str
    invited: bool = False


def open_request(box: MailboxSession, *, address: str, folder: str, device: str | None = None,
                 invitation: Invitation | None = None) -> Ticket:
    """Post a join request (after checking a backup exists and sweeping stale join messages)."""
    from autosmime.vault import format as fmt

    if not box.folder_exists(folder) or not box.search_header(folder, fmt.MARKER_HEADER, fmt.MARKER_VALUE):
        raise NoBackupFound(f"no key backup in the mailbox folder {folder!r} to join")
    _sweep(box, folder, _utcnow())
    mine = X25519PrivateKey.generate()
    request_id = os.urandom(16)
    raw = build_request(address=address, request_id=request_id, device=device or device_name(),
                        public_key=_raw_public(mine), invitation=invitation)
    box.append(folder, raw, (r"\Seen",))
    return Ticket(request_id, mine, fmt.read_message_id(raw), invitation)


def _open_answer(answer: JoinAnswer, ticket: Ticket) -> tuple[str, str, bool]:
    """(recovery code, C2, invited) from an answer to our request; JoinError if it is not one."""
    from autosmime.vault.recovery import normalize

    mine, request_id = ticket.private_key, ticket.request_id
    if answer.request_id != request_id:
        raise JoinError("the answer is for another join request")
    mine_pub = _raw_public(mine)
    invited = False
    if answer.mac is not None:
        expected = None if ticket.invitation is None else ticket.invitation.answer_mac(
            request_id, mine_pub, answer.public_key, answer.nonce, answer.ciphertext)
        if expected is None or not hmac.compare_digest(expected, answer.mac):
            # Only the device holding our invitation can make this HMAC: a wrong one is forged.
            raise JoinError("the answer claims our invitation but its HMAC is wrong (forged)")
        invited = True
    key = _shared_key(mine, answer.public_key, request_id, mine_pub, answer.public_key)
    try:
        plain = AESGCM(key).decrypt(answer.nonce, answer.ciphertext, request_id + mine_pub + answer.public_key)
        code = normalize(plain.decode("ascii"))
    except (InvalidTag, UnicodeDecodeError, WrongRecoveryCode):
        raise JoinError("the answer does not decrypt to a recovery code") from None
    return code, answer_code(request_id, mine_pub, answer.public_key), invited


def poll_answers(box: MailboxSession, folder: str, ticket: Ticket, *, wait: float,
                 interval: float = 1.0) -> list[OpenedAnswer]:
    """Answers to ``ticket`` that decrypt, waiting up to ``wait`` seconds for one to arrive.

    Answers that are not for us or do not decrypt are deleted: every answer
    seen is either returned or deleted, so an empty search means "nothing new".
    """
    uids = box.wait_for(folder, ANSWER_TO_HEADER, ticket.request_id.hex(), timeout=wait, interval=interval)
    opened = []
    for uid, raw in box.fetch(folder, uids).items():
        try:
            code, c2, invited = _open_answer(parse_answer(uid, raw), ticket)
        except JoinError as e:
            log.warning("ignored a join answer (message UID %d): %s", uid, e)
            box.delete(folder, [uid])
            continue
        opened.append(OpenedAnswer(uid, code, c2, invited))
    return opened


def reject_answer(box: MailboxSession, folder: str, answer: OpenedAnswer) -> None:
    """Delete an answer whose C2 the user did not confirm."""
    log.warning("ignored a join answer whose code %s was not confirmed", answer.c2)
    box.delete(folder, [answer.uid])


def withdraw(box: MailboxSession, folder: str, ticket: Ticket) -> None:
    """Delete our request and every answer to it."""
    uids = set(box.search_header(folder, "Message-ID", ticket.message_id))
    uids.update(box.search_header(folder, ANSWER_TO_HEADER, ticket.request_id.hex()))
    box.delete(folder, sorted(uids))


def device_name() -> str:
    """This machine's name as the approver will see it (printable ASCII, at most 64 characters)."""
    name = "".join(ch for ch in socket.gethostname() if ch.isascii() and ch.isprintable())
    return name[:MAX_DEVICE_NAME] or "new device"


def confirm_from_file(path: Path, *, timeout: float, interval: float = 0.5) -> Callable[[str], bool]:
    """A ``confirm`` for scripts: waits (up to ``timeout`` s from now) for ``path`` to hold C2, compares.

    The file is read only when an answer arrives, so a script can write it
    after the approver printed C2. A file that does not (yet) hold 12 digits
    is read again until it does: it may be half written.
    """
    deadline = time.monotonic() + timeout

    def confirm(c2: str) -> bool:
        while True:
            try:
                expected = normalize_sas(Path(path).read_text("utf-8"))
            except (OSError, UnicodeDecodeError):
                expected = None
            if expected is not None:
                return secrets.compare_digest(expected, c2)
            if time.monotonic() >= deadline:
                raise JoinTimeout(f"the confirmation file {path} did not hold a 12-digit code in time; "
                                  "the join request was withdrawn")
            time.sleep(interval)

    return confirm
