"""Revocation status from the issuing CA's CRL (HTTP distribution points only).

    >>> status, checked = crl_status(cert, issuers)          # doctest: +SKIP
    >>> status in ("good", "revoked", "unknown")
    True

A CRL counts only when the certificate's issuer signed it and it is current
(nextUpdate not passed); anything else (no distribution point, the server
unreachable, a bad signature) is "unknown", never "good". Each sweep fetches a
CRL once for all the certificates that point to it. Used by the key directory
(its revocation sweep) and by the agent before it encrypts to a recipient.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Sequence

from cryptography import x509

log = logging.getLogger("autosmime.pki")

FETCH_TIMEOUT = 10.0
MAX_CRL_BYTES = 10 * 1024 * 1024


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
    if crl is None or crl.issuer != cert.issuer:
        return "unknown"
    if crl.next_update_utc is not None and crl.next_update_utc < now:
        return "unknown"
    for issuer in issuers:
        if issuer.subject != cert.issuer:
            continue
        try:
            if crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                break
        except (TypeError, ValueError):
            continue
    else:
        return "unknown"
    return "revoked" if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None else "good"


def crl_status(cert: x509.Certificate, issuers: Sequence[x509.Certificate],
               now: _dt.datetime | None = None) -> str:
    """good / revoked / unknown for ``cert`` from its CRL, fetched now."""
    url = crl_url_of(cert)
    if url is None:
        return "unknown"
    return status_in(cert, fetch_crl(url), issuers, now or _dt.datetime.now(_dt.UTC))
