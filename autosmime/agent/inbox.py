"""Read mail from the mailbox: every layer opened with every key this device holds, certificates learned.

    >>> from autosmime.agent import Agent
    >>> from autosmime.agent.inbox import inbox, read_uid
    >>> [(m.uid, m.subject, m.security) for m in inbox(Agent(home), limit=2)]     # doctest: +SKIP
    [(7, 'Hi', 'encrypted; signed by alice@example.test (good)'), (6, 'lunch?', 'no S/MIME signature')]
    >>> read_uid(Agent(home), 7).result.verdict                                     # doctest: +SKIP
    'good'

Keys: every key in the vault, retired and revoked ones too (old mail stays readable). Trust: the
roots of the vault's own chains (agent.lookup.vault_roots) plus any the caller adds. The message is
opened by the engine's :func:`autosmime.smime.read` (docs/engine.md, "What read reports"); the
signer of each good signature whose certificate names From is added to the contacts
(agent.lookup.harvest_verified), so a reply can be encrypted to them.

Revocation: each signature's signer is checked against its CA's CRL (pki.revocation.CrlChecker), the
CRLs kept in HOME/crl until their nextUpdate and fetched at most once per URL per run; a revoked signer
reads "revoked" (docs/engine.md, "Revocation"), a status that cannot be had is a note.
"""

from __future__ import annotations

import datetime as _dt
import email.parser
import email.policy
import email.utils
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from cryptography import x509

from autosmime.errors import AutosmimeError, MailboxError, MalformedMessage, UsageError
from autosmime.smime.models import ReadResult

if TYPE_CHECKING:
    from autosmime.agent.context import Agent
    from autosmime.exchange.harvest import Harvested
    from autosmime.mailbox.session import MailboxSession
    from autosmime.pki.revocation import CrlChecker
    from autosmime.smime.decrypt import KeyList

__all__ = ["CRL_CACHE", "DEFAULT_FOLDER", "DEFAULT_LIMIT", "MessageSummary", "Opened", "inbox", "read_uid",
           "reading_keys", "revocation_checker"]

CRL_CACHE = "crl"  # HOME/crl/<sha256 of the URL>.der
DEFAULT_FOLDER = "INBOX"
DEFAULT_LIMIT = 20
MAX_UID = 2 ** 32 - 1  # RFC 3501 nz-number: a larger one is no message (the server calls it a bad command)
MAX_LIMIT = 1000


class _Listing(Protocol):
    def uids(self, folder: str) -> list[int]: ...


@dataclass(frozen=True)
class MessageSummary:
    """One line of the inbox: the headers people look at and the security state in plain words."""

    uid: int
    date: str | None                   # ISO 8601 when the Date header can be read, else as written
    sender: str
    subject: str
    encrypted: bool
    verdict: str | None                # the engine's verdict (docs/engine.md); None: no signature decides
    signer: str | None                 # the address of the signer that counts
    security: str                      # ReadResult.summary, or why the message could not be opened
    layers: tuple[tuple[str, str | None], ...] = ()   # (kind, verdict), outermost first

    def to_json(self) -> dict:
        return {"uid": self.uid, "date": self.date, "from": self.sender, "subject": self.subject,
                "encrypted": self.encrypted, "verdict": self.verdict, "signer": self.signer,
                "summary": self.security, "layers": [{"kind": k, "verdict": v} for k, v in self.layers]}


