"""ACME message types RFC 8823 and RFC 9773 add to the ``acme`` package's.

    >>> import json
    >>> from autosmime.enroll.messages import email_order
    >>> json.loads(email_order("alexey@example.com").json_dumps())
    {'identifiers': [{'type': 'email', 'value': 'alexey@example.com'}]}

The ``acme`` package knows only ``dns`` and ``ip`` identifiers, builds orders from a
CSR's DNS/IP names (so an S/MIME CSR yields an empty order) and has no ``replaces``
field; the classes here fill those gaps and nothing more.
"""

from __future__ import annotations

import base64
from typing import Any

import josepy as jose
from acme import challenges, messages
from cryptography import x509

EMAIL_REPLY_00 = "email-reply-00"

#: RFC 8823 §2: the ``email`` identifier type (registering it lets the acme package parse it).
IDENTIFIER_EMAIL = messages.IdentifierType("email")


@challenges.Challenge.register
class EmailReply00(challenges.Challenge):
    """The ``email-reply-00`` challenge: ``token`` is token-part2, ``from`` the CA's sender.

    The token stays a string: the ``acme`` package's token challenges decode it to
    bytes (and insist on 16 of them), which would force the bytes reading of the
    token concatenation (see :mod:`autosmime.enroll.challenges`).
    """

    typ = EMAIL_REPLY_00
    token: str = jose.field("token")
    from_addr: str = jose.field("from")


class NewEmailOrder(messages.NewOrder):
    """newOrder with ``replaces`` (RFC 9773 §5): the ARI certID of the certificate being renewed."""

    replaces: str | None = jose.field("replaces", omitempty=True)


def email_order(address: str, *, replaces: str | None = None) -> NewEmailOrder:
    """The newOrder payload for one mailbox address (never a ``dns`` identifier)."""
    if not address or "@" not in address or "*" in address:
        raise ValueError(f"not a mailbox address for an email identifier: {address!r}")
    ident = messages.Identifier(typ=IDENTIFIER_EMAIL, value=address)
    kwargs: dict[str, Any] = {"identifiers": (ident,)}
    if replaces:
        kwargs["replaces"] = replaces
    return NewEmailOrder(**kwargs)


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def ari_cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 §4.1 certID: base64url(AKI keyIdentifier) "." base64url(serial DER content octets).

    >>> from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
    >>> ca_key, ca = make_ca("X", new_key("ec"))
    >>> "." in ari_cert_id(make_mailbox_cert("a@example.test", new_key("ec").public_key(), ca_key, ca))
    True
    """
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        aki = None
    if not aki:
        raise ValueError("the certificate has no authority key identifier, so it has no ARI certID")
    serial = cert.serial_number
    # DER INTEGER content: big-endian two's complement, a leading zero when the top bit is set.
    der = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    return f"{_b64u(aki)}.{_b64u(der)}"
