"""Test support for the CA: a minimal real ACME client (josepy JWS over httpx), a mail sink, a mail provider.

The real RFC 8823 client is autosmime/enroll (the 'enroll' work); this one is
deliberately small and lets tests send what a broken or hostile client would.
"""

from __future__ import annotations

import base64
import email
import email.policy
import email.utils
import hashlib
import json
import smtplib
import threading
from dataclasses import dataclass, field
from typing import Any

import dkim
import httpx
import josepy as jose
from acme import jws as acme_jws
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from autosmime.servers.ca.dns import dkim_txt_record

MAIL_DOMAIN = "example.test"
MAIL_SELECTOR = "mail"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ACMETestClient:
    def __init__(self, directory_url: str, key: Any = None, alg: jose.JWASignature = jose.ES256) -> None:
        self.http = httpx.Client(timeout=30)
        self.directory = self.http.get(directory_url).json()
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self.jwk = jose.JWKEC(key=self.key) if isinstance(self.key, ec.EllipticCurvePrivateKey) else \
            jose.JWKRSA(key=self.key)
        self.alg = alg if isinstance(self.key, ec.EllipticCurvePrivateKey) else jose.RS256
        self.kid: str | None = None
        self._nonce: str | None = None

    def close(self) -> None:
        self.http.close()

    @property
    def thumbprint(self) -> str:
        return b64url(self.jwk.public_key().thumbprint())

    def forget_nonce(self) -> None:
        self._nonce = None

    def nonce(self) -> str:
        if self._nonce:
            n, self._nonce = self._nonce, None
            return n
        return self.http.head(self.directory["newNonce"]).headers["Replay-Nonce"]

    def signed_body(self, url: str, payload: Any, *, use_jwk: bool = False, nonce: str | None = None,
                    key: Any = None, jwk: jose.JWK | None = None) -> bytes:
        data = b"" if payload is None else json.dumps(payload).encode()
        signer = jwk or self.jwk
        jws = acme_jws.JWS.sign(data, key=signer, alg=self.alg if jwk is None else _alg(signer),
                                nonce=jose.decode_b64jose(nonce or self.nonce()), url=url,
                                kid=None if use_jwk or self.kid is None else self.kid)
        return jws.json_dumps().encode()

    def post(self, url: str, payload: Any = None, *, use_jwk: bool = False, body: bytes | None = None,
             nonce: str | None = None, jwk: jose.JWK | None = None) -> httpx.Response:
        body = body if body is not None else self.signed_body(url, payload, use_jwk=use_jwk, nonce=nonce, jwk=jwk)
        r = self.http.post(url, content=body, headers={"Content-Type": "application/jose+json"})
        if "Replay-Nonce" in r.headers:
            self._nonce = r.headers["Replay-Nonce"]
        return r

    def register(self) -> str:
        r = self.post(self.directory["newAccount"], {"termsOfServiceAgreed": True}, use_jwk=True)
        assert r.status_code in (200, 201), r.text
        self.kid = r.headers["Location"]
        return self.kid

    def new_order(self, *emails: str, typ: str = "email") -> httpx.Response:
        return self.post(self.directory["newOrder"],
                         {"identifiers": [{"type": typ, "value": e} for e in emails]})

    def authz(self, url: str) -> dict[str, Any]:
        r = self.post(url)
        assert r.status_code == 200, r.text
        return r.json()

    def digest(self, token1: str, token2: str) -> str:
        ka = f"{token1}{token2}.{self.thumbprint}".encode()
        return b64url(hashlib.sha256(ka).digest())


def _alg(jwk: jose.JWK) -> jose.JWASignature:
    return jose.RS256 if isinstance(jwk, jose.JWKRSA) else jose.ES256


def make_csr(key: Any, *emails: str, dns: tuple[str, ...] = (), cn: str | None = None) -> bytes:
    names: list[x509.GeneralName] = [x509.RFC822Name(e) for e in emails] + [x509.DNSName(d) for d in dns]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or (emails[0] if emails else "x"))]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@dataclass
class MailSink:
    """An aiosmtpd server that keeps every message it receives (the user's MTA, as far as the CA knows)."""

    messages: list[bytes] = field(default_factory=list)
    port: int = 0
    _controller: Any = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> MailSink:
        import socket

        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with sink._cond:
                    sink.messages.append(envelope.original_content or envelope.content)
                    sink._cond.notify_all()
                return "250 OK"

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def find(self, to: str) -> bytes | None:
        for raw in reversed(self.messages):
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            if str(msg["To"]) == to:
                return raw
        return None


class MailProvider:
    """The user's mail provider: DKIM-signs what its users send (key published in a zone file)."""

    def __init__(self, domain: str = MAIL_DOMAIN, selector: str = MAIL_SELECTOR) -> None:
        self.domain, self.selector = domain, selector
        self.key = rsa.generate_private_key(65537, 2048)
        self.key_pem = self.key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.TraditionalOpenSSL,
                                              serialization.NoEncryption())
        spki = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        self.zone = "$ORIGIN .\n" + dkim_txt_record(selector, domain, base64.b64encode(spki).decode())

    def sign(self, raw: bytes, *, domain: str | None = None, headers: list[bytes] | None = None,
             length: bool = False, key_pem: bytes | None = None, selector: str | None = None) -> bytes:
        sig = dkim.sign(raw, (selector or self.selector).encode(), (domain or self.domain).encode(),
                        key_pem or self.key_pem,
                        include_headers=headers or [b"from", b"to", b"subject", b"date", b"message-id",
                                                    b"in-reply-to", b"references", b"content-type"],
                        canonicalize=(b"relaxed", b"relaxed"), length=length)
        return sig + raw


def challenge_fields(raw: bytes) -> tuple[str, str, str]:
    """(token-part1, Message-ID, From) of a challenge mail."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    subject = str(msg["Subject"])
    assert subject.startswith("ACME: ")
    return subject[len("ACME: "):].strip(), str(msg["Message-ID"]), str(msg["From"])


def compose_reply(*, sender: str, to: str, token1: str, in_reply_to: str, digest: str | list[str],
                  extra_body: str = "") -> bytes:
    digests = digest if isinstance(digest, list) else [digest]
    blocks = "".join(f"-----BEGIN ACME RESPONSE-----\r\n{d}\r\n-----END ACME RESPONSE-----\r\n" for d in digests)
    headers = [f"From: {sender}", f"To: {to}", f"Subject: Re: ACME: {token1}",
               f"Date: {email.utils.formatdate(usegmt=True)}",
               f"Message-ID: <{b64url(__import__('os').urandom(9))}@{sender.rpartition('@')[2]}>",
               f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}", "Auto-Submitted: auto-replied",
               "MIME-Version: 1.0", "Content-Type: text/plain; charset=us-ascii"]
    return ("\r\n".join(headers) + "\r\n\r\n" + extra_body + blocks).encode()


def send_smtp(port: int, sender: str, to: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail(sender, [to], raw)
