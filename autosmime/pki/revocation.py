"""Revocation status from the issuing CA's CRL (HTTP distribution points only).

    >>> crl_status(cert, issuers) in ("good", "revoked", "unknown")             # doctest: +SKIP
    True
    >>> check = CrlChecker(cache_dir=home / "crl")                             # doctest: +SKIP
    >>> check(signer_cert, chain)                                              # doctest: +SKIP
    RevocationStatus(status='revoked', revoked_at=datetime(...), reason='keyCompromise', detail='...')

A CRL counts only when the certificate's issuer signed it and it is current
(nextUpdate not passed); anything else (no distribution point, the server
unreachable, a bad signature) is "unknown", never "good". Each sweep fetches a
CRL once for all the certificates that point to it. Used by the key directory
(its revocation sweep), by the agent before it encrypts to a recipient, and,
through :class:`CrlChecker`, by the message engine for a signer
(``smime.verify(..., revocation=...)``: docs/engine.md, "Revocation").
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger("autosmime.pki")

FETCH_TIMEOUT = 10.0
MAX_CRL_BYTES = 10 * 1024 * 1024
#: a cached CRL is fetched again after this long, though its nextUpdate may be days away (and used
#: until nextUpdate when the fetch fails): a revocation shows within the hour, offline reading still works
CACHE_MAX_AGE = _dt.timedelta(hours=1)


@dataclass(frozen=True)
class RevocationStatus:
    """A certificate's revocation status: ``good``, ``revoked`` or ``unknown``.

        >>> RevocationStatus("unknown", detail="the certificate names no CRL").status
        'unknown'

    ``revoked_at`` and ``reason`` (RFC 5280's name: ``keyCompromise``, ``superseded``, ...;
    None when the CRL entry gives none) only for ``revoked``; ``detail`` says why a status
    is unknown.
    """

    status: str
    revoked_at: _dt.datetime | None = None
    reason: str | None = None
    detail: str = ""


#: what the engine takes: (signer certificate, its validated chain leaf..root) -> status
RevocationCheck = Callable[[x509.Certificate, Sequence[x509.Certificate]], RevocationStatus]


def crl_url_of(cert: x509.Certificate) -> str | None:
    """The first http:// CRL distribution point of ``cert``."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.lower().startswith("http://"):
                return name.value
    return None


def fetch_crl(url: str) -> x509.CertificateRevocationList | None:
    import httpx  # when a CRL is fetched, not when the module loads

    try:
        with httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=False, trust_env=False) as client:
            response = client.get(url)
        if response.status_code != 200 or len(response.content) > MAX_CRL_BYTES:
            log.warning("CRL %s: HTTP %s", url, response.status_code)
            return None
        data = response.content
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except (httpx.HTTPError, ValueError) as e:
        log.warning("CRL %s: %s", url, e)
        return None


def status_in(cert: x509.Certificate, crl: x509.CertificateRevocationList | None,
              issuers: Sequence[x509.Certificate], now: _dt.datetime) -> str:
    return revocation_status(cert, crl, issuers, now).status


def revocation_status(cert: x509.Certificate, crl: x509.CertificateRevocationList | None,
                      issuers: Sequence[x509.Certificate], now: _dt.datetime) -> RevocationStatus:
    """``cert``'s status in ``crl``, which counts only when one of ``issuers`` (the one that
    issued ``cert``) signed it and it is current at ``now``."""
    if crl is None:
        return RevocationStatus("unknown", detail="no CRL")
    if crl.issuer != cert.issuer:
        return RevocationStatus("unknown", detail="the CRL is not the certificate issuer's")
    if crl.next_update_utc is not None and crl.next_update_utc < now:
        return RevocationStatus("unknown", detail=f"the CRL is stale (next update was {crl.next_update_utc:%Y-%m-%d})")
    for issuer in issuers:
        if issuer.subject != cert.issuer:
            continue
        try:
            if crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                break
        except (TypeError, ValueError):
            continue
    else:
        return RevocationStatus("unknown", detail="the CRL is not signed by the certificate's issuer")
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return RevocationStatus("good")
    try:
        reason: str | None = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
    except (x509.ExtensionNotFound, ValueError):
        reason = None
    return RevocationStatus("revoked", entry.revocation_date_utc, reason)


