"""What the directory does, apart from HTTP: publish, confirm, withdraw, prefer, look up, monitor, sweep.

    >>> d = Directory(Config(db="sqlite:////tmp/dir.db", trust=[ca], smtp=("127.0.0.1", 2525)))   # doctest: +SKIP
    >>> challenge = d.request_publish(chain_pem, None, "127.0.0.1")                               # doctest: +SKIP

Consent and control, the rules every publication passes:

1. The chain validates to one of the configured trusted CAs now (autosmime.pki
   path validation, purpose "encrypt" when the key usage allows encryption,
   else "sign"), with EKU emailProtection and the address in the SAN; a CRL
   saying "revoked" refuses it.
2. Mailbox control: a single-use token mailed to the address (stored only as
   its SHA-256, deleted when used, expiring after ``token_ttl``), which the
   autosmime client fetches over IMAP and sends back.
3. Key possession, always: a signing key signs a statement naming the request,
   address, certificate and a server nonce (checked with autosmime.smime);
   an encryption-only key decrypts that statement enveloped to it and returns it.

The fast path skips step 2, never step 3, for a certificate issued by one of
``fast_path_cas`` whose notBefore is at most ``fast_path_minutes`` old. Why that
is as strong as our own mail round trip: those CAs are autosmime CAs (RFC 8823
ACME for S/MIME) that issue only after the requester answered a challenge mailed
to that very address; notBefore is set at issuance (backdated by a few minutes,
which the window covers), so the certificate is the CA's signed statement that
mailbox control was proven minutes ago, younger than our own token (valid an
hour). An attacker who merely sees the fresh certificate gains nothing: the
possession proof still needs its private key. Only CAs listed explicitly get the
fast path, not every trusted CA: a public CA's certificate may be days old, or its
validation may have happened long before issuance.

Every state change is a log event (see translog). Withdrawing needs either a
possession proof or a token mailed to the address (for a lost key).
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine, delete, insert, select, update

from autosmime import smime
from autosmime.errors import AutosmimeError, UntrustedSigner, UsageError
from autosmime.pki import possession
from autosmime.pki.certcache import cert_der
from autosmime.pki.certs import cert_addresses, key_roles
from autosmime.pki.select import address_label, can_encrypt, normalize_address, validate_for
from autosmime.servers.directory import mailer, ratelimit, revocation
from autosmime.servers.directory.rawsql import Limit
from autosmime.servers.directory.schema import bindings, certs, meta, open_engine, pending, upsert
from autosmime.servers.directory.translog import TransparencyLog, event

log = logging.getLogger("autosmime.directory")


@dataclass(frozen=True)
class Limits:
    """(requests, window seconds) per key."""

    lookups_per_client: tuple[int, int] = (300, 60)
    lookups_per_address: tuple[int, int] = (120, 60)
    writes_per_client: tuple[int, int] = (60, 3600)
    mails_per_address: tuple[int, int] = (5, 3600)


@dataclass
class Config:
    db: str
    trust: Sequence[x509.Certificate]
    smtp: tuple[str, int] | None
    log_key: Path | None = None
    origin: str = "autosmime-directory"
    public_url: str = ""
    mail_from: str = "keys@autosmime.invalid"
    fast_path_cas: Sequence[x509.Certificate] = ()
    fast_path_minutes: int = 15
    token_ttl: int = 3600
    crl_interval: int = 6 * 3600
    limits: Limits = field(default_factory=Limits)
    answer_cache: int = 8192   # lookup answers memoised per process (see Answers); 0 turns the memo off


class ApiError(AutosmimeError):
    """A request the directory refuses, with its HTTP status and a machine-readable code."""

    def __init__(self, status: int, code: str, detail: str = "", retry_after: int | None = None) -> None:
        super().__init__(detail or code)
        self.status, self.code, self.detail, self.retry_after = status, code, detail or code, retry_after


@dataclass(frozen=True)
class Answer:
    """A lookup answer as served: the JSON body and its ETag."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, data: dict) -> Answer:
        body = json.dumps(data, separators=(",", ":")).encode()
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


