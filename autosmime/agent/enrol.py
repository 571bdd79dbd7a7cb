"""Enrol, renew and revoke S/MIME certificates over ACME for S/MIME (RFC 8823): the flows.

    >>> from autosmime.agent import Agent
    >>> from autosmime.agent.enrol import enrol_account
    >>> result = enrol_account(Agent(home), ca_url="https://ca.example/directory")   # doctest: +SKIP
    >>> result.cert.subject                                                     # doctest: +SKIP

The protocol pieces live in :mod:`autosmime.enroll`; this module ties them to the
user's mailbox and vault. :func:`enrol` is the flow itself and takes everything
open and typed (an ACME client, a logged-in IMAP session, an SMTP sender, the
vault), so any caller that already holds sessions can run it. :func:`enrol_home`,
:func:`renew_home` and :func:`revoke_home` resolve the account, password, CA
account and DNS for a home directory and then call it.

One enrolment: note INBOX's UIDNEXT, order (``email`` identifier), fetch the
authorization (the CA mails the challenge then or on the challenge POST; after
``early_post_after`` seconds without mail the POST goes out first), watch INBOX
(IDLE, else polling) for a challenge that arrived after the order, check it
(headers, DKIM when a resolver is available), reply through the user's own SMTP
server so their provider signs it, POST the challenge, wait for ``valid``,
finalise with a CSR for a key made here, store key + chain in the vault (the
previous key stays, retired), remove the challenge and the reply from INBOX and
Sent, and trigger a backup. A reply the CA rejects is retried once with a new
order and the other token reading, which is then remembered for that CA.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from autosmime._words import plural
from autosmime.enroll.challenges import (
    DnsFunc,
    Reading,
    check_dkim,
    looks_like_challenge,
    other_reading,
    parse_challenge_mail,
    readings_agree,
    response_digest,
    response_mail,
    zone_dnsfunc,
)
from autosmime.enroll.client import REASONS, AcmeClient, account_key_pem, load_account_key, new_account_key
from autosmime.enroll.messages import ari_cert_id
from autosmime.enroll.renewal import renewal_due
from autosmime.errors import (
    AutosmimeError,
    ChallengeMailInvalid,
    ChallengeMailTimeout,
    EnrollmentError,
    NoKey,
    ReplyRejected,
    UsageError,
)

if TYPE_CHECKING:
    from autosmime.agent.context import Agent
    from autosmime.agent.outcomes import BackupOutcome

log = logging.getLogger(__name__)

KeyType = Literal["rsa3072", "rsa2048", "rsa4096", "p256"]
KEY_TYPES: tuple[str, ...] = ("rsa3072", "rsa2048", "rsa4096", "p256")
DEFAULT_CA_STATE = "acme_default_ca"
DNS_ZONE_ENV = "AUTOSMIME_DNS_ZONE"      # a zone file answering DKIM look-ups (the embedded stack)
Sender = Callable[[bytes, str, list[str]], None]


@dataclass(frozen=True)
class Timeouts:
    """How long to wait, in seconds."""

    mail: float = 600.0              # for the challenge mail
    early_post_after: float = 20.0   # then POST the challenge anyway (CAs that mail only after the POST)
    validation: float = 300.0        # for the CA to see the reply and issue


@dataclass(frozen=True)
class EnrolResult:
    address: str
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    reading: Reading          # the token reading the CA accepted
    seconds: float            # from the start until the certificate was in the vault (backup excluded)
    backup: BackupOutcome | None = None  # the key backup made right after
    backup_error: str | None = None      # why there is none (e.g. the account's recovery code is needed)


def new_cert_key(key_type: str) -> Any:
    """The certificate's key, made on this device."""
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    sizes = {"rsa2048": 2048, "rsa3072": 3072, "rsa4096": 4096}
    if key_type not in sizes:
        raise UsageError(f"unknown key type {key_type!r} (use one of {', '.join(KEY_TYPES)})")
    return rsa.generate_private_key(65537, sizes[key_type])


def make_csr(key: Any, address: str) -> bytes:
    """A CSR naming only ``address`` (rfc822Name SAN): the CA sets the subject per its profile."""
    if not address.isascii():
        raise UsageError("addresses with non-ASCII characters are not supported for enrolment yet")
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


