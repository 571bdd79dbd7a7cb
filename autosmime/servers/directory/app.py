"""The directory's HTTP API (Starlette).

    >>> from starlette.testclient import TestClient
    >>> client = TestClient(make_app(Directory(config)))                 # doctest: +SKIP
    >>> client.get("/v1/certs/by-email/bob@example.test").status_code    # doctest: +SKIP
    404

Routes (JSON unless said otherwise; errors are ``{"error": code, "detail": text}``):

    GET  /v1/certs/by-email/{address}     certificates + status + inclusion proofs + checkpoint; 404 if none
    GET  /v1/certs/by-sha256/{hex}        the same for one certificate
    POST /v1/publish                      {"chain_pem", "address"?} -> 202 challenge (mail token and/or proof)
    POST /v1/unpublish                    {"address", "sha256", "via": "mail"|"proof"} -> 202 challenge
    POST /v1/prefer                       {"address", "sha256"} -> 202 challenge (proof)
    POST /v1/{op}/{request}/confirm       {"token"?, "proof"?: {"signed_b64"} | {"statement_b64"}} -> 200 + inclusion
    POST /v1/monitor                      {"address", "time", "signed_b64"} -> every event of that address
    GET  /v1/log/checkpoint               the latest signed checkpoint (text/plain, C2SP signed note)
    GET  /v1/log/key                      the log's origin and Ed25519 public key
    GET  /v1/log/consistency?from=m&to=n  RFC 9162 consistency proof + the checkpoint of size n
    GET  /healthz                         "ok" (no database)

A lookup answer (200):

    {"address": ..., "tree_size": n, "checkpoint": "<C2SP signed note of size n>",
     "certificates": [{"address", "sha256", "der_b64", "issuers_b64": [...], "not_before", "not_after",
                       "preferred", "status": {"state": "good|revoked|unknown", "checked_at"},
                       "leaf_index", "leaf_b64", "inclusion": [base64 hashes, RFC 9162 order]}, ...]}

owner's preference first, then newest. The leaf is the canonical JSON event
``{"cert", "idx", "label", "op": "publish", "ts", "v": 1}`` with label =
SHA-256("smimedir/label/v1" || address) (autosmime.pki.select.address_label).

The 404 of a lookup is one constant body for never-published, withdrawn and
unknown addresses alike. Lookups carry ETag (If-None-Match answers 304) and
Cache-Control. Every request is counted against per-client limits, lookups by
e-mail also against the looked-up address, in the database (429 + Retry-After).
There is deliberately no listing or search route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from autosmime.errors import UsageError
from autosmime.pki.select import normalize_address
from autosmime.servers.directory.ratelimit import hashed
from autosmime.servers.directory.rawsql import Limit
from autosmime.servers.directory.service import Answer, ApiError, Directory

log = logging.getLogger("autosmime.directory")

_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_BODY = 256 * 1024
NOT_FOUND_BODY = b'{"error":"not_found","detail":"no certificate is published for this request"}'
LOOKUP_CACHE = "public, max-age=300"
NOT_FOUND_CACHE = "public, max-age=600"


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":")).encode()
    return Response(body, status, headers=headers, media_type="application/json")


def _error(e: ApiError) -> Response:
    headers = {"Retry-After": str(e.retry_after)} if e.retry_after else None
    return _json({"error": e.code, "detail": e.detail}, e.status, headers)


def make_app(directory: Directory) -> Starlette:
    limits = directory.config.limits
    sql = directory.sql

    def client_key(request: Request) -> str:
        return f"c:{request.client.host if request.client else '-'}"

    def keys(request: Request, extra: list[Limit], write: bool = False) -> list[Limit]:
        n, window = limits.writes_per_client if write else limits.lookups_per_client
        return [(("w" if write else "r") + client_key(request), n, window), *extra]

    def check(request: Request, extra: list[Limit], write: bool = False) -> None:
        """Count the request (committed at once); ApiError 429 when over a limit."""
        counted = keys(request, extra, write)
        retry = sql.read(lambda cur: sql.hit(cur, counted, int(time.time())))
        if retry is not None:
            raise ApiError(429, "rate_limited", "too many requests; retry later", retry_after=retry)

    def counted_lookup(request: Request, column: str, value: str, extra: list[Limit]) -> Answer | None:
        counted = keys(request, extra)
        # One pooled connection for the count and the answer, on PostgreSQL one round trip for both.
        return sql.read(lambda cur: directory.answer(cur, column, value, counted))

    async def read(request: Request, column: str, value: str, extra: list[Limit]) -> Answer | None:
        # Inline on the event loop, also for PostgreSQL: a thread hop per lookup cost more server CPU (1,680 ->
        # 1,120 lookups/s per core in bench_directory) than overlapping the database round trips saved.
        return counted_lookup(request, column, value, extra)

    def lookup_response(request: Request, answer: Answer | None) -> Response:
        if answer is None:
            return Response(NOT_FOUND_BODY, 404, headers={"Cache-Control": NOT_FOUND_CACHE},
                            media_type="application/json")
        headers = {"ETag": answer.etag, "Cache-Control": LOOKUP_CACHE}
        if request.headers.get("if-none-match") == answer.etag:
            return Response(status_code=304, headers=headers)
        return Response(answer.body, 200, headers=headers, media_type="application/json")

    async def by_email(request: Request) -> Response:
        try:
            address = normalize_address(request.path_params["address"])
        except UsageError as e:
            return _error(ApiError(400, "bad_address", str(e)))
        try:
            answer = await read(request, "address", address, [(hashed("a", address), *limits.lookups_per_address)])
        except ApiError as e:
            return _error(e)
        return lookup_response(request, answer)

    async def by_sha256(request: Request) -> Response:
        digest = request.path_params["digest"].lower()
        if not _HEX64.fullmatch(digest):
            return _error(ApiError(400, "bad_digest", "expected 64 hex digits"))
        try:
            answer = await read(request, "sha256", digest, [])
        except ApiError as e:
            return _error(e)
        return lookup_response(request, answer)

    async def body_of(request: Request) -> dict:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, "too_large", "request body too large")
        try:
            data = json.loads(raw)
        except ValueError:
            raise ApiError(400, "bad_request", "the body is not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "bad_request", "the body is not a JSON object")
        return data

    def field(data: dict, name: str, kind: type = str, required: bool = True):
        value = data.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, kind):
            raise ApiError(400, "bad_request", f"missing or invalid field {name!r}")
        return value

    async def publish(request: Request) -> Response:
        try:
            data = await body_of(request)
            check(request, [], write=True)
            chain_pem = field(data, "chain_pem")
            address = field(data, "address", required=False)
            # Validation may fetch a CRL and the challenge sends mail: off the event loop.
            answer = await run_in_threadpool(directory.request_publish, chain_pem, address,
                                             client_key(request))
        except ApiError as e:
            return _error(e)
        return _json(answer, 202)

    async def unpublish(request: Request) -> Response:
        try:
            data = await body_of(request)
            address, digest, via = field(data, "address"), field(data, "sha256"), field(data, "via")
            check(request, [], write=True)
            answer = await run_in_threadpool(directory.request_unpublish, address, digest.lower(), via)
        except ApiError as e:
            return _error(e)
        return _json(answer, 202)

    async def prefer(request: Request) -> Response:
        try:
            data = await body_of(request)
            check(request, [], write=True)
            answer = await run_in_threadpool(directory.request_prefer, field(data, "address"),
                                             field(data, "sha256").lower())
        except ApiError as e:
            return _error(e)
        return _json(answer, 202)

    async def confirm(request: Request) -> Response:
        op = request.path_params["op"]
        if op not in ("publish", "unpublish", "prefer"):
            return _error(ApiError(404, "not_found", "no such operation"))
        try:
            data = await body_of(request)
            check(request, [], write=True)
            token = field(data, "token", required=False)
            proof = field(data, "proof", dict, required=False)
            answer = await run_in_threadpool(directory.confirm, op, request.path_params["request"], token, proof)
        except ApiError as e:
            return _error(e)
        return _json(answer)

    async def monitor(request: Request) -> Response:
        import base64

        try:
            data = await body_of(request)
            check(request, [], write=True)
            try:
                signed = base64.b64decode(field(data, "signed_b64"), validate=True)
            except ValueError:
                raise ApiError(400, "bad_request", "signed_b64 is not base64") from None
            answer = await run_in_threadpool(directory.monitor, field(data, "address"), field(data, "time", int),
                                             signed)
        except ApiError as e:
            return _error(e)
        return _json(answer, headers={"Cache-Control": "no-store"})

    async def checkpoint(request: Request) -> Response:
        try:
            check(request, [])
        except ApiError as e:
            return _error(e)
        return PlainTextResponse(directory.checkpoint(), headers={"Cache-Control": "no-cache"})

    async def log_key(request: Request) -> Response:
        return _json(directory.log_key(), headers={"Cache-Control": "public, max-age=86400"})

    async def consistency(request: Request) -> Response:
        try:
            check(request, [])
            try:
                old = int(request.query_params["from"])
                new = int(request.query_params["to"]) if "to" in request.query_params else None
            except (KeyError, ValueError):
                raise ApiError(400, "bad_range", "from (and optionally to) must be integers") from None
            answer = directory.consistency(old, new)
        except ApiError as e:
            return _error(e)
        return _json(answer)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None
        if directory.config.crl_interval > 0:
            task = asyncio.create_task(_sweeper(directory))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    routes = [
        Route("/v1/certs/by-email/{address}", by_email, methods=["GET"]),
        Route("/v1/certs/by-sha256/{digest}", by_sha256, methods=["GET"]),
        Route("/v1/publish", publish, methods=["POST"]),
        Route("/v1/unpublish", unpublish, methods=["POST"]),
        Route("/v1/prefer", prefer, methods=["POST"]),
        Route("/v1/{op}/{request}/confirm", confirm, methods=["POST"]),
        Route("/v1/monitor", monitor, methods=["POST"]),
        Route("/v1/log/checkpoint", checkpoint, methods=["GET"]),
        Route("/v1/log/key", log_key, methods=["GET"]),
        Route("/v1/log/consistency", consistency, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _sweeper(directory: Directory) -> None:
    while True:
        try:
            await run_in_threadpool(directory.sweep)
        except Exception:  # a bad CRL server must not stop the next sweep
            log.exception("revocation sweep failed")
        await asyncio.sleep(directory.config.crl_interval)
