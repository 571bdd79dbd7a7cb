"""Checking ACME request JWS (RFC 8555 §6.2-6.5) with josepy.

    >>> from autosmime.servers.ca.jws import parse_jws               # doctest: +SKIP
    >>> req = parse_jws(body, "http://127.0.0.1:8555/acme/new-order")  # doctest: +SKIP
    >>> req.kid, req.payload                                          # doctest: +SKIP

Rules enforced here: flattened JSON serialisation only, one signature, no
unprotected header; ``alg`` one of RS256/ES256/ES384/ES512 (never ``none`` or
a MAC); ``nonce`` and ``url`` in the protected header; ``url`` equal to the
URL the request was sent to; exactly one of ``jwk`` / ``kid``. The signature
is verified by the caller once it knows the key (:meth:`ParsedJWS.verify`),
and only a request whose signature verifies consumes its nonce, so nobody can
burn a client's nonces with forged requests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import josepy as jose
from acme import jws as acme_jws

from autosmime.servers.ca.errors import Problem

ALGORITHMS = {"RS256": jose.RS256, "ES256": jose.ES256, "ES384": jose.ES384, "ES512": jose.ES512}


@dataclass
class ParsedJWS:
    protected: dict[str, Any]
    payload: bytes                  # b"" for POST-as-GET
    nonce: str
    url: str
    kid: str | None
    jwk: jose.JWK | None
    _jws: jose.JWS

    def verify(self, key: jose.JWK) -> None:
        """Raise ``malformed`` unless the signature verifies with ``key``."""
        alg = ALGORITHMS[self.protected["alg"]]
        try:
            ok = self._jws.verify(key)
        except Exception:  # a key of the wrong type for alg, or a mangled signature
            ok = False
        if not ok or not _key_fits(alg, key):
            raise Problem.malformed("JWS signature does not verify")

    def json_payload(self) -> dict[str, Any]:
        if not self.payload:
            raise Problem.malformed("this request needs a JSON payload, not POST-as-GET")
        try:
            obj = json.loads(self.payload)
        except ValueError:
            raise Problem.malformed("the payload is not JSON") from None
        if not isinstance(obj, dict):
            raise Problem.malformed("the payload must be a JSON object")
        return obj


def _key_fits(alg: jose.JWASignature, key: jose.JWK) -> bool:
    if alg.name.startswith("RS"):
        return isinstance(key, jose.JWKRSA)
    return isinstance(key, jose.JWKEC)


def _b64json(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, str):
        raise Problem.malformed(f"JWS {what} must be a base64url string")
    try:
        obj = json.loads(jose.b64decode(value))
    except (ValueError, TypeError):
        raise Problem.malformed(f"JWS {what} is not base64url JSON") from None
    if not isinstance(obj, dict):
        raise Problem.malformed(f"JWS {what} must be a JSON object")
    return obj


def parse_jws(body: bytes, request_url: str, *, inner: bool = False) -> ParsedJWS:
    """Parse and check everything but the signature. ``inner``: the keyChange inner JWS (no nonce)."""
    try:
        obj = json.loads(body)
    except ValueError:
        raise Problem.malformed("the request body is not JSON") from None
    if not isinstance(obj, dict) or set(obj) != {"protected", "payload", "signature"}:
        raise Problem.malformed("a flattened JWS with protected, payload and signature only is required")
    protected = _b64json(obj["protected"], "protected header")
    alg = protected.get("alg")
    if alg not in ALGORITHMS:
        raise Problem.bad_signature_algorithm(f"unsupported JWS algorithm {alg!r}")
    nonce = protected.get("nonce")
    if inner:
        if nonce is not None:
            raise Problem.malformed("the inner keyChange JWS must not carry a nonce")
        nonce = ""
    elif not isinstance(nonce, str) or not nonce:
        raise Problem.bad_nonce("the JWS protected header has no nonce")
    url = protected.get("url")
    if not isinstance(url, str) or url != request_url:
        raise Problem.unauthorized("the JWS url header does not match the request URL")
    has_jwk, has_kid = "jwk" in protected, "kid" in protected
    if has_jwk == has_kid:
        raise Problem.malformed("exactly one of jwk and kid is required in the protected header")
    jwk = None
    if has_jwk:
        try:
            jwk = cast(jose.JWK, jose.JWK.from_json(protected["jwk"]))
        except (jose.DeserializationError, TypeError, ValueError, KeyError):
            raise Problem.malformed("unreadable jwk") from None
        if not isinstance(jwk, jose.JWKRSA | jose.JWKEC) or _is_private(protected["jwk"]):
            raise Problem.bad_signature_algorithm("only public RSA and EC account keys are accepted")
    kid = protected.get("kid")
    if has_kid and not isinstance(kid, str):
        raise Problem.malformed("kid must be a string")
    if not isinstance(obj["payload"], str) or not isinstance(obj["signature"], str):
        raise Problem.malformed("payload and signature must be base64url strings")
    try:
        parsed = acme_jws.JWS.from_json(obj)
        payload = jose.b64decode(obj["payload"]) if obj["payload"] else b""
    except (jose.DeserializationError, ValueError, TypeError):
        raise Problem.malformed("unreadable JWS") from None
    return ParsedJWS(protected=protected, payload=payload, nonce=nonce, url=url, kid=kid, jwk=jwk, _jws=parsed)


def _is_private(jwk_json: Any) -> bool:
    return isinstance(jwk_json, dict) and "d" in jwk_json


def thumbprint(key: jose.JWK) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url (what keyAuthorization uses)."""
    return jose.b64encode(key.thumbprint()).decode("ascii")
