"""Send mail: always signed, encrypted when every recipient has a usable certificate, a Sent copy kept.

    >>> from autosmime.agent import Agent
    >>> from autosmime.agent.send import send_mail
    >>> outcome = send_mail(Agent(home), to=["bob@example.test"], subject="Hi", body="Hello Bob\\n")  # doctest: +SKIP
    >>> outcome.encrypted, outcome.sent_folder                                                    # doctest: +SKIP
    (True, 'Sent')

The rules:

- Signed with the vault's active signing key for the account's address, always: recipients without
  a certificate learn ours from it.
- Encrypted only when every recipient (To, Cc, Bcc) has a usable certificate: one found by
  :func:`autosmime.agent.lookup.lookup` (contacts, then the directory; pki.select's filter: valid,
  for encryption, not revoked) whose CRL, when its CA publishes one, does not list it. Otherwise the
  mail goes signed only and the outcome says for whom no certificate was found; with
  ``require_encryption`` nothing is sent (EncryptionUnavailable, naming them).
- The message is encrypted to our own encryption certificate too, so the Sent copy stays readable;
  when we have none the outcome warns that our own copy is left out.
- Bcc addresses are only in the SMTP envelope, never in a header. (They are recipients of the
  CMS envelope when the mail is encrypted, as in every S/MIME client that sends one message.)

Nothing is lost when the mailbox is down: the finished message is first written to the outbox
(``HOME/outbox``, 0600 files), then submitted over SMTP, then APPENDed to the Sent folder (SPECIAL-USE
``\\Sent``, else ``Sent``, created if missing), and removed from the outbox only when both are done.
SMTP failing raises NotSent (the message stays queued); APPEND failing after SMTP succeeded is a
warning (the mail went out; the Sent copy stays queued). Every later :func:`send_mail` (and
:func:`flush_outbox`, e.g. from ``watch``) first retries what is queued, in order.
"""

from __future__ import annotations

import datetime as _dt
import email.parser
import email.policy
import json
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from autosmime._files import ensure_home, locked, write_private
from autosmime.errors import (
    AutosmimeError,
    EncryptionUnavailable,
    MailboxError,
    MessageRefused,
    NoKey,
    NoRecipientCertificate,
    NotSent,
    UsageError,
)
from autosmime.pki.certs import fingerprint
from autosmime.pki.select import normalize_address

if TYPE_CHECKING:
    from autosmime.agent.context import Agent
    from autosmime.mailbox.session import MailboxSession

__all__ = ["OUTBOX_DIR", "Queued", "Recipient", "Retried", "SendOutcome", "find_sent_folder", "flush_outbox",
           "queued", "send_mail"]

OUTBOX_DIR = "outbox"
SENT_FOLDER = "Sent"  # when the server marks no folder \Sent


@dataclass(frozen=True)
class Recipient:
    """One recipient and the certificate chosen for them (``sha256`` None: none usable, ``reason`` says why)."""

    address: str
    sha256: str | None = None
    source: str | None = None          # contacts | directory | smimea
    reason: str | None = None

    def to_json(self) -> dict:
        return {"address": self.address, "sha256": self.sha256, "source": self.source, "reason": self.reason}


@dataclass(frozen=True)
class Retried:
    """An earlier queued message this call tried again: ``done`` when nothing of it is left queued."""

    id: str
    subject: str
    done: bool
    error: str | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "subject": self.subject, "done": self.done, "error": self.error}


