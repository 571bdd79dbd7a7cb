"""Caches of per-certificate values, keyed by the certificate object itself.

    >>> from autosmime.pki.certcache import per_certificate
    >>> @per_certificate()
    ... def subject(cert):
    ...     return cert.subject.rfc4514_string()

cryptography's ``Certificate`` hashes its whole DER on every ``hash()`` (about
1.4 us for a mailbox certificate), so a ``functools.lru_cache`` keyed by
certificates spends more on the lookup than many of the values it saves. These
caches key by ``id()`` and hold the certificate itself in the entry: while the
entry exists the object is alive, so its id cannot be reused by another
object, and an id that matches is the same certificate. A second object with
the same DER is a miss that computes the same value again: correct, only slower.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import wraps
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

__all__ = ["cert_der", "per_certificate", "unique_certificates"]

T = TypeVar("T")

_DEFAULT_SIZE = 256  # certificates a process works with at once: the user's, their peers', their CAs


def per_certificate(maxsize: int = _DEFAULT_SIZE) -> Callable[[Callable[[x509.Certificate], T]],
                                                                Callable[[x509.Certificate], T]]:
    """Decorate a pure function of one certificate with a bounded identity-keyed cache."""

    def decorate(fn: Callable[[x509.Certificate], T]) -> Callable[[x509.Certificate], T]:
        entries: dict[int, tuple[x509.Certificate, T]] = {}
        lock = threading.Lock()

        @wraps(fn)
        def cached(cert: x509.Certificate) -> T:
            hit = entries.get(id(cert))
            if hit is not None and hit[0] is cert:
                return hit[1]
            value = fn(cert)  # exceptions are not cached: the next call raises again
            with lock:
                entries[id(cert)] = (cert, value)
                while len(entries) > maxsize:  # oldest first: dicts keep insertion order
                    del entries[next(iter(entries))]
            return value

        cached.cache_clear = entries.clear  # type: ignore[attr-defined]
        return cached

    return decorate


@per_certificate()
def cert_der(cert: x509.Certificate) -> bytes:
    """The certificate's DER (the same bytes object each time, its hash computed once)."""
    return cert.public_bytes(Encoding.DER)


def unique_certificates(certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Each certificate once, in first-seen order: certificates are equal by their DER."""
    unique: dict[bytes, x509.Certificate] = {}
    for cert in certs:
        unique.setdefault(cert_der(cert), cert)
    return list(unique.values())