# --- watching INBOX -------------------------------------------------------------------------


class InboxWatch:
    """New mail in INBOX after a starting point: IMAP IDLE when offered, else NOOP polling.

    Works on an :class:`autosmime.mailbox.imap.ImapMailbox` session (its IMAPClient).
    IDLE is left and re-entered after a short tick that grows from 0.1 s to 1 s: some
    servers hold back IDLE notifications (Dovecot by 0.5 s), and a challenge usually
    arrives within a second or two, so the first checks come quickly and later ones
    settle to one a second.
    """

    folder = "INBOX"
    use_idle = True          # False: NOOP polling even where IDLE is offered
    first_tick = 0.1
    max_tick = 1.0

    def __init__(self, box: Any) -> None:
        self.box = box
        self._client = box._client      # IDLE is not part of ImapMailbox's API (yet)
        self._idle = self.use_idle and b"IDLE" in self._client.capabilities()
        self._tick = self.first_tick
        self.box._select(self.folder)
        self.since = self._uid_next()

    def _uid_next(self) -> int:
        with self.box._errors("STATUS INBOX"):
            status = self._client.folder_status(self.folder, [b"UIDNEXT"])
        return int(status[b"UIDNEXT"])

    def new_uids(self) -> list[int]:
        """UIDs that arrived since the last call (or since the watch began)."""
        with self.box._errors("SEARCH INBOX"):
            uids = sorted(int(u) for u in self._client.search(["UID", f"{self.since}:*"]) if int(u) >= self.since)
        if uids:
            self.since = uids[-1] + 1
        return uids

    def new_candidates(self) -> list[int]:
        """New UIDs whose header looks like a challenge (only headers are fetched, so a large
        unrelated mail arriving meanwhile costs nothing)."""
        uids = self.new_uids()
        if not uids:
            return []
        with self.box._errors("FETCH INBOX"):
            heads = self._client.fetch(uids, ["BODY.PEEK[HEADER]"])
        return [int(uid) for uid, item in sorted(heads.items())
                if looks_like_challenge(bytes(item.get(b"BODY[HEADER]", b"")))]

    def wait(self, timeout: float) -> None:
        """Block until the server reports something (or ``timeout``)."""
        if timeout <= 0:
            return
        timeout = min(timeout, self._tick)
        self._tick = min(self._tick * 1.5, self.max_tick)
        with self.box._errors("IDLE"):
            if self._idle:
                self._client.idle()
                try:
                    seen = self._client.idle_check(timeout=timeout)
                finally:
                    self._client.idle_done()
                if not seen:   # Dovecot shows mail it has not announced yet only after a NOOP
                    self._client.noop()
            else:
                time.sleep(timeout)
                self._client.noop()


def _sender_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


# --- the flow -----------------------------------------------------------------------------


def enrol(*, address: str, acme: AcmeClient, box: Any, send: Sender, vault: Any,
          key_type: str = "rsa3072", reading: Reading = "string", dnsfunc: DnsFunc | None = None,
          replaces: str | None = None, timeouts: Timeouts = Timeouts(),
          backup: Callable[[], BackupOutcome] | None = None, on_reading: Callable[[Reading], None] | None = None
          ) -> EnrolResult:
    """Obtain a certificate for ``address`` and store it (with its new key) in ``vault``.

    ``box`` is a logged-in IMAP session on the mailbox, ``send(raw, sender, recipients)``
    submits through the user's SMTP server. ``dnsfunc`` answers DKIM key look-ups for
    the CA's challenge mail; None skips DKIM (no resolver available). ``on_reading``
    is told the token reading when the CA accepted the other one.
    """
    started = time.monotonic()
    if key_type not in KEY_TYPES:
        raise UsageError(f"unknown key type {key_type!r} (use one of {', '.join(KEY_TYPES)})")
    if not address.isascii():        # refused before anything is sent
        raise UsageError("addresses with non-ASCII characters are not supported for enrolment yet")
    # The key is made while the order and the mail round trip are under way (RSA-3072 takes up to ~1 s).
    with ThreadPoolExecutor(max_workers=1) as pool:
        key_future = pool.submit(new_cert_key, key_type)
        csr_cache: list[bytes] = []

        def csr() -> bytes:
            if not csr_cache:
                csr_cache.append(make_csr(key_future.result(), address))
                log.debug("key and CSR ready after %.3f s", time.monotonic() - started)
            return csr_cache[0]

        try:
            chain_pem = _attempt(address, acme, box, send, csr, reading, dnsfunc, replaces, timeouts)
            used = reading
        except ReplyRejected as e:
            if getattr(e, "aligned", True):
                raise
            used = other_reading(reading)
            log.info("the CA rejected the %s token reading; retrying once with the %s reading", reading, used)
            chain_pem = _attempt(address, acme, box, send, csr, used, dnsfunc, replaces, timeouts)
            if on_reading is not None:
                on_reading(used)
        key = key_future.result()
    certs = x509.load_pem_x509_certificates(chain_pem.encode())
    cert, chain = certs[0], tuple(certs[1:])
    vault.add(key, cert, chain, source="acme")
    seconds = time.monotonic() - started
    log.debug("stored in the vault after %.3f s", seconds)
    status, problem = None, None
    if backup is not None:
        try:
            status = backup()
        except AutosmimeError as e:   # the certificate is issued and stored: say so, and why no backup
            problem = str(e)
    return EnrolResult(address, cert, chain, used, seconds, status, problem)


