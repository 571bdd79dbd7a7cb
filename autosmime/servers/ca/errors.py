"""ACME problem documents (RFC 8555 §6.7): the one exception type every handler raises.

    >>> from autosmime.servers.ca.errors import Problem
    >>> p = Problem.bad_nonce("stale nonce")
    >>> p.status, p.to_json()["type"]
    (400, 'urn:ietf:params:acme:error:badNonce')

A :class:`Problem` becomes an ``application/problem+json`` response with its
HTTP status; a ``badNonce`` response carries a fresh Replay-Nonce (every
error response does). Details are for the client's user and never carry
secrets or token values.
"""

from __future__ import annotations

from typing import Any

ACME_ERROR = "urn:ietf:params:acme:error:"


class Problem(Exception):
    """An RFC 7807 / RFC 8555 problem: ``typ`` is the short name (``badNonce``...)."""

    def __init__(self, typ: str, detail: str, status: int = 400, *, headers: dict[str, str] | None = None,
                 subproblems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{typ}: {detail}")
        self.typ = typ
        self.detail = detail
        self.status = status
        self.headers = headers or {}
        self.subproblems = subproblems

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": ACME_ERROR + self.typ, "detail": self.detail, "status": self.status}
        if self.subproblems:
            doc["subproblems"] = self.subproblems
        return doc

    # One constructor per problem type the server uses, so the names are spelled once.
    @classmethod
    def malformed(cls, detail: str) -> Problem:
        return cls("malformed", detail)

    @classmethod
    def bad_nonce(cls, detail: str = "the nonce is unknown, used or expired", *,
                  headers: dict[str, str] | None = None) -> Problem:
        return cls("badNonce", detail, headers=headers)

    @classmethod
    def bad_signature_algorithm(cls, detail: str) -> Problem:
        return cls("badSignatureAlgorithm", detail)

    @classmethod
    def unauthorized(cls, detail: str) -> Problem:
        return cls("unauthorized", detail, 403)

    @classmethod
    def account_does_not_exist(cls, detail: str = "no account for this key") -> Problem:
        return cls("accountDoesNotExist", detail, 400)

    @classmethod
    def not_found(cls, detail: str = "no such resource") -> Problem:
        return cls("malformed", detail, 404)

    @classmethod
    def unsupported_identifier(cls, detail: str) -> Problem:
        return cls("unsupportedIdentifier", detail)

    @classmethod
    def rejected_identifier(cls, detail: str) -> Problem:
        return cls("rejectedIdentifier", detail)

    @classmethod
    def bad_csr(cls, detail: str) -> Problem:
        return cls("badCSR", detail)

    @classmethod
    def bad_public_key(cls, detail: str) -> Problem:
        return cls("badPublicKey", detail)

    @classmethod
    def order_not_ready(cls, detail: str) -> Problem:
        return cls("orderNotReady", detail, 403)

    @classmethod
    def rate_limited(cls, detail: str, retry_after: int) -> Problem:
        return cls("rateLimited", detail, 429, headers={"Retry-After": str(retry_after)})

    @classmethod
    def already_revoked(cls, detail: str = "the certificate is already revoked") -> Problem:
        return cls("alreadyRevoked", detail)

    @classmethod
    def bad_revocation_reason(cls, detail: str) -> Problem:
        return cls("badRevocationReason", detail)

    @classmethod
    def server_internal(cls, detail: str) -> Problem:
        return cls("serverInternal", detail, 500)
