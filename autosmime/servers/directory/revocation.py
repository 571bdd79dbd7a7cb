"""Revocation status from the issuing CA's CRL: moved to :mod:`autosmime.pki.revocation` (the agent checks it too)."""

from autosmime.pki.revocation import crl_status, crl_url_of, fetch_crl, status_in

__all__ = ["crl_status", "crl_url_of", "fetch_crl", "status_in"]