@dataclass(frozen=True)
class SendOutcome:
    """What :func:`send_mail` did. ``queued`` is the outbox id when the Sent copy still waits."""

    message_id: str
    sender: str
    recipients: tuple[Recipient, ...]
    encrypted: bool
    own_copy: bool                     # encrypted to our own certificate too (or not encrypted at all)
    sent_folder: str | None = None
    sent_uid: int | None = None
    queued: str | None = None
    retried: tuple[Retried, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def missing(self) -> tuple[str, ...]:
        """Recipients without a usable certificate."""
        return tuple(r.address for r in self.recipients if r.sha256 is None)

    def to_json(self) -> dict:
        return {"message_id": self.message_id, "from": self.sender, "signed": True, "encrypted": self.encrypted,
                "own_copy": self.own_copy, "recipients": [r.to_json() for r in self.recipients],
                "sent_folder": self.sent_folder, "sent_uid": self.sent_uid, "queued": self.queued,
                "retried": [r.to_json() for r in self.retried], "warnings": list(self.warnings)}


# --- choosing the recipients' certificates -------------------------------------------------------


def _issuers(agent: Agent, address: str) -> list[x509.Certificate]:
    """Certificates that may have issued a recipient's: those seen with theirs, and our own chains' (same CA)."""
    from autosmime.exchange.contacts import Contacts

    pool = [i for c in Contacts(agent.home).certificates(address) for i in c.issuers]
    if agent.has_vault():
        pool += [c for e in agent.vault(create=False).entries() for c in e.chain]
    return pool


def choose_recipient(agent: Agent, address: str, *, fresh: bool = False) -> tuple[Recipient, x509.Certificate | None]:
    """The certificate to encrypt to for ``address``, or None and the reason.

    A certificate the lookup chose whose CRL lists it is dropped and the next candidate tried; a CRL
    that cannot be fetched does not block (status unknown, as the directory's own lookups report).
    When every candidate is revoked, the directory is asked again past its cache (``fresh``): a
    recipient who revoked a certificate has often published a new one since.
    """
    from autosmime.agent.lookup import lookup, vault_roots
    from autosmime.pki.revocation import crl_status
    from autosmime.pki.select import choose_recipient_cert

    try:
        found = lookup(agent, address, ttl=-1) if fresh else lookup(agent, address)  # -1: no cache entry is fresh
    except NoRecipientCertificate as e:
        return Recipient(address, reason="; ".join(e.reasons) or "none found"), None
    except NoKey as e:
        return Recipient(address, reason=str(e)), None
    except UsageError:
        raise
    except AutosmimeError as e:  # the directory down or its log inconsistent: no certificate from it
        return Recipient(address, reason=f"lookup failed: {e}"), None
    pool = _issuers(agent, address)
    roots = vault_roots(agent)
    cert, statuses = found.cert, {}
    while True:
        if crl_status(cert, [*pool, *roots, *found.candidates]) != "revoked":
            return Recipient(address, fingerprint(cert), found.source), cert
        statuses[fingerprint(cert)] = "revoked"
        try:
            cert = choose_recipient_cert(address, found.candidates, roots, pool, statuses=statuses)
        except NoKey:
            if not fresh:
                return choose_recipient(agent, address, fresh=True)
            return Recipient(address, reason=f"the certificate {fingerprint(found.cert)[:16]}… is revoked"), None


# --- the outbox ------------------------------------------------------------------------------------


@dataclass
class Queued:
    """One message in the outbox: ``stage`` "smtp" (not sent yet) or "sent-copy" (sent, Sent copy pending)."""

    id: str
    path: Path
    sender: str
    recipients: list[str]
    subject: str
    stage: str
    created: int
    errors: list[str] = field(default_factory=list)

    @property
    def message_path(self) -> Path:
        return self.path.with_suffix(".eml")

    def save(self) -> None:
        data = {"from": self.sender, "recipients": self.recipients, "subject": self.subject, "stage": self.stage,
                "created": self.created, "errors": self.errors[-5:]}
        write_private(self.path, json.dumps(data, indent=1).encode() + b"\n")

    def remove(self) -> None:
        for p in (self.path, self.message_path):  # the record first: a message file alone is ignored
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def _outbox(agent: Agent) -> Path:
    ensure_home(agent.home)
    box = agent.home / OUTBOX_DIR
    box.mkdir(mode=0o700, exist_ok=True)
    return box


def queued(agent: Agent) -> list[Queued]:
    """The outbox, oldest first."""
    box = agent.home / OUTBOX_DIR
    if not box.is_dir():
        return []
    out = []
    for path in sorted(box.glob("*.json")):
        try:
            data = json.loads(path.read_bytes())
            out.append(Queued(path.stem, path, data["from"], list(data["recipients"]), data.get("subject", ""),
                              data["stage"], int(data.get("created", 0)), list(data.get("errors", []))))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a record that cannot be read is left for a person to look at
    return [q for q in out if q.message_path.exists()]


def _enqueue(agent: Agent, raw: bytes, sender: str, recipients: list[str], subject: str) -> Queued:
    box = _outbox(agent)
    now = int(time.time())
    qid = f"{_dt.datetime.fromtimestamp(now, _dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
    entry = Queued(qid, box / f"{qid}.json", sender, recipients, subject, "smtp", now)
    write_private(entry.message_path, raw)
    entry.save()
    return entry


# --- delivering ------------------------------------------------------------------------------------


def find_sent_folder(box: MailboxSession) -> str:
    """The folder marked SPECIAL-USE \\Sent, else "Sent" (created if missing)."""
    finder = getattr(box, "special_folder", None)
    name = finder("\\Sent") if finder is not None else None
    if name:
        return str(name)
    box.ensure_folder(SENT_FOLDER)
    return SENT_FOLDER


def _submit(agent: Agent, entry: Queued) -> None:
    """SMTP; on success the entry moves to the "sent-copy" stage. MailboxError when the server would not take it."""
    from autosmime.mailbox.smtp import send

    raw = entry.message_path.read_bytes()
    try:
        send(agent.account(), agent.password(), raw, entry.sender, entry.recipients)
    except MailboxError as e:
        entry.errors.append(str(e))
        entry.save()
        raise
    entry.stage = "sent-copy"
    entry.save()


def _store_copy(agent: Agent, entry: Queued) -> tuple[str, int | None]:
    """APPEND the Sent copy and drop the entry: (folder, uid). MailboxError leaves the entry queued."""
    raw = entry.message_path.read_bytes()
    try:
        with agent.open_mailbox() as box:
            folder = find_sent_folder(box)
            uid = box.append(folder, raw, (r"\Seen",))
    except MailboxError as e:
        entry.errors.append(str(e))
        entry.save()
        raise
    entry.remove()
    return folder, uid


def _lock(agent: Agent) -> Any:
    return locked(_outbox(agent) / ".lock")


def flush_outbox(agent: Agent) -> list[Retried]:
    """Try every queued message again (SMTP, then the Sent copy), oldest first; what happened to each."""
    with _lock(agent):
        return _flush(agent)


def _flush(agent: Agent) -> list[Retried]:
    results = []
    for entry in queued(agent):
        try:
            if entry.stage == "smtp":
                _submit(agent, entry)
            _store_copy(agent, entry)
            results.append(Retried(entry.id, entry.subject, True))
        except MailboxError as e:
            results.append(Retried(entry.id, entry.subject, False, str(e)))
    return results


# --- the flow --------------------------------------------------------------------------------------


def _unique(addresses: Sequence[str]) -> list[str]:
    out: list[str] = []
    for a in addresses:
        n = normalize_address(a)
        if n not in out:
            out.append(n)
    return out


def _message_id(raw: bytes) -> str:
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    return str(headers.get("Message-ID", "")).strip()


def send_mail(agent: Agent, *, to: Sequence[str], subject: str, body: str, cc: Sequence[str] = (),
              bcc: Sequence[str] = (), attachments: Sequence[Path] = (),
              require_encryption: bool = False) -> SendOutcome:
    """Sign, encrypt when possible, submit and keep the Sent copy (see the module docstring).

    Raises UsageError (bad address, unreadable attachment), NoKey (no signing key on this device),
    EncryptionUnavailable (``require_encryption`` and a recipient without a certificate; nothing
    sent or queued) and NotSent (SMTP failed; the message is queued in the outbox).
    """
    from autosmime.smime import encrypt, sign, sign_and_encrypt
    from autosmime.smime.compose import compose

    account = agent.account()
    sender = normalize_address(account.email)
    everyone = _unique([*to, *cc, *bcc])
    if not everyone:
        raise UsageError("a message needs at least one recipient")
    if not agent.has_vault():
        raise NoKey(f"no keys on this device to sign with: run `autosmime setup {sender}` first")
    vault = agent.vault(create=False)
    pair = vault.signing_pair(sender)
    raw = compose(account.email, list(to), subject, body, cc=list(cc), attachments=list(attachments))

    chosen = [choose_recipient(agent, address) for address in everyone]
    recipients = tuple(r for r, _ in chosen)
    missing = [r for r in recipients if r.sha256 is None]
    if missing and require_encryption:
        raise EncryptionUnavailable(
            "not sent: no usable certificate for " + ", ".join(r.address for r in missing)
            + " (--require-encryption)")
    warnings: list[str] = []
    own_copy = True
    if missing:
        out = sign(raw, pair.key, pair.cert, pair.chain)
        for r in missing:
            warnings.append(f"not encrypted: no usable certificate for {r.address} ({r.reason})")
    else:
        certs = [c for _, c in chosen if c is not None]
        try:
            own = vault.encryption_pair(sender).cert
        except NoKey:
            own = None
        if own is not None:
            out = sign_and_encrypt(raw, pair.key, pair.cert, certs, sender_cert=own, chain=pair.chain)
        else:
            own_copy = False
            out = encrypt(sign(raw, pair.key, pair.cert, pair.chain), certs)
            warnings.append("your own copy is left out: you have no active encryption certificate, so the Sent "
                            "copy is encrypted to the recipients only and you cannot read it")

    message_id = _message_id(raw)
    with _lock(agent):
        retried = _flush(agent)
        entry = _enqueue(agent, out, sender, everyone, subject)
        try:
            _submit(agent, entry)
        except MessageRefused as e:  # no outage: the next send would not get it through either
            where = os.path.relpath(entry.message_path, agent.home)
            raise NotSent(f"not sent: {e}; the server refuses this message as it is, so it is kept in the outbox "
                          f"({where} in {agent.home}) and tried again by each `autosmime send` until you delete "
                          "it there") from None
        except MailboxError as e:
            where = os.path.relpath(entry.message_path, agent.home)
            raise NotSent(f"not sent: {e}; the message is kept in the outbox ({where} in {agent.home}) and "
                          "goes out with the next `autosmime send`") from None
        folder: str | None = None
        uid: int | None = None
        queued_id: str | None = None
        try:
            folder, uid = _store_copy(agent, entry)
        except MailboxError as e:
            queued_id = entry.id
            warnings.append(f"sent, but the Sent copy could not be stored ({e}); it is kept in the outbox "
                            "and stored by the next `autosmime send`")
    return SendOutcome(message_id, sender, recipients, not missing, own_copy, folder, uid, queued_id,
                       tuple(retried), tuple(warnings))