class Answers:
    """A bounded memo of lookup answers, each stored with the database rows it was built from.

    >>> memo = Answers(2)
    >>> memo.put(("address", "a@x.test"), [("row", 5)], Answer(b"{}", '"e"'))
    >>> memo.get(("address", "a@x.test"), [("row", 5)])
    Answer(body=b'{}', etag='"e"')
    >>> memo.get(("address", "a@x.test"), [("row", 6)]) is None    # the log grew: rebuilt
    True

    A pure cache: the rows carry every value of the answer that can change (the binding, the certificate's
    status and when it was checked, the log head's size and signed note); the rest is fixed once written:
    a certificate row is keyed by the SHA-256 of its DER and never updated except for its status, a leaf
    never changes, and the proof nodes are a function of the leaf index and the size, since the log only
    grows. Each lookup reads those rows from the database first,
    so a publish, withdrawal, preference or status change made by any process is in the very next answer,
    and every proof is against the newest checkpoint. Nothing here is needed across processes or restarts.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._memo: dict[tuple[str, str], tuple[list, Answer]] = {}

    def get(self, key: tuple[str, str], rows: list) -> Answer | None:
        found = self._memo.get(key)
        if found is not None and found[0] == rows:
            return found[1]
        return None

    def put(self, key: tuple[str, str], rows: list, answer: Answer) -> None:
        if self.limit <= 0:
            return
        memo = self._memo
        memo.pop(key, None)
        while len(memo) >= self.limit:  # the oldest entry first (dicts keep insertion order)
            try:
                del memo[next(iter(memo))]
            except (KeyError, StopIteration, RuntimeError):  # another thread removed it meanwhile
                break
        memo[key] = (rows, answer)

    def __len__(self) -> int:
        return len(self._memo)


NOT_FOUND = ApiError(404, "not_found", "no certificate is published for this request")


@functools.lru_cache(maxsize=4096)  # the same validity dates and check times are formatted on every lookup
def _iso(ts: int) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pem_chain(certs_: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs_)


def load_log_key(engine: Engine, path: Path | None) -> ed25519.Ed25519PrivateKey:
    """The log's Ed25519 key: from ``path`` (created 0600 if missing), else generated once and kept in the database."""
    if path is not None:
        from autosmime._files import write_private

        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), None)
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                raise UsageError(f"{path} is not an Ed25519 private key")
            return key
        key = ed25519.Ed25519PrivateKey.generate()
        write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        return key
    with engine.begin() as conn:
        raw = ed25519.Ed25519PrivateKey.generate().private_bytes_raw()
        conn.execute(upsert(engine, meta).values(name="log_key", value=raw).on_conflict_do_nothing())
        stored = conn.execute(select(meta.c.value).where(meta.c.name == "log_key")).scalar_one()
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes(stored))


