"""One ACME (RFC 8555) client for S/MIME certificates: email orders, the email-reply-00 challenge, ARI.

    >>> from autosmime.enroll.client import AcmeClient, new_account_key
    >>> client = AcmeClient("https://ca.example/acme/directory", new_account_key())   # doctest: +SKIP
    >>> kid = client.register()                                                        # doctest: +SKIP
    >>> order = client.new_order("alice@example.test")                                 # doctest: +SKIP
    >>> authz, chall = client.email_challenge(order)                                   # doctest: +SKIP

Built on the ``acme`` package's network layer (JWS, nonces, retries on badNonce)
and message classes; orders are posted here because the package's ``new_order``
drops email identifiers. HTTPS is verified (``trust`` names a PEM bundle for a
private CA's TLS); plain ``http`` is allowed only to loopback addresses, i.e. the
embedded stack. Every failure is an :mod:`autosmime.errors` EnrollmentError:
:class:`CAUnreachable`, :class:`RateLimited`, :class:`ReplyRejected`, :class:`CAError`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import josepy as jose
import requests
from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from autosmime.enroll.messages import EMAIL_REPLY_00, ari_cert_id, email_order
from autosmime.errors import CAError, CAUnreachable, RateLimited, ReplyRejected, UsageError
from autosmime.mailbox.account import is_loopback
from autosmime.mailbox.text import server_text

USER_AGENT = "autosmime"
#: RFC 5280 revocation reasons the CLI offers.
REASONS = {"unspecified": 0, "keyCompromise": 1, "superseded": 4, "cessationOfOperation": 5}
PEM_CHAIN = "application/pem-certificate-chain"


def new_account_key() -> jose.JWK:
    """A fresh P-256 account key (ES256): small JWS, fast to sign."""
    return jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


def account_key_pem(jwk: jose.JWK) -> bytes:
    return jwk.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


def load_account_key(pem: bytes) -> jose.JWK:
    key = serialization.load_pem_private_key(pem, None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return jose.JWKEC(key=key)
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key)
    raise UsageError("the ACME account key must be an EC or RSA key")


def _alg(jwk: jose.JWK) -> jose.JWASignature:
    if isinstance(jwk, jose.JWKEC):
        return {256: jose.ES256, 384: jose.ES384, 521: jose.ES512}[jwk.key.curve.key_size]
    return jose.RS256


def check_ca_url(url: str) -> None:
    """HTTPS, or plain http to a loopback address (the embedded stack) — else UsageError."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    if parts.scheme == "http":
        raise UsageError(f"the CA URL {url} is plain http; only loopback addresses may use http, use https")
    raise UsageError(f"the CA URL {url!r} is not an https:// URL")


