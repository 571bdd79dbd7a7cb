"""HTTP client of the key directory: one method per route, typed errors, nothing verified here.

    >>> from autosmime.exchange.client import DirectoryClient
    >>> with DirectoryClient("http://127.0.0.1:8480") as d:        # doctest: +SKIP
    ...     answer = d.lookup("bob@example.test")

Answers are returned as the server's JSON; :mod:`autosmime.exchange.transparency`
checks them against the log before anything uses them. Errors: NotPublished
(404 on a lookup), DirectoryRateLimited (429, with ``retry_after``), PublishRejected
(any other refusal, with the server's reason), DirectoryUnreachable (no answer),
DirectoryError (an answer that is not the API's).
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import quote

import httpx

from autosmime.errors import DirectoryError, DirectoryRateLimited, DirectoryUnreachable, NotPublished, PublishRejected
from autosmime.mailbox.text import server_text

TIMEOUT = 10.0


class DirectoryClient:
    def __init__(self, url: str, *, timeout: float = TIMEOUT, transport: httpx.BaseTransport | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise DirectoryError(f"the directory URL must start with http:// or https://, not {url!r}")
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False, transport=transport,
                                  headers={"User-Agent": "autosmime"})

    def __enter__(self) -> DirectoryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- transport ---------------------------------------------------------------------

    def _request(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
                 headers: dict | None = None, lookup: bool = False) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.TimeoutException:
            raise DirectoryUnreachable(f"the key directory {self.url} cannot be reached: timed out") from None
        except httpx.HTTPError as e:
            raise DirectoryUnreachable(f"the key directory {self.url} cannot be reached: {_why(e)}") from None
        if response.status_code in (200, 202, 304):
            return response
        detail = _detail(response)
        if response.status_code == 429:
            try:
                retry = int(response.headers.get("Retry-After", "60"))
            except ValueError:
                retry = 60
            raise DirectoryRateLimited(f"{self.url}: rate limited, retry in {retry} s", retry)
        if response.status_code == 404 and lookup:
            raise NotPublished("no certificate is published for this address")
        if 400 <= response.status_code < 500:
            raise PublishRejected(f"{self.url}: {detail}")
        raise DirectoryError(f"{self.url}: HTTP {response.status_code}: {detail}")

    def _json(self, response: httpx.Response) -> dict:
        try:
            data = response.json()
        except ValueError:
            raise DirectoryError(f"{self.url}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise DirectoryError(f"{self.url}: the answer is not a JSON object")
        return data

    # --- lookups -------------------------------------------------------------------------

    def lookup(self, address: str, etag: str | None = None) -> tuple[dict | None, str | None]:
        """(answer, ETag); answer None when ``etag`` still matches (304). NotPublished on 404."""
        headers = {"If-None-Match": etag} if etag else None
        response = self._request("GET", f"/v1/certs/by-email/{quote(address, safe='@')}", headers=headers, lookup=True)
        if response.status_code == 304:
            return None, etag
        return self._json(response), response.headers.get("ETag")

    def by_sha256(self, digest: str) -> dict:
        return self._json(self._request("GET", f"/v1/certs/by-sha256/{digest}", lookup=True))

    def checkpoint(self) -> str:
        return self._request("GET", "/v1/log/checkpoint").text

    def log_key(self) -> dict:
        return self._json(self._request("GET", "/v1/log/key"))

    def consistency(self, old: int, new: int) -> dict:
        return self._json(self._request("GET", "/v1/log/consistency", params={"from": old, "to": new}))

    # --- changes ---------------------------------------------------------------------------

    def publish(self, chain_pem: str, address: str | None = None) -> dict:
        body = {"chain_pem": chain_pem, **({"address": address} if address else {})}
        return self._json(self._request("POST", "/v1/publish", json=body))

    def unpublish(self, address: str, sha256_hex: str, via: str) -> dict:
        return self._json(self._request("POST", "/v1/unpublish",
                                        json={"address": address, "sha256": sha256_hex, "via": via}))

    def prefer(self, address: str, sha256_hex: str) -> dict:
        return self._json(self._request("POST", "/v1/prefer", json={"address": address, "sha256": sha256_hex}))

    def confirm(self, op: str, request_id: str, *, token: str | None = None, proof: dict | None = None) -> dict:
        body: dict = {}
        if token is not None:
            body["token"] = token
        if proof is not None:
            body["proof"] = proof
        return self._json(self._request("POST", f"/v1/{op}/{quote(request_id, safe='')}/confirm", json=body))

    def monitor(self, address: str, unix_time: int, signed: bytes) -> dict:
        return self._json(self._request("POST", "/v1/monitor", json={
            "address": address, "time": unix_time, "signed_b64": base64.b64encode(signed).decode()}))


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
        return str(data.get("detail") or data.get("error") or response.status_code)
    except ValueError:
        return f"HTTP {response.status_code}"


def _why(e: httpx.HTTPError) -> str:
    """What went wrong, in the words the mail servers' errors use ("connection refused", not "[Errno 111] ...")."""
    cause = e.__cause__ or e.__context__
    if isinstance(cause, ConnectionRefusedError) or "Connection refused" in str(e):
        return "connection refused"
    return server_text(re.sub(r"^\[Errno -?\d+\] ", "", str(e)), 200) or type(e).__name__
