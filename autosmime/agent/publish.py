"""Publish my certificate in a key directory, confirming the mailed token by myself over IMAP.

    >>> from autosmime.agent import Agent
    >>> from autosmime.agent.publish import publish
    >>> outcome = publish(Agent(home), "http://127.0.0.1:8480")     # doctest: +SKIP
    >>> outcome.leaf_index                                    # doctest: +SKIP
    7

The flow: POST the active encryption certificate's chain; if the directory
mailed a token (no fast path), wait for that mail in INBOX (found by its
X-Autosmime-Directory header carrying our request id, so no other mail is
touched), answer the possession challenge with the vault's key, confirm, then
delete the token mail. Finally look the address up through the log witness:
publishing counts only once the log proves the certificate is there. Also:
``unpublish`` (possession-signed) and ``monitor`` (my address's history in the
log, with any certificate this vault never held flagged).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization

from autosmime.errors import CertificateSwapped, NotPublished, PublishRejected, UsageError
from autosmime.exchange.client import DirectoryClient
from autosmime.exchange.proofs import answer_challenge, monitor_request
from autosmime.exchange.transparency import LogWitness, ProvenCert
from autosmime.mailbox.session import MailboxSession
from autosmime.pki.certs import fingerprint
from autosmime.pki.possession import TOKEN_HEADER, parse_token_header
from autosmime.pki.select import normalize_address

if TYPE_CHECKING:
    from autosmime.agent.context import Agent

TOKEN_WAIT = 120.0
DEFAULT_FILE = "directory/default-url"


@dataclass(frozen=True)
class Published:
    address: str
    sha256: str
    leaf_index: int
    tree_size: int
    mailbox_proof: str  # "mail", "fast path", or "already" (it was published before: nothing new was logged)

    @property
    def already(self) -> bool:
        return self.mailbox_proof == "already"


def directory_url(home: Path, given: str | None) -> str:
    """--directory, else $AUTOSMIME_DIRECTORY, else the one last published to."""
    url = given or os.environ.get("AUTOSMIME_DIRECTORY")
    if not url and (home / DEFAULT_FILE).exists():
        url = (home / DEFAULT_FILE).read_text().strip()
    if not url:
        raise UsageError("no key directory: give --directory URL (or set AUTOSMIME_DIRECTORY)")
    return url.rstrip("/")


def _remember_url(home: Path, url: str) -> None:
    from autosmime._files import ensure_home, write_private

    ensure_home(home)
    (home / "directory").mkdir(mode=0o700, exist_ok=True)
    write_private(home / DEFAULT_FILE, url.encode() + b"\n")


def _token_fields(raw: bytes) -> dict[str, str]:
    from email.parser import BytesHeaderParser

    return parse_token_header(str(BytesHeaderParser().parsebytes(raw).get(TOKEN_HEADER, "")))


def pick_up_token(box: MailboxSession, request_id: str, timeout: float = TOKEN_WAIT) -> tuple[str, int]:
    """(token, uid) of the directory's mail for ``request_id`` in INBOX; PublishRejected if none comes in time."""
    uids = box.wait_for("INBOX", TOKEN_HEADER, f"request={request_id};", timeout=timeout, interval=0.25)
    for uid, raw in box.fetch("INBOX", uids).items():
        fields = _token_fields(raw)
        if fields.get("request") == request_id and fields.get("token"):
            return fields["token"], uid
    raise PublishRejected(f"the directory's confirmation mail did not arrive within {timeout:.0f} s")


def publish(agent: Agent, url: str | None = None, *, token_wait: float = TOKEN_WAIT) -> Published:
    home = agent.home
    url = directory_url(home, url)
    address = normalize_address(agent.account().email)
    pair = agent.vault(create=False).encryption_pair(address)
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (pair.cert, *pair.chain)).decode()
    sha = fingerprint(pair.cert)
    with DirectoryClient(url) as client:
        witness = LogWitness.open(home, client)
        shown = _proven_entry(witness, address, sha)
        if shown is not None:   # publishing again is a no-op that says so, not an error
            _remember_url(home, url)
            return Published(address, sha, shown.leaf_index, witness.size, "already")
        challenge = client.publish(chain_pem, address)
        proof = answer_challenge(challenge, pair.key, pair.cert, pair.chain)
        if challenge.get("mail") == "sent":
            with agent.open_mailbox() as box:
                token, uid = pick_up_token(box, str(challenge["request"]), token_wait)
                done = client.confirm("publish", str(challenge["request"]), token=token, proof=proof)
                box.delete("INBOX", [uid])   # used up; nothing for the user to see
        else:
            token = None
            done = client.confirm("publish", str(challenge["request"]), proof=proof)
        if _proven_entry(witness, address, sha) is None:
            raise CertificateSwapped("the directory confirmed the publication but does not show the certificate")
    _remember_url(home, url)
    return Published(address, sha, int(done["leaf_index"]), int(done["tree_size"]),
                     "mail" if token else "fast path")


def _proven_entry(witness: LogWitness, address: str, sha: str) -> ProvenCert | None:
    """The directory's current entry for this certificate, proven in its log; None if it shows none."""
    try:
        answer, _ = witness.client.lookup(address)
    except NotPublished:
        return None
    return next((p for p in witness.verify_lookup(address, answer or {}) if p.sha256 == sha), None)


def unpublish(agent: Agent, url: str | None = None) -> str:
    """Withdraw my active certificate (possession-signed); returns its SHA-256."""
    url = directory_url(agent.home, url)
    address = normalize_address(agent.account().email)
    pair = agent.vault(create=False).encryption_pair(address)
    sha = fingerprint(pair.cert)
    with DirectoryClient(url) as client:
        challenge = client.unpublish(address, sha, "proof")
        client.confirm("unpublish", str(challenge["request"]),
                       proof=answer_challenge(challenge, pair.key, pair.cert, pair.chain))
    return sha


@dataclass(frozen=True)
class LogEvent:
    leaf_index: int
    op: str
    sha256: str
    when: str
    mine: bool      # a certificate this vault holds (or held)


def monitor(agent: Agent, url: str | None = None) -> list[LogEvent]:
    """Every log event for my address, each proven in the log; ``mine`` False is a certificate I never had."""
    url = directory_url(agent.home, url)
    address = normalize_address(agent.account().email)
    vault = agent.vault(create=False)
    pair = vault.signing_pair(address)
    held = {fingerprint(e.cert) for e in vault.entries()}
    with DirectoryClient(url) as client:
        witness = LogWitness.open(agent.home, client)
        when, signed = monitor_request(address, pair.key, pair.cert, pair.chain)
        events = witness.verify_events(address, client.monitor(address, when, signed))
    return [LogEvent(int(e["idx"]), str(e["op"]), str(e["cert"]),
                     _dt.datetime.fromtimestamp(int(e["ts"]), _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     e["cert"] in held) for e in events]