class AcmeClient:
    """A session with one ACME server under one account key. Not thread-safe."""

    def __init__(self, directory_url: str, account_key: jose.JWK, *, kid: str | None = None,
                 trust: str | None = None, timeout: float = 30) -> None:
        check_ca_url(directory_url)
        self.directory_url = directory_url
        self.account_key = account_key
        self._where = urllib.parse.urlsplit(directory_url).netloc
        # verify_ssl goes to requests' ``verify``, which also takes a CA bundle path.
        self._net = acme_client.ClientNetwork(account_key, alg=_alg(account_key),
                                              verify_ssl=trust if trust else True,  # type: ignore[arg-type]
                                              user_agent=USER_AGENT, timeout=int(timeout))
        if kid:
            self._net.account = messages.RegistrationResource(uri=kid, body=messages.Registration())
        self._client: acme_client.ClientV2 | None = None

    # --- plumbing ------------------------------------------------------------------------

    @property
    def kid(self) -> str | None:
        account = self._net.account
        return account.uri if account is not None else None

    @property
    def acme(self) -> acme_client.ClientV2:
        if self._client is None:
            with self._errors("reading the directory"):
                directory = acme_client.ClientV2.get_directory(self.directory_url, self._net)
            self._client = acme_client.ClientV2(directory, self._net)
        return self._client

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except requests.exceptions.SSLError as e:
            raise CAUnreachable(f"the CA at {self._where}: TLS certificate not trusted or handshake failed "
                                f"while {what} (a private CA needs --ca-trust): {_short(e)}") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise CAUnreachable(f"the CA at {self._where} cannot be reached while {what}: {_unreachable(e)}") from None
        except messages.Error as e:
            raise _problem(e, what) from None
        except acme_errors.ConflictError:
            raise
        except (acme_errors.Error, requests.exceptions.RequestException, jose.DeserializationError,
                ValueError, KeyError) as e:
            raise CAError(f"the CA at {self._where} answered unexpectedly while {what}: {_short(e)}") from None

    # --- account -------------------------------------------------------------------------

    def register(self) -> str:
        """Create (or find) the account for this key, agreeing to the terms; returns its URL (kid)."""
        if self.kid:
            return self.kid
        body = messages.NewRegistration.from_data(terms_of_service_agreed=True)
        with self._errors("creating the account"):
            try:
                regr = self.acme.new_account(body)
                uri = regr.uri
            except acme_errors.ConflictError as e:
                uri = e.location
                self._net.account = messages.RegistrationResource(uri=uri, body=messages.Registration())
        if not uri:
            raise CAError(f"the CA at {self._where} created an account without telling its URL")
        return uri

    # --- orders --------------------------------------------------------------------------

    def new_order(self, address: str, *, replaces: str | None = None) -> messages.OrderResource:
        """POST newOrder with one ``email`` identifier (RFC 8823 §2), then fetch its authorizations."""
        client = self.acme
        with self._errors(f"ordering a certificate for {address}"):
            response = client._post(client.directory["newOrder"], email_order(address, replaces=replaces))
            body = messages.Order.from_json(response.json())
            authzrs = [client._authzr_from_response(client._post_as_get(url), uri=url)
                       for url in body.authorizations]
        return messages.OrderResource(body=body, uri=response.headers.get("Location"),
                                      authorizations=authzrs)

    def email_challenge(self, order: messages.OrderResource
                        ) -> tuple[messages.AuthorizationResource, messages.ChallengeBody]:
        """The order's (single) authorization and its ``email-reply-00`` challenge."""
        for authzr in order.authorizations:
            for challb in authzr.body.challenges:
                if getattr(challb.chall, "typ", None) == EMAIL_REPLY_00:
                    return authzr, challb
        raise CAError(f"the CA at {self._where} offered no email-reply-00 challenge")

    def answer(self, challb: messages.ChallengeBody) -> None:
        """POST ``{}`` to the challenge: "the reply is on its way"."""
        client = self.acme
        with self._errors("answering the challenge"):
            client._post(challb.uri, _EmptyObject())

    def authorization(self, authzr: messages.AuthorizationResource) -> messages.AuthorizationResource:
        client = self.acme
        with self._errors("polling the authorization"):
            updated, _response = client.poll(authzr)
        return updated

    def wait_valid(self, authzr: messages.AuthorizationResource, deadline: float
                   ) -> messages.AuthorizationResource:
        """Poll (honouring Retry-After) until the authorization is valid; ReplyRejected if invalid."""
        delay = 0.05
        while True:
            client = self.acme
            with self._errors("polling the authorization"):
                updated, response = client.poll(authzr)
            status = updated.body.status
            if status == messages.STATUS_VALID:
                return updated
            if status in (messages.STATUS_INVALID, messages.STATUS_DEACTIVATED, messages.STATUS_REVOKED):
                raise _challenge_failure(updated, self._where)
            if time.monotonic() >= deadline:
                raise CAError(f"the CA at {self._where} did not validate the reply in time "
                              f"(authorization still {status})")
            time.sleep(min(_retry_after(response, delay), max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)

    def finalize(self, order: messages.OrderResource, csr_pem: bytes, deadline: float) -> str:
        """Send the CSR, wait for issuance, return the certificate chain PEM (leaf first)."""
        client = self.acme
        csr = x509.load_pem_x509_csr(csr_pem)
        with self._errors("finalizing the order"):
            response = client._post(order.body.finalize, messages.CertificateRequest(csr=csr))
            body = messages.Order.from_json(response.json())
        delay = 0.05
        while body.status != messages.STATUS_VALID or not body.certificate:
            if body.status == messages.STATUS_INVALID:
                raise _order_failure(body, self._where)
            if time.monotonic() >= deadline:
                raise CAError(f"the CA at {self._where} did not issue the certificate in time "
                              f"(order still {body.status})")
            time.sleep(min(_retry_after(response, delay), max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)
            with self._errors("polling the order"):
                response = client._post_as_get(order.uri)
                body = messages.Order.from_json(response.json())
        with self._errors("downloading the certificate"):
            cert = client._post_as_get(body.certificate, headers={"Content-Type": acme_client.ClientNetwork.
                                                                  JOSE_CONTENT_TYPE, "Accept": PEM_CHAIN})
        return cert.text

    # --- after issuance ------------------------------------------------------------------

    def revoke(self, cert: x509.Certificate, reason: int) -> None:
        with self._errors("revoking the certificate"):
            self.acme.revoke(cert, reason)

    def renewal_window(self, cert: x509.Certificate) -> tuple[_dt.datetime, _dt.datetime] | None:
        """ARI (RFC 9773): the CA's suggested renewal window, or None when it offers no ARI."""
        client = self.acme
        try:
            base = client.directory["renewalInfo"]
        except KeyError:
            return None
        url = base.rstrip("/") + "/" + ari_cert_id(cert)
        with self._errors("asking for renewal information"):
            info = messages.RenewalInfo.from_json(self._net.get(url, content_type="application/json").json())
        window = info.suggested_window
        return _utc(window.start), _utc(window.end)


class _EmptyObject(jose.JSONDeSerializable):
    """The ``{}`` payload of a challenge response POST."""

    def to_partial_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, jobj: Any) -> _EmptyObject:
        return cls()


def _utc(value: _dt.datetime) -> _dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)