@dataclass(frozen=True)
class Opened:
    """One message read from the mailbox."""

    uid: int
    folder: str
    result: ReadResult
    harvested: tuple[Harvested, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        """``read --json``'s document (ReadResult.to_json) with the uid and the folder."""
        return {**self.result.to_json(), "uid": self.uid, "folder": self.folder}


def reading_keys(agent: Agent) -> KeyList:
    """Every key this device holds, newest certificate first (none: an empty list, not an error)."""
    if not agent.has_vault():
        return []
    return agent.vault(create=False).decryption_keys()


def revocation_checker(home: Path | None) -> CrlChecker:
    """The signer revocation check for one run: CRLs cached in ``home``/crl when there is a home.

        >>> check = revocation_checker(agent.home)          # doctest: +SKIP
        >>> read(raw, trust_roots=roots, revocation=check)  # doctest: +SKIP
    """
    from autosmime.pki.revocation import CrlChecker

    return CrlChecker(Path(home) / CRL_CACHE if home is not None else None)


def _open(agent: Agent, raw: bytes, keys: KeyList | None, roots: Sequence[x509.Certificate],
          at: _dt.datetime | None, checker: CrlChecker) -> ReadResult:
    from autosmime.agent.lookup import vault_roots
    from autosmime.smime import read

    return read(raw, keys=reading_keys(agent) if keys is None else keys, trust_roots=[*vault_roots(agent), *roots],
                at=at, check_date=at is None, revocation=checker)


def _harvest(agent: Agent, result: ReadResult) -> tuple[Harvested, ...]:
    from autosmime.agent.lookup import harvest_verified

    if not any(s.verdict == "good" for s in result.signatures):
        return ()
    return tuple(harvest_verified(agent, result))


def _fetch(box: MailboxSession, folder: str, uids: Sequence[int]) -> dict[int, bytes]:
    try:
        return box.fetch(folder, list(uids))
    except MailboxError as e:
        if not box.folder_exists(folder):
            raise UsageError(f"no folder {folder!r} in the mailbox") from None
        raise e


def read_uid(agent: Agent, uid: int, folder: str = DEFAULT_FOLDER, *, keys: KeyList | None = None,
             extra_roots: Sequence[x509.Certificate] = (), at: _dt.datetime | None = None) -> Opened:
    """Fetch message ``uid`` of ``folder`` and open it (UsageError if there is no such message)."""
    if not 1 <= uid <= MAX_UID:
        raise UsageError(f"not a message UID: {uid} (UIDs are 1-{MAX_UID})")
    with agent.open_mailbox() as box:
        raw = _fetch(box, folder, [uid]).get(uid)
    if raw is None:
        raise UsageError(f"no message with UID {uid} in {folder}")
    result = _open(agent, raw, keys, extra_roots, at, revocation_checker(agent.home))
    return Opened(uid, folder, result, _harvest(agent, result))


def inbox(agent: Agent, folder: str = DEFAULT_FOLDER, limit: int = DEFAULT_LIMIT) -> list[MessageSummary]:
    """The newest ``limit`` messages of ``folder``, newest first, each opened as :func:`read_uid` does."""
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"--limit must be 1-{MAX_LIMIT}, not {limit}")
    with agent.open_mailbox() as box:
        if not box.folder_exists(folder):
            raise UsageError(f"no folder {folder!r} in the mailbox")
        uids = cast(_Listing, box).uids(folder)[-limit:]
        fetched = _fetch(box, folder, uids)
    keys = reading_keys(agent)  # the vault is read once for the whole list
    checker = revocation_checker(agent.home)  # and each CRL fetched once
    out = []
    for uid in sorted(fetched, reverse=True):
        raw = fetched[uid]
        try:
            result: ReadResult | None = _open(agent, raw, keys, (), None, checker)
        except (MalformedMessage, AutosmimeError) as e:
            result, why = None, f"cannot be opened: {e}"
        if result is not None:
            _harvest(agent, result)
            why = result.summary
        out.append(_summary(uid, raw, result, why))
    return out


def _summary(uid: int, raw: bytes, result: ReadResult | None, security: str) -> MessageSummary:
    # The headers of the content when it was opened: protected headers (inside the encryption) win there.
    source = result.message if result is not None and result.message is not None else raw
    head = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(source)
    outer = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)

    def header(name: str) -> str:
        try:
            value = head.get(name) or outer.get(name)
        except (ValueError, TypeError, IndexError):  # a header the parser cannot make sense of
            value = None
        return " ".join(str(value).split()) if value is not None else ""

    date_text = header("Date")
    try:
        date: str | None = email.utils.parsedate_to_datetime(date_text).isoformat() if date_text else None
    except (ValueError, TypeError):
        date = date_text or None
    signer = None
    if result is not None and result.decided_by is not None:
        sig = result.layers[result.decided_by].signature
        signer = sig.signer_address if sig is not None else None
    layers = tuple((layer.kind, layer.verdict) for layer in result.layers) if result is not None else ()
    return MessageSummary(uid, date, header("From"), header("Subject"), bool(result and result.encrypted),
                          result.verdict if result is not None else None, signer, security, layers)
