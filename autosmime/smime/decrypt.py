"""Decrypt a message with any key the user has ever held.

    >>> from autosmime.smime import decrypt
    >>> result = decrypt(open("enc.eml", "rb").read(), [(key, cert)])   # doctest: +SKIP
    >>> result.report.content_algorithm                                 # doctest: +SKIP
    'aes256_cbc'
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509

from autosmime.errors import MalformedMessage
from autosmime.smime import mime
from autosmime.smime._cms import enveloped as _enveloped
from autosmime.smime._cmstype import cms_kind, looks_like_cms
from autosmime.smime.models import DecryptReport, DecryptResult

KeyList = Sequence[tuple[object, x509.Certificate | None]]


def decrypt(message: bytes, keys: KeyList) -> DecryptResult:
    """The outermost encryption layer removed. Raises NotForMe, DecryptionError, ..."""
    keys = [(k.key, k.cert) if hasattr(k, "cert") else k for k in keys]  # KeyPair or tuples
    der = looks_like_cms(message)
    outer: list[bytes] = []
    if der is None:
        msg = mime.Message.parse(message)
        if mime.kind(msg) != "pkcs7-mime":
            raise MalformedMessage(f"not an encrypted message ({msg.content_type.value})")
        outer = msg.outer_headers()
        der = mime.pkcs7_der(msg)
    if cms_kind(der) != "enveloped":
        raise MalformedMessage("the message is signed, not encrypted")
    pieces, r = _enveloped.decrypt_pieces(der, keys)
    del der  # the ciphertext is no longer needed: let it go before the message is assembled
    report = DecryptReport(content_algorithm=r.content_algorithm, key_algorithm=r.key_algorithm,
                           weak=r.weak, authenticated=r.authenticated, recipient_cert=r.recipient_cert)
    return DecryptResult(message=mime.rejoin(outer, pieces), report=report)