def crl_status(cert: x509.Certificate, issuers: Sequence[x509.Certificate],
               now: _dt.datetime | None = None) -> str:
    """good / revoked / unknown for ``cert`` from its CRL, fetched now."""
    url = crl_url_of(cert)
    if url is None:
        return "unknown"
    return status_in(cert, fetch_crl(url), issuers, now or _dt.datetime.now(_dt.UTC))


class CrlChecker:
    """A :data:`RevocationCheck` from CRLs: each CRL fetched at most once per checker (one run),
    and, with ``cache_dir``, kept there (``<sha256 of the URL>.der``): later runs use the kept copy
    for ``max_age`` (an hour), then fetch again; when that fetch fails, the kept copy serves until
    its nextUpdate.

        >>> check = CrlChecker(Path(home) / "crl")                  # doctest: +SKIP
        >>> check(cert, chain).status                               # doctest: +SKIP
        'good'

    Only a CRL that its certificate's issuer signed is written to the cache, so a forged
    answer cannot hold the real CRL off until the date it claims. ``fetch`` is
    :func:`fetch_crl` (the timeouts and size bound there) unless a test gives another.
    """

    def __init__(self, cache_dir: Path | None = None, *,
                 fetch: Callable[[str], x509.CertificateRevocationList | None] = fetch_crl,
                 max_age: _dt.timedelta = CACHE_MAX_AGE) -> None:
        self.cache_dir, self._fetch, self.max_age = cache_dir, fetch, max_age
        self._crls: dict[str, tuple[x509.CertificateRevocationList | None, bool]] = {}

    def __call__(self, cert: x509.Certificate, chain: Sequence[x509.Certificate]) -> RevocationStatus:
        url = crl_url_of(cert)
        if url is None:
            return RevocationStatus("unknown", detail="the certificate names no CRL (http) to check")
        now = _dt.datetime.now(_dt.UTC)
        crl, fresh = self._crl(url, now)
        status = None if crl is None else revocation_status(cert, crl, chain, now)
        if fresh and (status is None or status.status == "unknown"):
            kept = self._cached(url, now, any_age=True)  # offline, or a bad answer: the copy we verified before
            if kept is not None:
                crl, fresh, status = kept, False, revocation_status(cert, kept, chain, now)
                self._crls[url] = (kept, False)
        if crl is None or status is None:
            return RevocationStatus("unknown", detail=f"its CRL ({url}) could not be fetched")
        if fresh and status.status != "unknown":  # verified against the issuer: worth keeping
            self._crls[url] = (crl, False)
            self._store(url, crl)
        elif status.status == "unknown":
            status = RevocationStatus("unknown", detail=f"its CRL ({url}): {status.detail}")
        return status

    def _crl(self, url: str, now: _dt.datetime) -> tuple[x509.CertificateRevocationList | None, bool]:
        if url not in self._crls:
            cached = self._cached(url, now, any_age=False)
            self._crls[url] = (cached, False) if cached is not None else (self._fetch(url), True)
        return self._crls[url]

    def _path(self, url: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / (hashlib.sha256(url.encode()).hexdigest() + ".der")

    def _cached(self, url: str, now: _dt.datetime, *, any_age: bool) -> x509.CertificateRevocationList | None:
        """The cached CRL while current (before its nextUpdate); unless ``any_age``, only if fetched < max_age ago."""
        path = self._path(url)
        if path is None:
            return None
        try:
            fetched = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.UTC)
            crl = x509.load_der_x509_crl(path.read_bytes())
        except (OSError, ValueError):
            return None
        if crl.next_update_utc is None or crl.next_update_utc <= now:
            return None  # stale, or no date to trust it until: fetch again
        if not any_age and not _dt.timedelta(0) <= now - fetched < self.max_age:
            return None  # a CA may publish a revocation long before nextUpdate: ask again
        return crl

    def _store(self, url: str, crl: x509.CertificateRevocationList) -> None:
        from autosmime._files import write_private

        path = self._path(url)
        if path is None:
            return
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private(path, crl.public_bytes(serialization.Encoding.DER))
        except OSError as e:  # a cache: reading goes on without it
            log.warning("CRL cache %s: %s", path, e)
