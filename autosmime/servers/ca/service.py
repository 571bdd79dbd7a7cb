"""The ACME server's logic (RFC 8555 + RFC 8823), independent of HTTP and of the mail transport.

    >>> from autosmime.servers.ca.service import CAService      # doctest: +SKIP
    >>> svc = CAService(authority, Store("sqlite:///ca.db"), SMTPOutbox("127.0.0.1", 2525), ZoneResolver(...))  # doctest: +SKIP
    >>> svc.handle_reply(raw_reply_mail)                         # doctest: +SKIP
    'accepted'

Each public method is one ACME resource: it gets the checked request
(:class:`Request`: the URL base it was sent to, the JWS, the account) and
returns ``(status, headers, body)``, or raises
:class:`~autosmime.servers.ca.errors.Problem`. The Starlette layer
(:mod:`.app`) only moves bytes.

The email-reply-00 challenge (RFC 8823 §3):

1. the first POST-as-GET of the authorization (or an earlier challenge POST)
   sends the challenge mail, exactly once across processes (the
   ``mail_claimed`` UPDATE decides), within the rate limits;
2. the verified reply (:meth:`handle_reply`, fed by the SMTP listener or the
   IMAP poller) and the client's challenge POST are recorded in either order;
   the statement that records the second one also sets ``valid``;
3. a reply from an aligned sender with the wrong digest makes the
   authorization (and order) ``invalid``; anything else that does not count
   (no or bad DKIM, foreign ``d=``, wrong From, not exactly one block, an
   expired or finished challenge) is ignored and only audited, so a stranger
   cannot fail someone else's order.

Every reply handled leaves an audit row (method "SBR v1.0.10 §3.2.2.4 /
RFC 8823", DKIM d= and s=, result).
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from typing import Any, cast

import josepy as jose
import sqlalchemy as sa
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from autosmime.servers.ca import mail as mailmod
from autosmime.servers.ca import profile
from autosmime.servers.ca.authority import Authority
from autosmime.servers.ca.dns import TxtResolver, dkim_dnsfunc
from autosmime.servers.ca.errors import Problem
from autosmime.servers.ca.jws import ParsedJWS, parse_jws, thumbprint
from autosmime.servers.ca.reply import ReplyRejected, reply_keys, verify_reply
from autosmime.servers.ca.settings import Settings
from autosmime.servers.ca.storage import Store, accounts, authzs, certificates, crls, new_id, orders

log = logging.getLogger("autosmime.ca")

VALIDATION_METHOD = "SBR v1.0.10 3.2.2.4 / RFC 8823 email-reply-00"
CHALLENGE_TYPE = "email-reply-00"

Response = tuple[int, dict[str, str], Any]

# Statements of the per-issuance path, built once: building SQLAlchemy expressions on every call
# cost more CPU than SQLite spends running them.
_b = sa.bindparam
_AUTHZ_BY_ID = sa.select(authzs).where(authzs.c.id == _b("id"))
_AUTHZ_BY_TOKEN = sa.select(authzs).where(authzs.c.token1 == _b("token"))
_AUTHZ_BY_MESSAGE_ID = sa.select(authzs).where(authzs.c.message_id == _b("mid"))
_ORDER_BY_ID = sa.select(orders).where(orders.c.id == _b("id"))
_ORDER_AUTHZS = sa.select(authzs.c.id, authzs.c.status, authzs.c.expires).where(authzs.c.order_id == _b("id"))
_PROMOTE_ORDER = orders.update().where(
    orders.c.id == _b("oid"), orders.c.status == "pending",
    ~sa.exists().where(authzs.c.order_id == _b("oid2"), authzs.c.status != "valid"),
).values(status="ready")
_MAILS_TO_ADDRESS = sa.select(sa.func.count()).select_from(authzs).where(
    authzs.c.identifier == _b("ident"), authzs.c.mail_claimed > _b("since"))
_MAILS_BY_ACCOUNT = sa.select(sa.func.count()).select_from(authzs).where(
    authzs.c.account_id == _b("acct"), authzs.c.mail_claimed > _b("since"))
_CLAIM_MAIL = authzs.update().where(
    authzs.c.id == _b("aid"), authzs.c.mail_sent.is_(None),
    sa.or_(authzs.c.mail_claimed.is_(None), authzs.c.mail_claimed < _b("stale")),
).values(mail_claimed=_b("now"))
_MAIL_SENT = authzs.update().where(authzs.c.id == _b("aid")).values(mail_sent=_b("now"))
_CLIENT_POSTED = authzs.update().where(
    authzs.c.id == _b("aid"), authzs.c.status == "pending", authzs.c.expires > _b("now"),
    authzs.c.client_posted.is_(None),
).values(
    client_posted=_b("now2"),
    status=sa.case((authzs.c.reply_ok.is_not(None), "valid"), else_=authzs.c.status),
    validated=sa.case((authzs.c.reply_ok.is_not(None), _b("now3")), else_=authzs.c.validated),
)
_REPLY_OK = authzs.update().where(
    authzs.c.id == _b("aid"), authzs.c.status == "pending", authzs.c.expires > _b("now"),
    authzs.c.reply_ok.is_(None),
).values(
    reply_ok=_b("now2"),
    status=sa.case((authzs.c.client_posted.is_not(None), "valid"), else_=authzs.c.status),
    validated=sa.case((authzs.c.client_posted.is_not(None), _b("now3")), else_=authzs.c.validated),
)
_RECENT_ORDERS = sa.select(sa.func.count()).select_from(orders).where(
    orders.c.account_id == _b("acct"), orders.c.created > _b("since"))
_INSERT_ORDER = orders.insert()
_INSERT_AUTHZ = authzs.insert()
_INSERT_CERT = certificates.insert()
_ORDER_PROCESSING = orders.update().where(
    orders.c.id == _b("oid"), orders.c.status == "ready", orders.c.expires > _b("now")).values(status="processing")
_ORDER_VALID = orders.update().where(orders.c.id == _b("oid")).values(status="valid", cert_id=_b("cert"))
_CERT_BY_ID = sa.select(certificates).where(certificates.c.id == _b("id"))


@dataclass
class Request:
    """One checked ACME POST: where it went, what it said, who signed it."""

    base: str                      # scheme://host[:port] the client used
    jws: ParsedJWS
    account: dict[str, Any] | None = None
    next_nonce: str | None = None  # issued with the consumption of this request's nonce
    headers: dict[str, str] = field(default_factory=dict)


def _rfc3339(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def ari_cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 certID: base64url(AKI keyIdentifier) "." base64url(serial DER content octets)."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier or b""
    serial = cert.serial_number
    return _b64url(aki) + "." + _b64url(serial.to_bytes((serial.bit_length() + 8) // 8, "big"))


@functools.lru_cache(maxsize=4096)
def _jwk_from_text(text: str) -> jose.JWK:
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise Problem.malformed("a JWK must be a JSON object")
    return cast(jose.JWK, jose.JWK.from_json(obj))


def load_jwk(value: Any) -> jose.JWK:
    """A JWK from its JSON object (or a JSON string of it; those are cached: accounts' keys)."""
    if isinstance(value, str):
        return _jwk_from_text(value)
    obj = value
    if not isinstance(obj, dict):
        raise Problem.malformed("a JWK must be a JSON object")
    return cast(jose.JWK, jose.JWK.from_json(obj))


def public_key_of(jwk: jose.JWK) -> Any:
    key = jwk.key
    return key.public_key() if hasattr(key, "public_key") else key


def _registration(payload: dict[str, Any]) -> messages.Registration:
    """newAccount / account-update payloads, read by the acme package's message class."""
    try:
        return messages.Registration.from_json(payload)
    except (jose.DeserializationError, TypeError, ValueError) as e:
        raise Problem.malformed(f"bad account object: {e}") from None


def _contacts(contact: Any) -> list[str]:
    if not isinstance(contact, list | tuple) or not all(isinstance(x, str) and x.startswith("mailto:")
                                                        for x in contact):
        raise Problem("unsupportedContact", "contact must be a list of mailto: URLs")
    return list(contact)


def key_authorization_digest(token1: str, token2: str, account_thumbprint: str) -> str:
    """base64url(SHA-256(token1 || token2 "." thumbprint)) — the string reading, equal to the bytes
    reading for the 24-byte token-part1 this CA uses."""
    ka = f"{token1}{token2}.{account_thumbprint}".encode("ascii")
    return _b64url(hashlib.sha256(ka).digest())


class CAService:
    def __init__(self, authority: Authority, store: Store, outbox: mailmod.Outbox, resolver: TxtResolver,
                 settings: Settings | None = None) -> None:
        self.authority = authority
        self.store = store
        self.outbox = outbox
        self.resolver = resolver
        self.dnsfunc = dkim_dnsfunc(resolver)
        self.settings = settings or Settings()
        self.clock = self.settings.clock
        self.linter = profile.PreIssuanceLinter() if self.settings.prelint else None

    # --- URLs -------------------------------------------------------------------

    @staticmethod
    def urls(base: str) -> dict[str, str]:
        a = base.rstrip("/") + "/acme"
        return {"newNonce": f"{a}/new-nonce", "newAccount": f"{a}/new-account", "newOrder": f"{a}/new-order",
                "revokeCert": f"{a}/revoke-cert", "keyChange": f"{a}/key-change",
                "renewalInfo": f"{a}/renewal-info"}

    def directory(self, base: str) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.urls(base))
        d["meta"] = {"caaIdentities": [self.authority.domain], "externalAccountRequired": False,
                     "website": base.rstrip("/") + "/"}
        return d

    @staticmethod
    def _u(base: str, kind: str, ident: str) -> str:
        return f"{base.rstrip('/')}/acme/{kind}/{ident}"

    def new_nonce(self) -> str:
        return self.store.new_nonce(now=self.clock(), ttl=self.settings.nonce_ttl)

    # --- authentication -----------------------------------------------------------

    def authenticate(self, body: bytes, url: str, base: str, *, allow_jwk: bool = False,
                     require_account: bool = True) -> Request:
        """Parse, verify and consume the nonce of a request; find its account."""
        jws = parse_jws(body, url)
        account = None
        if jws.kid is not None:
            account = self._account_by_kid(jws.kid)
            key = load_jwk(account["jwk"])
        else:
            if not allow_jwk:
                raise Problem.malformed("this resource needs a kid (account URL), not a jwk")
            assert jws.jwk is not None
            key = jws.jwk
        jws.verify(key)
        ok, next_nonce = self.store.consume_and_renew_nonce(jws.nonce, now=self.clock(), ttl=self.settings.nonce_ttl)
        if not ok:
            raise Problem.bad_nonce(headers={"Replay-Nonce": next_nonce})
        if account is not None and account["status"] != "valid":
            raise Problem.unauthorized(f"the account is {account['status']}")
        if require_account and account is None:
            raise Problem.malformed("this resource needs a kid (account URL)")
        return Request(base=base, jws=jws, account=account, next_nonce=next_nonce)

    def _account_by_kid(self, kid: str) -> dict[str, Any]:
        marker = "/acme/acct/"
        i = kid.rfind(marker)
        acct_id = kid[i + len(marker):] if i >= 0 else ""
        if not acct_id or "/" in acct_id:
            raise Problem.account_does_not_exist("the kid is not an account URL of this CA")
        row = self.store.account(acct_id)
        if row is None:
            raise Problem.account_does_not_exist()
        return row

    # --- accounts -----------------------------------------------------------------

    def _account_json(self, base: str, row: dict[str, Any]) -> dict[str, Any]:
        return {"status": row["status"], "contact": json.loads(row["contact"]), "key": json.loads(row["jwk"]),
                "orders": self._u(base, "acct", row["id"]) + "/orders", "createdAt": _rfc3339(row["created"])}

    def new_account(self, req: Request) -> Response:
        if req.jws.jwk is None:
            raise Problem.malformed("newAccount must be signed with a jwk")
        reg = _registration(req.jws.json_payload() if req.jws.payload else {})
        tp = thumbprint(req.jws.jwk)
        with self.store.read() as c:
            row = c.execute(sa.select(accounts).where(accounts.c.thumbprint == tp)).first()
        if row is not None:
            r = dict(row._mapping)
            return 200, {"Location": self._u(req.base, "acct", r["id"])}, self._account_json(req.base, r)
        if reg.only_return_existing:
            raise Problem.account_does_not_exist()
        contact = _contacts(reg.contact)
        jwk_json = json.dumps(req.jws.jwk.to_partial_json(), sort_keys=True)
        row_d: dict[str, Any] = {"id": new_id(), "thumbprint": tp, "jwk": jwk_json, "status": "valid",
                 "contact": json.dumps(contact), "created": self.clock()}
        try:
            with self.store.tx() as c:
                c.execute(accounts.insert().values(**row_d))
        except sa.exc.IntegrityError:  # the same key registered concurrently: return that account
            with self.store.read() as c:
                existing = c.execute(sa.select(accounts).where(accounts.c.thumbprint == tp)).first()
            assert existing is not None
            r = dict(existing._mapping)
            return 200, {"Location": self._u(req.base, "acct", r["id"])}, self._account_json(req.base, r)
        return 201, {"Location": self._u(req.base, "acct", row_d["id"])}, self._account_json(req.base, row_d)

    def account(self, req: Request, acct_id: str) -> Response:
        assert req.account is not None
        if req.account["id"] != acct_id:
            raise Problem.unauthorized("not your account")
        row = req.account
        if req.jws.payload:
            payload = req.jws.json_payload()
            reg = _registration(payload)
            updates: dict[str, Any] = {}
            if "contact" in payload:
                updates["contact"] = json.dumps(_contacts(reg.contact))
            status = getattr(reg.status, "name", reg.status)   # the field has no decoder: a plain string
            if status == "deactivated":
                updates["status"] = "deactivated"
            elif status is not None:
                raise Problem.malformed("only status 'deactivated' may be requested")
            if updates:
                with self.store.tx() as c:
                    c.execute(accounts.update().where(accounts.c.id == acct_id).values(**updates))
                row = row | updates
        return 200, {"Location": self._u(req.base, "acct", acct_id)}, self._account_json(req.base, row)

    def account_orders(self, req: Request, acct_id: str) -> Response:
        assert req.account is not None
        if req.account["id"] != acct_id:
            raise Problem.unauthorized("not your account")
        with self.store.read() as c:
            ids = [r.id for r in c.execute(sa.select(orders.c.id).where(
                orders.c.account_id == acct_id, orders.c.status.in_(("pending", "ready", "processing")),
                orders.c.expires > self.clock()))]
        return 200, {}, {"orders": [self._u(req.base, "order", i) for i in ids]}

    def key_change(self, req: Request, outer_url: str) -> Response:
        assert req.account is not None
        inner = parse_jws(req.jws.payload, outer_url, inner=True)
        if inner.jwk is None:
            raise Problem.malformed("the inner keyChange JWS must carry the new key as jwk")
        inner.verify(inner.jwk)
        payload = inner.json_payload()
        if payload.get("account") != req.jws.kid:
            raise Problem.malformed("keyChange account does not match the outer kid")
        try:
            old_key = load_jwk(payload.get("oldKey"))
        except (jose.DeserializationError, TypeError, ValueError, KeyError):
            raise Problem.malformed("unreadable oldKey") from None
        if thumbprint(old_key) != thumbprint(load_jwk(req.account["jwk"])):
            raise Problem.malformed("oldKey is not the account's current key")
        new_tp = thumbprint(inner.jwk)
        with self.store.read() as c:
            other = c.execute(sa.select(accounts.c.id).where(accounts.c.thumbprint == new_tp)).first()
        if other is not None:
            return 409, {"Location": self._u(req.base, "acct", str(other.id))}, {
                "type": "urn:ietf:params:acme:error:malformed", "detail": "the new key is already in use",
                "status": 409}
        try:
            with self.store.tx() as c:
                c.execute(accounts.update().where(accounts.c.id == req.account["id"]).values(
                    thumbprint=new_tp, jwk=json.dumps(inner.jwk.to_partial_json(), sort_keys=True)))
        except sa.exc.IntegrityError:
            raise Problem("conflict", "the new key is already in use", 409) from None
        row = req.account | {"jwk": json.dumps(inner.jwk.to_partial_json())}
        return 200, {"Location": self._u(req.base, "acct", req.account["id"])}, self._account_json(req.base, row)

    # --- orders -------------------------------------------------------------------

    def new_order(self, req: Request) -> Response:
        assert req.account is not None
        payload = req.jws.json_payload()
        idents = payload.get("identifiers")
        if not isinstance(idents, list) or not idents or len(idents) > 10:
            raise Problem.malformed("identifiers must be a list of 1..10 identifiers")
        values: list[str] = []
        for ident in idents:
            if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
                raise Problem.malformed("each identifier needs a type and a value")
            if ident.get("type") != "email":
                raise Problem.unsupported_identifier(f"identifier type {ident.get('type')!r}: only 'email'")
            value = ident["value"]
            if "*" in value:
                raise Problem.rejected_identifier("email identifiers must not contain '*' (RFC 8823)")
            try:
                address = profile.normalise_address(value)
            except (ValueError, UnicodeError):
                raise Problem.rejected_identifier(f"not an email address: {value!r}") from None
            if len(address) > 254 or any(ch.isspace() or ord(ch) < 32 for ch in address):
                raise Problem.rejected_identifier(f"not an email address: {value!r}")
            if address not in values:
                values.append(address)
        for unsupported in ("notBefore", "notAfter"):
            if unsupported in payload:
                raise Problem.malformed(f"{unsupported} is not supported")
        now = self.clock()
        limit = self.settings.orders_per_account_per_hour
        expires = now + self.settings.authz_ttl
        order_id = new_id()
        replaces = payload.get("replaces")
        if replaces is not None:
            self._check_replaces(replaces, req.account["id"], now)
        with self.store.tx() as c:
            recent = c.execute(_RECENT_ORDERS, {"acct": req.account["id"], "since": now - 3600}).scalar() or 0
            if recent >= limit:
                raise Problem.rate_limited(f"at most {limit} new orders per hour per account", 3600)
            c.execute(_INSERT_ORDER, dict(id=order_id, account_id=req.account["id"], status="pending",
                                          identifiers=json.dumps(values), created=now, expires=expires,
                                          replaces=replaces))
            c.execute(_INSERT_AUTHZ, [dict(
                id=new_id(), order_id=order_id, account_id=req.account["id"], identifier=value,
                status="pending", expires=expires, token1=mailmod.new_token1(),
                token2=mailmod.new_token2(), message_id=mailmod.new_message_id(self.authority.domain))
                for value in values])
        return 201, {"Location": self._u(req.base, "order", order_id)}, self._order_json(req.base, order_id)

    def _check_replaces(self, replaces: Any, account_id: str, now: float) -> None:
        """RFC 9773 §5: ``replaces`` names a certificate of this account not already being replaced."""
        if not isinstance(replaces, str):
            raise Problem.malformed("replaces must be an ARI certID string")
        with self.store.read() as c:
            cert = c.execute(sa.select(certificates.c.account_id).where(certificates.c.ari_id == replaces)).first()
            if cert is None or cert.account_id != account_id:
                raise Problem.malformed("replaces does not name a certificate of this account")
            taken = c.execute(sa.select(orders.c.id).where(
                orders.c.replaces == replaces,
                sa.or_(orders.c.status == "valid",
                       sa.and_(orders.c.status.in_(("pending", "ready", "processing")), orders.c.expires > now)),
            ).limit(1)).first()
        if taken is not None:
            raise Problem("alreadyReplaced", "another order already replaces this certificate", 409)

    def _order_row(self, order_id: str) -> dict[str, Any]:
        with self.store.read() as c:
            row = c.execute(_ORDER_BY_ID, {"id": order_id}).first()
        if row is None:
            raise Problem.not_found("no such order")
        return dict(row._mapping)

    def _order_json(self, base: str, order_id: str, row: dict[str, Any] | None = None) -> dict[str, Any]:
        row = row or self._order_row(order_id)
        with self.store.read() as c:
            authz_rows = list(c.execute(_ORDER_AUTHZS, {"id": order_id}))
        status = self._order_status(row, [a.status for a in authz_rows])
        doc: dict[str, Any] = {
            "status": status, "expires": _rfc3339(row["expires"]),
            "identifiers": [{"type": "email", "value": v} for v in json.loads(row["identifiers"])],
            "authorizations": [self._u(base, "authz", a.id) for a in authz_rows],
            "finalize": self._u(base, "order", order_id) + "/finalize",
        }
        if row["replaces"]:
            doc["replaces"] = row["replaces"]
        if row["error"]:
            doc["error"] = json.loads(row["error"])
        if status == "valid" and row["cert_id"]:
            doc["certificate"] = self._u(base, "cert", row["cert_id"])
        return doc

    def _order_status(self, row: dict[str, Any], authz_statuses: list[str]) -> str:
        status = row["status"]
        if status == "pending":
            if row["expires"] <= self.clock():
                return "invalid"
            if any(s in ("invalid", "deactivated", "revoked") for s in authz_statuses):
                return "invalid"
            if authz_statuses and all(s == "valid" for s in authz_statuses):
                self._promote_order(row["id"])
                return "ready"
        if status == "ready" and row["expires"] <= self.clock():
            return "invalid"
        return str(status)

    def _promote_order(self, order_id: str, c: sa.Connection | None = None) -> None:
        params = {"oid": order_id, "oid2": order_id}
        if c is not None:
            c.execute(_PROMOTE_ORDER, params)
        else:
            with self.store.tx() as c2:
                c2.execute(_PROMOTE_ORDER, params)

    def order(self, req: Request, order_id: str) -> Response:
        row = self._owned_order(req, order_id)
        return 200, {}, self._order_json(req.base, order_id, row)

    def _owned_order(self, req: Request, order_id: str) -> dict[str, Any]:
        assert req.account is not None
        row = self._order_row(order_id)
        if row["account_id"] != req.account["id"]:
            raise Problem.unauthorized("not your order")
        return row

    # --- authorizations and challenges -------------------------------------------

    def _authz_row(self, authz_id: str, account_id: str) -> dict[str, Any]:
        with self.store.read() as c:
            row = c.execute(_AUTHZ_BY_ID, {"id": authz_id}).first()
        if row is None:
            raise Problem.not_found("no such authorization")
        if row.account_id != account_id:
            raise Problem.unauthorized("not your authorization")
        return dict(row._mapping)

    def _authz_status(self, row: dict[str, Any]) -> str:
        if row["status"] == "pending" and row["expires"] <= self.clock():
            return "expired"
        return str(row["status"])

    def _challenge_json(self, base: str, row: dict[str, Any]) -> dict[str, Any]:
        status = self._authz_status(row)
        cstatus = {"valid": "valid", "invalid": "invalid", "expired": "invalid",
                   "deactivated": "invalid", "revoked": "invalid"}.get(status)
        if cstatus is None:
            cstatus = "processing" if row["client_posted"] is not None else "pending"
        doc: dict[str, Any] = {"type": CHALLENGE_TYPE, "url": self._u(base, "chall", row["id"]), "status": cstatus,
                               "token": row["token2"], "from": self.authority.mail_from}
        if row["validated"] is not None:
            doc["validated"] = _rfc3339(row["validated"])
        if row["error"]:
            doc["error"] = json.loads(row["error"])
        return doc

    def _authz_json(self, base: str, row: dict[str, Any]) -> dict[str, Any]:
        return {"status": self._authz_status(row), "expires": _rfc3339(row["expires"]),
                "identifier": {"type": "email", "value": row["identifier"]},
                "challenges": [self._challenge_json(base, row)]}

    def authorization(self, req: Request, authz_id: str) -> Response:
        assert req.account is not None
        row = self._authz_row(authz_id, req.account["id"])
        if req.jws.payload:
            payload = req.jws.json_payload()
            if payload.get("status") != "deactivated":
                raise Problem.malformed("only status 'deactivated' may be requested")
            with self.store.tx() as c:
                c.execute(authzs.update().where(authzs.c.id == authz_id, authzs.c.status.in_(("pending", "valid")))
                          .values(status="deactivated"))
            row = self._authz_row(authz_id, req.account["id"])
        elif self._authz_status(row) == "pending":
            self._ensure_mail(row)
            row = self._authz_row(authz_id, req.account["id"])
        return 200, {}, self._authz_json(req.base, row)

    def challenge(self, req: Request, authz_id: str) -> Response:
        assert req.account is not None
        row = self._authz_row(authz_id, req.account["id"])
        up = {"Link": f'<{self._u(req.base, "authz", authz_id)}>;rel="up"'}
        if not req.jws.payload:            # POST-as-GET: just the state
            return 200, up, self._challenge_json(req.base, row)
        req.jws.json_payload()             # "{}" (any object) starts validation
        if self._authz_status(row) != "pending":
            return 200, up, self._challenge_json(req.base, row)
        self._ensure_mail(row)
        now = self.clock()
        with self.store.tx() as c:
            c.execute(_CLIENT_POSTED, {"aid": authz_id, "now": now, "now2": now, "now3": now})
            self._promote_order(row["order_id"], c)
        row = self._authz_row(authz_id, req.account["id"])
        doc = self._challenge_json(req.base, row)
        if doc["status"] == "processing":
            up["Retry-After"] = "2"     # the reply travels by mail; poll gently (RFC 8555 §7.5.1)
        return 200, up, doc

    def _ensure_mail(self, row: dict[str, Any]) -> None:
        """Send the challenge mail once; rate limits apply to the sending."""
        if row["mail_sent"] is not None:
            return
        now = self.clock()
        s = self.settings
        with self.store.tx() as c:
            hour = now - 3600
            per_addr = c.execute(_MAILS_TO_ADDRESS, {"ident": row["identifier"], "since": hour}).scalar() or 0
            per_acct = c.execute(_MAILS_BY_ACCOUNT, {"acct": row["account_id"], "since": hour}).scalar() or 0
            if per_addr >= s.mails_per_address_per_hour:
                raise Problem.rate_limited(
                    f"at most {s.mails_per_address_per_hour} challenge mails per hour to one address", 3600)
            if per_acct >= s.mails_per_account_per_hour:
                raise Problem.rate_limited(
                    f"at most {s.mails_per_account_per_hour} challenge mails per hour per account", 3600)
            # A claim older than a minute without a sent mark is a process that died while sending.
            claimed = c.execute(_CLAIM_MAIL, {"aid": row["id"], "stale": now - 60, "now": now}).rowcount
        if claimed != 1:
            return
        raw = mailmod.compose_challenge(self.authority.mail_from, row["identifier"], row["token1"],
                                        row["message_id"])
        signed = mailmod.dkim_sign(raw, selector=self.authority.dkim_selector, domain=self.authority.domain,
                                   key=self.authority.dkim_key)
        try:
            self.outbox.send(self.authority.mail_from, row["identifier"], signed)
        except Exception as e:
            with self.store.tx() as c:
                c.execute(authzs.update().where(authzs.c.id == row["id"]).values(mail_claimed=None))
            log.warning("challenge mail to %s failed: %s", row["identifier"], type(e).__name__)
            raise Problem.server_internal("the challenge mail could not be sent; try again later") from None
        with self.store.tx() as c:
            c.execute(_MAIL_SENT, {"aid": row["id"], "now": self.clock()})
            self.store.audit(c, now=self.clock(), event="challenge_mail", result="sent", authz_id=row["id"],
                             account_id=row["account_id"], identifier=row["identifier"],
                             message_id=row["message_id"], dkim_domain=self.authority.domain,
                             dkim_selector=self.authority.dkim_selector)

    # --- the reply ------------------------------------------------------------------

    def handle_reply(self, raw: bytes) -> str:
        """Process one inbound mail; returns the outcome recorded in the audit log."""
        now = self.clock()
        token, in_reply_to = reply_keys(raw)
        row = None
        with self.store.read() as c:
            if token:
                row = c.execute(_AUTHZ_BY_TOKEN, {"token": token}).first()
            if row is None and in_reply_to:
                row = c.execute(_AUTHZ_BY_MESSAGE_ID, {"mid": in_reply_to}).first()
        if row is None:
            self.store.audit(None, now=now, event="reply", result="unmatched", in_reply_to=in_reply_to)
            return "unmatched"
        a = dict(row._mapping)

        def record(result: str, **detail: Any) -> str:
            self.store.audit(None, now=self.clock(), event="reply", result=result, authz_id=a["id"],
                             account_id=a["account_id"], identifier=a["identifier"], method=VALIDATION_METHOD,
                             **detail)
            return result

        if a["status"] != "pending" or a["reply_ok"] is not None:
            return record("stale", status=a["status"])
        if a["expires"] <= now:
            return record("expired")
        if a["mail_sent"] is None:
            return record("no_challenge_sent")
        try:
            reply = verify_reply(raw, self.dnsfunc)
        except ReplyRejected as e:
            return record(e.reason, why=e.detail)
        try:
            sender = profile.normalise_address(reply.from_addr)
        except (ValueError, UnicodeError):
            return record("from")
        if sender != a["identifier"]:
            return record("from", dkim_domain=reply.dkim_domain)
        with self.store.read() as c:
            acct = c.execute(sa.select(accounts.c.jwk).where(accounts.c.id == a["account_id"])).first()
        assert acct is not None
        expected = key_authorization_digest(a["token1"], a["token2"],
                                            thumbprint(load_jwk(acct.jwk)))
        dkim_detail = {"dkim_domain": reply.dkim_domain, "dkim_selector": reply.dkim_selector}
        if not hmac.compare_digest(expected.encode(), reply.response.encode()):
            error = json.dumps({"type": "urn:ietf:params:acme:error:incorrectResponse",
                                "detail": "the digest in the reply does not match", "status": 403})
            with self.store.tx() as c:
                c.execute(authzs.update().where(authzs.c.id == a["id"], authzs.c.status == "pending")
                          .values(status="invalid", error=error))
                c.execute(orders.update().where(orders.c.id == a["order_id"], orders.c.status == "pending")
                          .values(status="invalid", error=error))
            return record("incorrect_response", **dkim_detail)
        with self.store.tx() as c:
            n = c.execute(_REPLY_OK, {"aid": a["id"], "now": now, "now2": now, "now3": now}).rowcount
            self._promote_order(a["order_id"], c)
            if n == 1:
                self.store.audit(c, now=now, event="reply", result="accepted", authz_id=a["id"],
                                 account_id=a["account_id"], identifier=a["identifier"], method=VALIDATION_METHOD,
                                 **dkim_detail)
        if n != 1:
            return record("stale")
        return "accepted"

    # --- finalize, certificates, revocation --------------------------------------------

    def finalize(self, req: Request, order_id: str) -> Response:
        assert req.account is not None
        row = self._owned_order(req, order_id)
        doc = self._order_json(req.base, order_id, row)
        if doc["status"] != "ready":
            raise Problem.order_not_ready(f"the order is {doc['status']}, not ready")
        payload = req.jws.json_payload()
        csr_b64 = payload.get("csr")
        if not isinstance(csr_b64, str):
            raise Problem.malformed("finalize needs a csr")
        try:
            csr_der = jose.b64decode(csr_b64)
        except (ValueError, TypeError):
            raise Problem.bad_csr("the csr is not base64url") from None
        account_spki = profile.spki_der(public_key_of(load_jwk(req.account["jwk"])))
        identifiers = json.loads(row["identifiers"])
        public_key, usage = profile.check_csr(csr_der, identifiers, account_spki)
        now = self.clock()
        with self.store.tx() as c:
            took = c.execute(_ORDER_PROCESSING, {"oid": order_id, "now": now}).rowcount
        if took != 1:
            raise Problem.order_not_ready("the order is being finalized or is no longer ready")
        try:
            cert = profile.issue_mailbox_cert(
                identifiers, public_key, self.authority, self.settings.base_url or req.base,
                days=self.settings.validity_days, usage=usage,
                now=_dt.datetime.fromtimestamp(now, _dt.UTC), linter=self.linter)
        except Exception:
            with self.store.tx() as c:
                c.execute(orders.update().where(orders.c.id == order_id).values(status="ready"))
            raise
        cert_id = format(cert.serial_number, "x")
        with self.store.tx() as c:
            c.execute(_INSERT_CERT, dict(
                id=cert_id, account_id=req.account["id"], order_id=order_id, ari_id=ari_cert_id(cert),
                der=cert.public_bytes(serialization.Encoding.DER),
                not_before=cert.not_valid_before_utc.timestamp(), not_after=cert.not_valid_after_utc.timestamp()))
            c.execute(_ORDER_VALID, {"oid": order_id, "cert": cert_id})
            self.store.audit(c, now=now, event="issue", result="issued", account_id=req.account["id"],
                             identifier=",".join(identifiers), serial=cert_id, order_id=order_id)
        doc |= {"status": "valid", "certificate": self._u(req.base, "cert", cert_id)}
        return 200, {"Location": self._u(req.base, "order", order_id)}, doc

    def certificate(self, req: Request, cert_id: str) -> Response:
        assert req.account is not None
        with self.store.read() as c:
            row = c.execute(_CERT_BY_ID, {"id": cert_id}).first()
        if row is None:
            raise Problem.not_found("no such certificate")
        if row.account_id != req.account["id"]:
            raise Problem.unauthorized("not your certificate")
        leaf = x509.load_der_x509_certificate(row.der).public_bytes(serialization.Encoding.PEM)
        return 200, {"Content-Type": "application/pem-certificate-chain"}, leaf + self.authority.chain_pem

    def revoke(self, req: Request) -> Response:
        payload = req.jws.json_payload()
        try:
            der = jose.b64decode(payload.get("certificate", ""))
            cert = x509.load_der_x509_certificate(der)
        except (ValueError, TypeError):
            raise Problem.malformed("certificate must be a base64url DER certificate") from None
        reason = payload.get("reason")
        if reason is not None and (not isinstance(reason, int) or (reason != 0 and reason not in profile.REASONS)):
            raise Problem.bad_revocation_reason(
                "allowed reasons: keyCompromise(1), affiliationChanged(3), superseded(4), "
                "cessationOfOperation(5), privilegeWithdrawn(9)")
        cert_id = format(cert.serial_number, "x")
        with self.store.read() as c:
            row = c.execute(sa.select(certificates).where(certificates.c.id == cert_id)).first()
        if row is None or row.der != der:
            raise Problem.not_found("this CA did not issue that certificate")
        if req.account is not None:
            if row.account_id != req.account["id"]:
                raise Problem.unauthorized("the certificate belongs to another account")
        else:
            assert req.jws.jwk is not None
            if profile.spki_der(public_key_of(req.jws.jwk)) != profile.spki_der(cert.public_key()):
                raise Problem.unauthorized("a jwk revocation must be signed with the certificate's key")
        now = self.clock()
        with self.store.tx() as c:
            n = c.execute(certificates.update().where(certificates.c.id == cert_id, certificates.c.revoked.is_(None))
                          .values(revoked=now, reason=reason or None)).rowcount
            if n != 1:
                raise Problem.already_revoked()
            self.store.audit(c, now=now, event="revoke", result="revoked", account_id=row.account_id,
                             serial=cert_id, reason=reason)
        self.publish_crl()
        return 200, {}, b""

    # --- CRL and ARI --------------------------------------------------------------

    def publish_crl(self) -> bytes:
        """Sign and store a new CRL with every revoked certificate still unexpired."""
        now = self.clock()
        for _attempt in range(5):
            with self.store.read() as c:
                last = c.execute(sa.select(sa.func.max(crls.c.number))).scalar() or 0
                revoked = [(int(r.id, 16), _dt.datetime.fromtimestamp(r.revoked, _dt.UTC), r.reason)
                           for r in c.execute(sa.select(certificates.c.id, certificates.c.revoked,
                                                        certificates.c.reason)
                                              .where(certificates.c.revoked.is_not(None),
                                                     certificates.c.not_after > now))]
            crl = profile.build_crl(self.authority, revoked, last + 1,
                                    _dt.datetime.fromtimestamp(int(now), _dt.UTC), self.settings.crl_days)
            der = crl.public_bytes(serialization.Encoding.DER)
            try:
                with self.store.tx() as c:
                    c.execute(crls.insert().values(number=last + 1, this_update=now, der=der))
                return der
            except sa.exc.IntegrityError:
                continue   # another process published number last+1 at the same moment
        raise Problem.server_internal("could not publish the CRL")

    def current_crl(self) -> bytes:
        now = self.clock()
        with self.store.read() as c:
            row = c.execute(sa.select(crls).order_by(crls.c.number.desc()).limit(1)).first()
        if row is None or row.this_update < now - 86400:   # refreshed daily, valid for crl_days
            return self.publish_crl()
        return bytes(row.der)

    def renewal_info(self, cert_id: str) -> Response:
        with self.store.read() as c:
            row = c.execute(sa.select(certificates).where(certificates.c.ari_id == cert_id)).first()
        if row is None:
            raise Problem.not_found("no certificate with that certID")
        now = self.clock()
        if row.revoked is not None:
            start, end = now - 3600, now          # renew now
        else:
            life = row.not_after - row.not_before
            start = row.not_before + life * 2 / 3
            end = row.not_before + life * 5 / 6
        return 200, {"Retry-After": "21600"}, {"suggestedWindow": {"start": _rfc3339(start), "end": _rfc3339(end)}}
