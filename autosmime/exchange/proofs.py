"""Answering the directory's possession challenges, and signing monitor requests.

    >>> from autosmime.exchange.proofs import answer_challenge
    >>> proof = answer_challenge(challenge, key, cert)          # doctest: +SKIP
    >>> client.confirm("publish", challenge["request"], token=token, proof=proof)   # doctest: +SKIP

A signing key signs the statement the directory sent, but only after checking
that it is the statement for this very request (op, request id, address,
certificate): the client never signs text a server merely hands it. An
encryption-only key decrypts the enveloped statement and returns it only if it
is such a statement too, so the directory cannot use the client to decrypt
anything else.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence

from cryptography import x509

from autosmime import smime
from autosmime.errors import AutosmimeError, PublishRejected
from autosmime.pki import possession
from autosmime.pki.certs import fingerprint

__all__ = ["answer_challenge", "monitor_request"]


def _expected_prefix(challenge: dict, cert: x509.Certificate) -> bytes:
    # Everything but the nonce must be what we asked for.
    return possession.statement(str(challenge.get("op")), str(challenge.get("request")), str(challenge.get("address")),
                                fingerprint(cert), b"").rsplit(b"nonce: ", 1)[0] + b"nonce: "


def _check_statement(text: bytes, challenge: dict, cert: x509.Certificate) -> None:
    if challenge.get("sha256") != fingerprint(cert) or not text.startswith(_expected_prefix(challenge, cert)) \
            or not text.endswith(b"\r\n") or text.count(b"\r\n") != 6:
        raise PublishRejected("the directory's challenge is not a statement about this request; not answered")


def answer_challenge(challenge: dict, key: object, cert: x509.Certificate,
                     chain: Sequence[x509.Certificate] = ()) -> dict:
    """The ``proof`` for a confirm request: a signed statement (carrying ``chain``), or the decrypted one."""
    p = challenge.get("proof") or {}
    try:
        if p.get("method") == "sign":
            text = base64.b64decode(str(p.get("statement_b64")), validate=True)
            _check_statement(text, challenge, cert)
            signed = smime.sign(possession.statement_message(text, str(challenge["address"])), key, cert, chain)
            return {"signed_b64": base64.b64encode(signed).decode()}
        if p.get("method") == "decrypt":
            opened = smime.decrypt(base64.b64decode(str(p.get("enveloped_b64")), validate=True), [(key, cert)])
            text = possession.message_body(opened.message)
            _check_statement(text, challenge, cert)
            return {"statement_b64": base64.b64encode(text).decode()}
    except (binascii.Error, ValueError):
        raise PublishRejected("the directory's challenge is not base64") from None
    except AutosmimeError as e:
        if isinstance(e, PublishRejected):
            raise
        raise PublishRejected(f"cannot answer the directory's challenge: {e}") from None
    raise PublishRejected(f"unknown possession challenge {p.get('method')!r}")


def monitor_request(address: str, key: object, cert: x509.Certificate, chain: Sequence[x509.Certificate] = (),
                    now: int | None = None) -> tuple[int, bytes]:
    """(time, signed statement carrying ``chain``) for POST /v1/monitor."""
    when = int(now if now is not None else time.time())
    message = possession.statement_message(possession.monitor_statement(address, when), address)
    return when, smime.sign(message, key, cert, chain)
