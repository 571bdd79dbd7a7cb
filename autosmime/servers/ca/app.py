"""The CA's HTTP face: a Starlette app over :class:`~autosmime.servers.ca.service.CAService`.

    >>> from autosmime.servers.ca.app import make_app      # doctest: +SKIP
    >>> app = make_app(service)                             # any ASGI server; CAServer uses uvicorn

Endpoints (all under the URL the client used, e.g. http://127.0.0.1:8555):

==========================================  ==========================================
GET  /acme/directory                         the RFC 8555 directory (+ renewalInfo)
HEAD|GET /acme/new-nonce                     Replay-Nonce (200 / 204)
POST /acme/new-account                       jwk-signed; 201 new, 200 existing
POST /acme/acct/{id}                         account (POST-as-GET, contact, deactivate)
POST /acme/acct/{id}/orders                  the account's open orders
POST /acme/new-order                         identifiers of type "email" only
POST /acme/order/{id}                        order (POST-as-GET)
POST /acme/order/{id}/finalize               {"csr": ...}
POST /acme/authz/{id}                        authorization; the first fetch sends the mail
POST /acme/chall/{id}                        {} starts validation; POST-as-GET polls
POST /acme/cert/{id}                         PEM chain: leaf, issuing CA
POST /acme/revoke-cert                       kid of the owner, or jwk of the certificate key
POST /acme/key-change                        RFC 8555 §7.3.5
GET  /acme/renewal-info/{certID}             RFC 9773 ARI
GET  /crl/issuing.crl                        DER CRL, re-signed on every revocation
GET  /ca/issuing.der | /ca/root.pem          the CA certificates (AIA caIssuers / trust anchor)
==========================================  ==========================================

Every ACME response carries a fresh Replay-Nonce and ``Link: <directory>;rel="index"``;
errors are ``application/problem+json``. Handlers are plain functions that
Starlette runs in its thread pool (the database calls block).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route

from autosmime.servers.ca.errors import Problem
from autosmime.servers.ca.service import CAService, Request

log = logging.getLogger("autosmime.ca")

MAX_BODY = 64 * 1024


def _base(request: HTTPRequest) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def make_app(service: CAService) -> Starlette:
    def common_headers(request: HTTPRequest, nonce: str | None = None) -> dict[str, str]:
        return {"Replay-Nonce": nonce or service.new_nonce(), "Cache-Control": "no-store",
                "Link": f'<{_base(request)}/acme/directory>;rel="index"'}

    def problem_response(request: HTTPRequest, p: Problem, nonce: str | None = None) -> Response:
        headers = common_headers(request, p.headers.get("Replay-Nonce") or nonce) | p.headers
        return Response(json.dumps(p.to_json()), status_code=p.status, headers=headers,
                        media_type="application/problem+json")

    def reply(request: HTTPRequest, result: tuple[int, dict[str, str], Any], nonce: str | None = None) -> Response:
        status, headers, body = result
        headers = common_headers(request, nonce) | headers
        if isinstance(body, bytes):
            media = headers.pop("Content-Type", "application/octet-stream")
            return Response(body, status_code=status, headers=headers, media_type=media)
        media = "application/problem+json" if status >= 400 else "application/json"
        return Response(json.dumps(body), status_code=status, headers=headers, media_type=media)

    def acme_post(handler: Callable[..., tuple[int, dict[str, str], Any]], *, allow_jwk: bool = False,
                  require_account: bool = True, pass_url: bool = False) -> Callable[[HTTPRequest], Any]:
        async def endpoint(request: HTTPRequest) -> Response:
            from starlette.concurrency import run_in_threadpool

            declared = request.headers.get("content-length", "0")
            if not declared.isdigit() or int(declared) > MAX_BODY:
                return problem_response(request, Problem("malformed", "request too large or without a length", 413))
            body = await request.body()

            def run() -> Response:
                nonce = None
                try:
                    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
                    if ctype != "application/jose+json":
                        raise Problem.malformed("Content-Type must be application/jose+json")
                    if len(body) > MAX_BODY:
                        raise Problem.malformed("request too large")
                    url = str(request.url)
                    req = service.authenticate(body, url, _base(request), allow_jwk=allow_jwk,
                                               require_account=require_account)
                    nonce = req.next_nonce
                    args = dict(request.path_params)
                    if pass_url:
                        args["outer_url"] = url
                    return reply(request, handler(req, **args), nonce)
                except Problem as p:
                    return problem_response(request, p, nonce)
                except Exception:
                    log.exception("internal error in %s", request.url.path)
                    return problem_response(request, Problem.server_internal("internal error"), nonce)

            return await run_in_threadpool(run)

        return endpoint

    def directory(request: HTTPRequest) -> Response:
        return Response(json.dumps(service.directory(_base(request))), media_type="application/json")

    def new_nonce(request: HTTPRequest) -> Response:
        status = 204 if request.method == "GET" else 200
        return Response(status_code=status, headers=common_headers(request))

    def renewal_info(request: HTTPRequest) -> Response:
        try:
            return reply(request, service.renewal_info(request.path_params["cert_id"]))
        except Problem as p:
            return problem_response(request, p)

    def crl(request: HTTPRequest) -> Response:
        return Response(service.current_crl(), media_type="application/pkix-crl")

    def issuing_der(request: HTTPRequest) -> Response:
        return Response(service.authority.issuing_cert.public_bytes(serialization.Encoding.DER),
                        media_type="application/pkix-cert")

    def root_pem(request: HTTPRequest) -> Response:
        return Response(service.authority.root_cert.public_bytes(serialization.Encoding.PEM),
                        media_type="application/x-pem-file")

    def revoke(req: Request) -> tuple[int, dict[str, str], Any]:
        return service.revoke(req)

    routes = [
        Route("/acme/directory", directory, methods=["GET"]),
        Route("/acme/new-nonce", new_nonce, methods=["GET", "HEAD"]),
        Route("/acme/new-account", acme_post(service.new_account, allow_jwk=True, require_account=False),
              methods=["POST"]),
        Route("/acme/acct/{acct_id}", acme_post(service.account), methods=["POST"]),
        Route("/acme/acct/{acct_id}/orders", acme_post(service.account_orders), methods=["POST"]),
        Route("/acme/new-order", acme_post(service.new_order), methods=["POST"]),
        Route("/acme/order/{order_id}", acme_post(service.order), methods=["POST"]),
        Route("/acme/order/{order_id}/finalize", acme_post(service.finalize), methods=["POST"]),
        Route("/acme/authz/{authz_id}", acme_post(service.authorization), methods=["POST"]),
        Route("/acme/chall/{authz_id}", acme_post(service.challenge), methods=["POST"]),
        Route("/acme/cert/{cert_id}", acme_post(service.certificate), methods=["POST"]),
        Route("/acme/revoke-cert", acme_post(revoke, allow_jwk=True, require_account=False), methods=["POST"]),
        Route("/acme/key-change", acme_post(service.key_change, pass_url=True), methods=["POST"]),
        Route("/acme/renewal-info/{cert_id}", renewal_info, methods=["GET"]),
        Route("/crl/issuing.crl", crl, methods=["GET"]),
        Route("/ca/issuing.der", issuing_der, methods=["GET"]),
        Route("/ca/root.pem", root_pem, methods=["GET"]),
    ]
    return Starlette(routes=routes)