def _attempt(address: str, acme: AcmeClient, box: Any, send: Sender, csr: Callable[[], bytes], reading: Reading,
             dnsfunc: DnsFunc | None, replaces: str | None, timeouts: Timeouts) -> str:
    t0 = time.monotonic()
    inbox = InboxWatch(box)                 # only mail after this point can be our challenge
    order = acme.new_order(address, replaces=replaces)
    authzr, challb = acme.email_challenge(order)
    log.debug("order placed after %.3f s", time.monotonic() - t0)
    if authzr.body.status.name == "valid":  # a CA that reuses a fresh validation
        return acme.finalize(order, csr(), time.monotonic() + timeouts.validation)
    chall = challb.chall
    uid, mail, posted = _wait_for_challenge(inbox, box, acme, challb, address, chall.from_addr, dnsfunc, timeouts)
    log.debug("challenge mail checked after %.3f s", time.monotonic() - t0)
    digest = response_digest(mail.token_part1, chall.token, acme.account_key, reading)
    raw, reply_id = response_mail(mail, address, digest)
    try:
        send(raw, address, [mail.reply_address])
        log.debug("reply sent after %.3f s", time.monotonic() - t0)
        if not posted:
            acme.answer(challb)
        try:
            acme.wait_valid(authzr, time.monotonic() + timeouts.validation)
        except ReplyRejected as e:
            e.aligned = readings_agree(mail.token_part1)  # type: ignore[attr-defined]
            raise
        log.debug("authorization valid after %.3f s", time.monotonic() - t0)
        chain = acme.finalize(order, csr(), time.monotonic() + timeouts.validation)
        log.debug("certificate issued after %.3f s", time.monotonic() - t0)
        return chain
    finally:
        _clean_up(box, uid, reply_id)


def _wait_for_challenge(inbox: InboxWatch, box: Any, acme: AcmeClient, challb: Any, address: str,
                        ca_from: str, dnsfunc: DnsFunc | None, timeouts: Timeouts) -> tuple[int, Any, bool]:
    start = time.monotonic()
    posted = False
    forged: list[str] = []
    while True:
        for uid in inbox.new_candidates():
            raw = box.fetch(InboxWatch.folder, [uid]).get(uid)
            if raw is None:
                continue
            try:
                mail = parse_challenge_mail(raw, expected_from=ca_from, address=address)
            except ChallengeMailInvalid as e:
                log.info("ignoring mail %d: %s", uid, e)   # another CA's, or someone else's
                continue
            if dnsfunc is not None:
                try:
                    check_dkim(raw, _sender_domain(mail.sender), dnsfunc)
                except ChallengeMailInvalid as e:
                    # Someone else's mail in the CA's name: never answered, and it must not be
                    # able to stop the real challenge from being answered either.
                    log.warning("a mail claiming to be the CA's challenge (UID %d) was not answered: %s", uid, e)
                    forged.append(str(e))
                    continue
            else:
                log.info("no DNS resolver for DKIM: the challenge mail's signature was not checked")
            return uid, mail, posted
        waited = time.monotonic() - start
        if not posted and waited >= timeouts.early_post_after:
            acme.answer(challb)
            posted = True
        if waited >= timeouts.mail:
            if forged:
                raise ChallengeMailTimeout(
                    f"no authentic challenge mail from {ca_from} arrived for {address} after waiting {waited:.0f} s; "
                    f"{plural(len(forged), 'mail')} in its name failed verification: {forged[-1]}")
            raise ChallengeMailTimeout(f"no challenge mail from {ca_from} arrived for {address} after waiting "
                                       f"{waited:.0f} s (check the spam folder and that the CA can reach you)")
        next_event = timeouts.mail - waited
        if not posted:
            next_event = min(next_event, timeouts.early_post_after - waited)
        inbox.wait(max(0.05, min(1.0, next_event)))