class Directory:
    def __init__(self, config: Config, engine: Engine | None = None) -> None:
        if not config.trust:
            raise UsageError("the directory needs at least one trusted CA (--trust)")
        self.config = config
        self.engine = engine or open_engine(config.db)
        self.log = TransparencyLog(self.engine, load_log_key(self.engine, config.log_key), config.origin)
        self.sql = self.log.sql
        self.trust = list(config.trust)
        self._fast_path = {cert_der(c) for c in config.fast_path_cas}
        self.answers = Answers(config.answer_cache)

    # --- lookups -------------------------------------------------------------------

    def answer(self, cur: Any, column: str, value: str, limits: Sequence[Limit] = ()) -> Answer | None:
        """The answer for a normalised address (``column`` "address") or a SHA-256 hex ("sha256"), or None.

        ``cur`` is a DB-API cursor from ``self.sql.session()``; the request is first counted against ``limits``
        (ApiError 429 when over one). One query reads the bindings with the log head; the answer built from them is memoised under exactly
        those rows (see Answers), so a repeated lookup costs that query and no proof, JSON or hashing.
        """
        retry, rows = self.sql.lookup(cur, column, value, limits, int(time.time()))
        if retry is not None:
            raise ApiError(429, "rate_limited", "too many requests; retry later", retry_after=retry)
        if not rows:
            return None
        # address, sha256, preferred, leaf_index, not_before, not_after, status, checked_at, size, note;
        # sha256 last only to make the order (and so the memo's key) deterministic.
        rows.sort(key=lambda r: (r[2], r[4], r[5], r[1]), reverse=True)
        key = (column, value)
        hit = self.answers.get(key, rows)
        if hit is not None:
            return hit
        size, note = int(rows[0][8]), str(rows[0][9])
        proofs = self.log.proofs(cur, [r[3] for r in rows], size)
        certs_, leaves = self.sql.details(cur, [r[1] for r in rows], [r[3] for r in rows])
        entries = [{
            "address": r[0], "sha256": r[1], "der_b64": _b64(certs_[r[1]][0]),
            "not_before": _iso(r[4]), "not_after": _iso(r[5]), "preferred": bool(r[2]),
            "status": {"state": r[6], "checked_at": _iso(r[7])},
            "issuers_b64": json.loads(certs_[r[1]][1]), "leaf_index": r[3], "leaf_b64": _b64(leaves[r[3]]),
            "inclusion": [_b64(p) for p in proof],
        } for r, proof in zip(rows, proofs, strict=True)]
        answer = Answer.of({column: value, "certificates": entries, "tree_size": size, "checkpoint": note})
        self.answers.put(key, rows, answer)
        return answer

    def lookup(self, cur: Any, column: str, value: str) -> dict | None:
        answer = self.answer(cur, column, value)
        return None if answer is None else json.loads(answer.body)

    def lookup_email(self, address: str) -> dict | None:
        with self.sql.session() as cur:
            return self.lookup(cur, "address", address)

    def lookup_sha256(self, sha256_hex: str) -> dict | None:
        with self.sql.session() as cur:
            return self.lookup(cur, "sha256", sha256_hex)

    def consistency(self, old: int, new: int | None) -> dict:
        with self.engine.connect() as conn:
            cur = conn.connection.cursor()
            size, note = self.log.head(cur)
            new = size if new is None else new
            if not 0 < old <= new <= size:
                raise ApiError(400, "bad_range", f"need 0 < from <= to <= {size}")
            to_note = note if new == size else self.log.checkpoint_note(conn, new)
            proof = self.log.consistency(cur, old, new)
        return {"from": old, "to": new, "proof": [_b64(p) for p in proof], "checkpoint": to_note}

    def checkpoint(self) -> str:
        with self.sql.session() as cur:
            return self.log.head(cur)[1]

    def log_key(self) -> dict:
        raw = self.log.public_key.public_bytes_raw()
        return {"origin": self.log.origin, "algorithm": "ed25519", "public_key_b64": _b64(raw)}

    # --- publish --------------------------------------------------------------------

    def request_publish(self, chain_pem: str, address: str | None, client: str) -> dict:
        try:
            chain = x509.load_pem_x509_certificates(chain_pem.encode())
        except ValueError as e:
            raise ApiError(400, "bad_chain", f"cannot read the certificate chain: {e}") from None
        leaf, pool = chain[0], chain[1:]
        names = [_normalized(a) for a in cert_addresses(leaf)]
        if address is not None:
            address = _normalized(address)
            if address not in names:
                raise ApiError(422, "address_mismatch", f"the certificate is not for {address}")
        elif len(names) == 1:
            address = names[0]
        else:
            raise ApiError(400, "address_needed", "say which of the certificate's addresses to publish")
        purpose = "encrypt" if can_encrypt(leaf) else "sign"
        try:
            path = validate_for(leaf, pool, self.trust, purpose)
        except UntrustedSigner as e:
            raise ApiError(422, "untrusted", str(e)) from None
        status = revocation.crl_status(leaf, [*path[1:], *pool])
        if status == "revoked":
            raise ApiError(422, "revoked", "the certificate is revoked")
        sha = hashlib.sha256(cert_der(leaf)).hexdigest()
        with self.engine.connect() as conn:
            live = conn.execute(select(bindings.c.published).where(
                bindings.c.address == address, bindings.c.sha256 == sha)).scalar()
        if live == 1:
            raise ApiError(409, "already_published", "this certificate is already published for this address")
        fast = len(path) > 1 and cert_der(path[1]) in self._fast_path and self._fresh(leaf)
        return self._challenge("publish", address, sha, leaf, chain=_pem_chain(path[:-1] or path),
                               status=status, crl_url=revocation.crl_url_of(leaf), mail=not fast, pop=True)

    def _fresh(self, leaf: x509.Certificate) -> bool:
        age = _dt.datetime.now(_dt.UTC) - leaf.not_valid_before_utc
        return _dt.timedelta(minutes=-5) <= age <= _dt.timedelta(minutes=self.config.fast_path_minutes)

    def request_unpublish(self, address: str, sha256_hex: str, via: str) -> dict:
        if via not in ("mail", "proof"):
            raise ApiError(400, "bad_request", "via must be 'mail' or 'proof'")
        address = _normalized(address)
        leaf = self._published_cert(address, sha256_hex)
        return self._challenge("unpublish", address, sha256_hex, leaf, mail=via == "mail", pop=via == "proof")

    def request_prefer(self, address: str, sha256_hex: str) -> dict:
        address = _normalized(address)
        leaf = self._published_cert(address, sha256_hex)
        return self._challenge("prefer", address, sha256_hex, leaf, mail=False, pop=True)

    def _published_cert(self, address: str, sha256_hex: str) -> x509.Certificate:
        with self.engine.connect() as conn:
            der = conn.execute(select(certs.c.der).join(bindings, bindings.c.sha256 == certs.c.sha256).where(
                bindings.c.address == address, bindings.c.sha256 == sha256_hex.lower(),
                bindings.c.published == 1)).scalar()
        if der is None:
            raise NOT_FOUND
        return x509.load_der_x509_certificate(bytes(der))

    def _challenge(self, op: str, address: str, sha: str, leaf: x509.Certificate, *, mail: bool, pop: bool,
                   chain: bytes | None = None, status: str | None = None, crl_url: str | None = None) -> dict:
        request_id = secrets.token_urlsafe(16)
        nonce = secrets.token_bytes(32)
        token = secrets.token_urlsafe(32) if mail else None
        now = int(time.time())
        expires = now + self.config.token_ttl
        answer: dict = {"request": request_id, "op": op, "address": address, "sha256": sha,
                        "mail": "sent" if mail else "skipped", "expires": _iso(expires)}
        if pop:
            text = possession.statement(op, request_id, address, sha, nonce)
            if "sign" in key_roles(leaf):
                answer["proof"] = {"method": "sign", "statement_b64": _b64(text)}
            else:
                enveloped = smime.encrypt(possession.statement_message(text, address), [leaf])
                answer["proof"] = {"method": "decrypt", "enveloped_b64": _b64(enveloped)}
        with self.engine.begin() as conn:
            conn.execute(insert(pending).values(
                id=request_id, op=op, address=address, sha256=sha, nonce=nonce, chain=chain, status=status,
                crl_url=crl_url, expires=expires, token_hash=hashlib.sha256(token.encode()).digest() if token else None,
                needs_pop=1 if pop else 0))
        if token is not None:
            if self.config.smtp is None:
                self._drop(request_id)
                raise ApiError(503, "no_mail", "this directory cannot send mail")
            # However many ask, an address gets at most mails_per_address of our mails per window.
            n, window = self.config.limits.mails_per_address
            with self.sql.session() as cur:
                retry = self.sql.hit(cur, [(ratelimit.hashed("m", address), n, window)], now)
            if retry is not None:
                self._drop(request_id)
                raise ApiError(429, "mail_limited", "too many confirmation mails to this address; retry later",
                               retry_after=retry)
            raw = mailer.token_mail(self.config.mail_from, address, op, request_id, token, sha, self.config.public_url)
            try:
                mailer.send(self.config.smtp, self.config.mail_from, address, raw)
            except AutosmimeError as e:
                self._drop(request_id)
                raise ApiError(503, "mail_failed", str(e)) from None
        return answer

    def _drop(self, request_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(pending).where(pending.c.id == request_id))

    # --- confirm --------------------------------------------------------------------

    def confirm(self, op: str, request_id: str, token: str | None, proof: dict | None) -> dict:
        now = int(time.time())
        with self.engine.connect() as conn:
            row = conn.execute(select(pending).where(pending.c.id == request_id, pending.c.op == op)).first()
        if row is None or row.expires < now:
            raise ApiError(404, "unknown_request", "no such request (expired, already confirmed, or never made)")
        if row.token_hash is not None:
            if not token or not hmac.compare_digest(hashlib.sha256(token.encode()).digest(), bytes(row.token_hash)):
                raise ApiError(403, "bad_token", "the mailbox token does not match this request")
        if row.needs_pop:
            self._check_proof(row, proof)
        label = address_label(row.address)
        with self.engine.begin() as conn:
            # Deleting first makes the token single-use even against a concurrent replay.
            if conn.execute(delete(pending).where(pending.c.id == request_id)).rowcount != 1:
                raise ApiError(404, "unknown_request", "this request was confirmed already")
            if op == "publish":
                leaf, *intermediates = x509.load_pem_x509_certificates(bytes(row.chain))
                index = self.log.append(conn, event("publish", label, row.sha256, now))
                conn.execute(upsert(self.engine, certs).values(
                    sha256=row.sha256, der=cert_der(leaf), chain=bytes(row.chain),
                    not_before=int(leaf.not_valid_before_utc.timestamp()),
                    not_after=int(leaf.not_valid_after_utc.timestamp()), status=row.status or "unknown",
                    checked_at=now, crl_url=row.crl_url,
                    issuers=json.dumps([_b64(cert_der(c)) for c in intermediates])).on_conflict_do_nothing())
                stmt = upsert(self.engine, bindings).values(address=row.address, sha256=row.sha256, published=1,
                                                            preferred=0, leaf_index=index, created=now)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=[bindings.c.address, bindings.c.sha256],
                    set_={"published": 1, "preferred": 0, "leaf_index": index}))
            elif op == "unpublish":
                if conn.execute(update(bindings).where(
                        bindings.c.address == row.address, bindings.c.sha256 == row.sha256, bindings.c.published == 1)
                        .values(published=0, preferred=0)).rowcount != 1:
                    raise NOT_FOUND
                index = self.log.append(conn, event("unpublish", label, row.sha256, now))
            else:  # prefer
                conn.execute(update(bindings).where(bindings.c.address == row.address).values(preferred=0))
                if conn.execute(update(bindings).where(
                        bindings.c.address == row.address, bindings.c.sha256 == row.sha256, bindings.c.published == 1)
                        .values(preferred=1)).rowcount != 1:
                    raise NOT_FOUND
                index = self.log.append(conn, event("prefer", label, row.sha256, now))
            cur = conn.connection.cursor()
            size, note = self.log.head(cur)
            proof_nodes = self.log.proofs(cur, [index], size)[0]
        log.info("%s confirmed for %s (leaf %d)", op, row.sha256[:16], index)
        return {"op": op, "address": row.address, "sha256": row.sha256, "leaf_index": index, "tree_size": size,
                "inclusion": [_b64(p) for p in proof_nodes], "checkpoint": note}

    def _check_proof(self, row, proof: dict | None) -> None:
        expected = possession.statement(row.op, row.id, row.address, row.sha256, bytes(row.nonce))
        if not isinstance(proof, dict):
            raise ApiError(403, "bad_proof", "a proof of key possession is required")
        leaf_der = self._leaf_der(row)
        if "statement_b64" in proof:  # the decrypted statement, for an encryption-only key
            returned = _unb64(proof["statement_b64"])
            if "sign" in key_roles(x509.load_der_x509_certificate(leaf_der)) or not hmac.compare_digest(returned, expected):
                raise ApiError(403, "bad_proof", "the decrypted statement does not match")
            return
        if "signed_b64" not in proof:
            raise ApiError(403, "bad_proof", "a proof of key possession is required")
        pool = x509.load_pem_x509_certificates(self._chain_pem(row))
        try:
            # The statement carries the server's nonce; a Date header would add nothing (none is sent).
            result = smime.verify(_unb64(proof["signed_b64"]), self.trust, require_from_match=False, check_date=False,
                                  extra_certs=pool)
        except AutosmimeError as e:
            raise ApiError(403, "bad_proof", f"the possession proof does not verify: {e}") from None
        signer = result.signers[0].cert if len(result.signers) == 1 else None
        if signer is None or cert_der(signer) != leaf_der:
            raise ApiError(403, "bad_proof", "the proof is not signed with the certificate's key")
        if not hmac.compare_digest(possession.message_body(result.message), expected):
            raise ApiError(403, "bad_proof", "the signed statement does not match this request")

    def _chain_pem(self, row) -> bytes:
        """The certificate and its intermediates: sent with a publish request, stored for later requests."""
        if row.chain:
            return bytes(row.chain)
        with self.engine.connect() as conn:
            return bytes(conn.execute(select(certs.c.chain).where(certs.c.sha256 == row.sha256)).scalar_one())

    def _leaf_der(self, row) -> bytes:
        return cert_der(x509.load_pem_x509_certificates(self._chain_pem(row))[0])

    # --- monitor --------------------------------------------------------------------

    def monitor(self, address: str, unix_time: int, signed: bytes) -> dict:
        """Every log event for ``address``, to a holder of a trusted certificate for it (signed, fresh request)."""
        address = _normalized(address)
        if abs(time.time() - unix_time) > possession.MONITOR_SKEW:
            raise ApiError(403, "stale", "the monitor request is too old (or the clock is off)")
        try:
            result = smime.verify(signed, self.trust, require_from_match=False, check_date=False)  # its time is signed
        except AutosmimeError as e:
            raise ApiError(403, "bad_proof", f"the monitor request does not verify: {e}") from None
        names = {normalize_address(a) for s in result.signers for a in s.addresses}
        if address not in names or possession.message_body(result.message) != possession.monitor_statement(
                address, unix_time):
            raise ApiError(403, "bad_proof", "the monitor request is not signed for this address")
        with self.engine.connect() as conn:
            leaves = self.log.leaves_for(conn, address_label(address))
            cur = conn.connection.cursor()
            size, note = self.log.head(cur)
            proofs = self.log.proofs(cur, [i for i, _ in leaves], size) if leaves else []
        events = [{"leaf_index": i, "leaf_b64": _b64(data), "inclusion": [_b64(p) for p in proof]}
                  for (i, data), proof in zip(leaves, proofs, strict=True)]
        return {"address": address, "events": events, "tree_size": size, "checkpoint": note}

    # --- upkeep ---------------------------------------------------------------------

    def sweep(self) -> dict:
        """Refresh revocation status from the CRLs (logging new revocations); drop expired requests and old counters."""
        now = int(time.time())
        when = _dt.datetime.now(_dt.UTC)
        changed = {"good": 0, "revoked": 0, "unknown": 0}
        with self.engine.connect() as conn:
            rows = conn.execute(select(certs.c.sha256, certs.c.der, certs.c.chain, certs.c.crl_url, certs.c.status)
                                .where(certs.c.crl_url.is_not(None), certs.c.status != "revoked")).all()
        fetched: dict[str, x509.CertificateRevocationList | None] = {}
        for r in rows:
            if r.crl_url not in fetched:
                fetched[r.crl_url] = revocation.fetch_crl(r.crl_url)
            cert = x509.load_der_x509_certificate(bytes(r.der))
            issuers = [*x509.load_pem_x509_certificates(bytes(r.chain)), *self.trust]
            state = revocation.status_in(cert, fetched[r.crl_url], issuers, when)
            changed[state] += 1
            with self.engine.begin() as conn:
                conn.execute(update(certs).where(certs.c.sha256 == r.sha256).values(status=state, checked_at=now))
                if state == "revoked":
                    for (address,) in conn.execute(select(bindings.c.address).where(
                            bindings.c.sha256 == r.sha256, bindings.c.published == 1)).all():
                        self.log.append(conn, event("revoked", address_label(address), r.sha256, now))
        with self.engine.begin() as conn:
            conn.execute(delete(pending).where(pending.c.expires < now))
            ratelimit.sweep(conn, now)
        return changed


def _normalized(address: str) -> str:
    try:
        return normalize_address(address)
    except UsageError as e:
        raise ApiError(400, "bad_address", str(e)) from None


def _unb64(value: object) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise ApiError(400, "bad_request", "not base64") from None


__all__ = ["Answer", "Answers", "Config", "Limits", "Directory", "ApiError", "load_log_key"]