def _retry_after(response: requests.Response, default: float) -> float:
    value = response.headers.get("Retry-After", "")
    if value.strip().isdigit():
        return min(float(value), 10.0)   # honoured, but a long hint must not stall an interactive enrol
    return default


def _short(e: BaseException) -> str:
    return server_text(str(e), 200)


def _unreachable(e: requests.exceptions.RequestException) -> str:
    """Why the CA could not be reached, in the words the mail servers' errors use (requests' own text
    is a paragraph of urllib3 internals: "HTTPConnectionPool(host=...): Max retries exceeded ...")."""
    text = str(e)
    if isinstance(e, requests.exceptions.Timeout):
        return "timed out"
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "Failed to resolve" in text or "nodename nor servname" in text:
        return "host not found"
    return _short(e)


def _problem(e: messages.Error, what: str) -> CAError:
    # the CA's own words: shown to the user, so cleaned like a mail server's
    detail = server_text(e.detail or e.title or e.description or str(e.typ))
    if e.code == "rateLimited":
        return RateLimited(f"rate limited by the CA while {what}: {detail}", e.typ)
    if e.code == "incorrectResponse":
        return ReplyRejected(f"the CA rejected the challenge reply: {detail}", e.typ)
    return CAError(f"the CA refused {what}: {detail} ({e.code or e.typ})", e.typ)


def _challenge_failure(authzr: messages.AuthorizationResource, where: str) -> CAError:
    for challb in authzr.body.challenges:
        if getattr(challb.chall, "typ", None) == EMAIL_REPLY_00 and challb.error is not None:
            return _problem(challb.error, "validating the reply")
    return ReplyRejected(f"the CA at {where} marked the authorization {authzr.body.status}")


def _order_failure(order: messages.Order, where: str) -> CAError:
    if order.error is not None:
        return _problem(order.error, "issuing the certificate")
    return CAError(f"the CA at {where} marked the order invalid")