def _clean_up(box: Any, challenge_uid: int, reply_id: str) -> None:
    """Remove the challenge from INBOX and our reply from Sent (where a provider files it)."""
    try:
        box.delete(InboxWatch.folder, [challenge_uid])
        sent = _sent_folder(box)
        if sent:
            uids = box.search_header(sent, "Message-ID", reply_id)
            box.delete(sent, uids)
    except Exception as e:   # tidying must not turn an issued certificate into a failure
        log.warning("could not remove the challenge mail or the reply: %s", e)


def _sent_folder(box: Any) -> str | None:
    try:
        with box._errors("LIST"):
            found = box._client.find_special_folder(b"\\Sent")
    except Exception:
        return None
    return str(found) if found else None


# --- the flows behind the commands: resolution through the Agent -------------------------------


def _dnsfunc_for(ca_url: str, record: dict) -> DnsFunc | None:
    zone = os.environ.get(DNS_ZONE_ENV) or record.get("dns_zone")
    if zone:
        return zone_dnsfunc(zone)
    from urllib.parse import urlsplit

    from autosmime.mailbox.account import is_loopback

    if is_loopback(urlsplit(ca_url).hostname or ""):
        return None     # a loopback CA without a zone file: nothing to resolve its key with
    import dkim.dnsplug

    return dkim.dnsplug.get_txt


def client_for(vault: Any, ca_url: str, *, trust: str | None = None) -> tuple[AcmeClient, dict]:
    """An ACME client with this vault's account at ``ca_url`` (created and registered on first use)."""
    record = vault.acme_account(ca_url) or {}
    trust = trust or record.get("trust")
    if record.get("key"):
        jwk = load_account_key(record["key"].encode())
    else:
        jwk = new_account_key()
        vault.update_acme_account(ca_url, key=account_key_pem(jwk).decode())
    client = AcmeClient(ca_url, jwk, kid=record.get("kid"), trust=trust)
    kid = client.register()
    changes: dict[str, Any] = {}
    if kid != record.get("kid"):
        changes["kid"] = kid
    if trust and trust != record.get("trust"):
        changes["trust"] = str(trust)
    if changes:
        vault.update_acme_account(ca_url, **changes)
    return client, vault.acme_account(ca_url) or {}


def _default_ca(vault: Any, ca_url: str | None) -> str:
    url = ca_url or vault.state.get(DEFAULT_CA_STATE)
    if not url:
        raise UsageError("no certificate authority yet: pass --ca URL (the CA's ACME directory)")
    return str(url)


def _session(agent: Agent, ca_url: str | None, trust: str | None, action: Callable[..., Any]) -> Any:
    """Resolve everything a flow needs for ``agent``'s account, open the mailbox, run ``action``."""
    from autosmime.mailbox.smtp import send as smtp_send

    account, password = agent.account(), agent.password()
    vault = agent.vault()
    url = _default_ca(vault, ca_url)
    if trust:
        trust = str(Path(trust).expanduser().absolute())
        if not Path(trust).is_file():
            raise UsageError(f"--ca-trust: no such file {trust}")
    acme, record = client_for(vault, url, trust=trust)

    def send(raw: bytes, sender: str, recipients: list[str]) -> None:
        smtp_send(account, password, raw, sender, recipients)

    def backup() -> BackupOutcome:
        from autosmime.agent.backup import after_key_change

        return after_key_change(agent)

    with agent.open_mailbox() as box:
        return action(account=account, vault=vault, acme=acme, record=record, url=url, box=box, send=send,
                      backup=backup)


