"""SMIMEA (RFC 8162) certificates from DNS, for domains that publish them.

    >>> from autosmime.exchange.smimea import smimea_name, smimea_certificates
    >>> smimea_name("hugh@example.com")
    'c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._smimecert.example.com'

Only full certificates (selector 0 = Cert, matching type 0 = exact) can be
used to encrypt; hash-only records (matching 1/2) can only confirm a
certificate found elsewhere, and are skipped here. Without DNSSEC the answer
is only as good as the resolver path; ``require_ad`` keeps only answers the
(validating) resolver marked authenticated.
"""

from __future__ import annotations

import hashlib

from cryptography import x509

from autosmime.pki.select import normalize_address


def smimea_name(address: str) -> str:
    # RFC 8162 3: the local part hashed as given (before normalisation changes its case).
    local, _, domain = address.strip().rpartition("@")
    digest = hashlib.sha256(local.encode()).hexdigest()[:56]
    return f"{digest}._smimecert.{normalize_address(address).rpartition('@')[2]}"


def smimea_certificates(address: str, *, nameservers: list[str] | None = None, port: int = 53,
                        require_ad: bool = False, timeout: float = 3.0) -> list[x509.Certificate]:
    """Full certificates from ``address``'s SMIMEA records ([] when none, or DNS fails)."""
    import dns.exception
    import dns.flags
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=nameservers is None)
    if nameservers is not None:
        resolver.nameservers = nameservers
        resolver.port = port
    resolver.lifetime = timeout
    resolver.use_edns(0, dns.flags.DO, 1232)
    try:
        answer = resolver.resolve(smimea_name(address), "SMIMEA", raise_on_no_answer=False)
    except (dns.exception.DNSException, OSError):
        return []
    if answer.rrset is None or (require_ad and not answer.response.flags & dns.flags.AD):
        return []
    out = []
    for rr in answer.rrset:
        if rr.selector == 0 and rr.mtype == 0:
            try:
                out.append(x509.load_der_x509_certificate(rr.cert))
            except ValueError:
                continue
    return out
