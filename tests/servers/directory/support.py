"""Helpers for the directory and exchange tests: a small PKI, certificate variants, a client-side proof maker.

The certificates come from autosmime.pki.profiles; ``reissue`` re-signs one
with a changed key usage or an added CRL distribution point, for the cases the
mailbox profile does not make (encryption-only keys, revocable certificates).
"""

from __future__ import annotations

import datetime as _dt
import http.server
import threading
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization  # serialization is used by the tests too

from autosmime.exchange.proofs import answer_challenge
from autosmime.pki.certs import fingerprint  # noqa: F401 (re-exported for the tests)
from autosmime.pki.profiles import PrivateKey, make_ca, make_mailbox_cert, new_key
from autosmime.servers.directory.service import Config, Limits


def pem(*certs: x509.Certificate) -> str:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs).decode()


@dataclass
class User:
    address: str
    key: PrivateKey
    cert: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def chain_pem(self) -> str:
        return pem(self.cert, *self.chain)


class Pki:
    """A trusted CA, a second trusted CA that gets the fast path, and an untrusted one."""

    def __init__(self) -> None:
        self.ca_key, self.ca = make_ca("Directory Test CA", new_key("ec"))
        self.fast_key, self.fast_ca = make_ca("Directory Test autosmime CA", new_key("ec"))
        self.evil_key, self.evil_ca = make_ca("Untrusted CA", new_key("ec"))

    def user(self, address: str, *, kind: str = "ec", issuer: str = "ca", not_before: _dt.datetime | None = None,
             encryption_only: bool = False, crl_url: str | None = None) -> User:
        ca_key, ca = {"ca": (self.ca_key, self.ca), "fast": (self.fast_key, self.fast_ca),
                      "evil": (self.evil_key, self.evil_ca)}[issuer]
        key = new_key(kind)  # type: ignore[arg-type]
        cert = make_mailbox_cert(address, key.public_key(), ca_key, ca, not_before=not_before)
        if encryption_only or crl_url:
            cert = reissue(cert, ca_key, encryption_only=encryption_only, crl_url=crl_url)
        return User(address, key, cert, [ca])


def reissue(cert: x509.Certificate, ca_key: PrivateKey, *, encryption_only: bool = False, signing_only: bool = False,
            crl_url: str | None = None) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
               .public_key(cert.public_key()).serial_number(cert.serial_number)
               .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc))
    for ext in cert.extensions:
        value = ext.value
        if encryption_only and isinstance(value, x509.KeyUsage):
            value = x509.KeyUsage(digital_signature=False, content_commitment=False,
                                  key_encipherment=value.key_encipherment, data_encipherment=False,
                                  key_agreement=value.key_agreement, key_cert_sign=False, crl_sign=False,
                                  encipher_only=False, decipher_only=False)
        if signing_only and isinstance(value, x509.KeyUsage):
            value = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                  data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                                  encipher_only=False, decipher_only=False)
        builder = builder.add_extension(value, ext.critical)
    if crl_url:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def make_crl(ca_key: PrivateKey, ca: x509.Certificate, revoked_serials: list[int]) -> bytes:
    now = _dt.datetime.now(_dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(now - _dt.timedelta(minutes=5)).next_update(now + _dt.timedelta(days=1)))
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class CrlServer:
    """A loopback HTTP server serving one CRL at /ca.crl (set ``.crl`` to change it)."""

    def __init__(self) -> None:
        self.crl = b""
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.crl
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/ca.crl"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def config(pki: Pki, db: str, *, smtp: tuple[str, int] | None = None, limits: Limits | None = None) -> Config:
    return Config(db=db, trust=[pki.ca, pki.fast_ca], smtp=smtp, fast_path_cas=[pki.fast_ca], crl_interval=0,
                  mail_from="keys@example.test", limits=limits or Limits(lookups_per_client=(10_000, 60),
                                                                          lookups_per_address=(10_000, 60),
                                                                          writes_per_client=(10_000, 3600)))


def proof_for(user: User, challenge: dict) -> dict:
    """What the autosmime client answers to a challenge's possession part."""
    return answer_challenge(challenge, user.key, user.cert)


def signed_by(user: User, challenge: dict) -> dict:
    """The challenge's statement signed with ``user``'s key, whoever's certificate is being published (a forgery)."""
    import base64

    from autosmime import smime
    from autosmime.pki import possession

    text = base64.b64decode(challenge["proof"]["statement_b64"])
    signed = smime.sign(possession.statement_message(text, user.address), user.key, user.cert)
    return {"signed_b64": base64.b64encode(signed).decode()}