def enrol_account(agent: Agent, *, ca_url: str | None = None, trust: str | None = None,
                  key_type: str = "rsa3072", timeouts: Timeouts = Timeouts()) -> EnrolResult:
    """``autosmime enroll``: a certificate for the agent's account from the CA at ``ca_url``
    (else the last one used), then a backup."""
    if key_type not in KEY_TYPES:
        raise UsageError(f"unknown key type {key_type!r} (use one of {', '.join(KEY_TYPES)})")

    def action(*, account, vault, acme, record, url, box, send, backup):
        result = enrol(address=account.email, acme=acme, box=box, send=send, vault=vault, key_type=key_type,
                       reading=record.get("token_reading", "string"), dnsfunc=_dnsfunc_for(url, record),
                       timeouts=timeouts, backup=backup,
                       on_reading=lambda r: vault.update_acme_account(url, token_reading=r))
        vault.update_state(**{DEFAULT_CA_STATE: url})
        return result

    return _session(agent, ca_url, trust, action)


@dataclass(frozen=True)
class RenewDecision:
    due: bool
    when: _dt.datetime
    source: str            # "ARI" or "2/3 of the lifetime"


def decide_renewal(acme: AcmeClient, cert: x509.Certificate, now: _dt.datetime | None = None) -> RenewDecision:
    """ARI's window if the CA offers one (an unreachable ARI falls back), else 2/3 of the lifetime."""
    try:
        window = acme.renewal_window(cert)
    except EnrollmentError as e:
        log.info("no renewal information from the CA (%s); using 2/3 of the lifetime", e)
        window = None
    due, when = renewal_due(cert.not_valid_before_utc, cert.not_valid_after_utc, window,
                            seed=cert.fingerprint(hashes.SHA256()), now=now)
    return RenewDecision(due, when, "ARI" if window else "2/3 of the lifetime")


def _current(vault: Any, address: str) -> Any:
    entries = [e for e in vault.entries() if e.email == address.lower() and e.status == "active"]
    if not entries:
        raise NoKey(f"no active certificate for {address} in the vault; run `autosmime enroll` first")
    return max(entries, key=lambda e: (e.cert.not_valid_before_utc, e.added))


def renew_account(agent: Agent, *, force: bool = False, key_type: str | None = None,
                  timeouts: Timeouts = Timeouts()) -> tuple[RenewDecision, EnrolResult | None]:
    """``autosmime renew``: when due (or ``force``), a new certificate with a new key from the CA
    the last one came from; the old key stays, retired."""
    def action(*, account, vault, acme, record, url, box, send, backup):
        entry = _current(vault, account.email)
        decision = decide_renewal(acme, entry.cert)
        if not (decision.due or force):
            return decision, None
        try:
            replaces = ari_cert_id(entry.cert) if decision.source == "ARI" else None
        except ValueError:
            replaces = None
        kind = key_type or _key_type_of(entry.key)
        result = enrol(address=account.email, acme=acme, box=box, send=send, vault=vault, key_type=kind,
                       reading=record.get("token_reading", "string"), dnsfunc=_dnsfunc_for(url, record),
                       replaces=replaces, timeouts=timeouts, backup=backup,
                       on_reading=lambda r: vault.update_acme_account(url, token_reading=r))
        return decision, result

    return _session(agent, None, None, action)


def _key_type_of(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "p256"
    size = getattr(key, "key_size", 3072)
    return {2048: "rsa2048", 4096: "rsa4096"}.get(size, "rsa3072")


def revoke_account(agent: Agent, *, reason: str = "superseded") -> tuple[x509.Certificate, BackupOutcome]:
    """``autosmime revoke``: revoke the active certificate at its CA; the key stays in the vault, revoked."""
    if reason not in REASONS:
        raise UsageError(f"unknown revocation reason {reason!r}")
    from autosmime.agent.backup import after_key_change

    account = agent.account()
    vault = agent.vault()
    url = _default_ca(vault, None)
    acme, _record = client_for(vault, url)
    entry = _current(vault, account.email)
    acme.revoke(entry.cert, REASONS[reason])
    vault.set_status(entry.fingerprint, "revoked")
    return entry.cert, after_key_change(agent)
