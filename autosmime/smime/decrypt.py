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
from autosmime.smime._cmstype import Classified, classify
from autosmime.smime.models import DecryptReport, DecryptResult

KeyList = Sequence[tuple[object, x509.Certificate | None]]


def decrypt(message: bytes, keys: KeyList) -> DecryptResult:
    """The outermost encryption layer removed. Raises NotForMe, DecryptionError, ..."""
    return decrypt_classified(classify(message), keys)


def decrypt_classified(layer: Classified, keys: KeyList) -> DecryptResult:
    """:func:`decrypt` of a message already classified (by :func:`read`, which classified it anyway)."""
    if layer.kind != "enveloped":
        if layer.der is not None:
            raise MalformedMessage("the message is signed, not encrypted")
        raise MalformedMessage(f"not an encrypted message ({layer.msg.mime_type})")
    keys = [k if type(k) is tuple else (k.key, k.cert) if hasattr(k, "cert") else k for k in keys]  # KeyPair or tuples
    outer = layer.msg.outer_headers() if layer.msg is not None else []
    pieces, r = _enveloped.decrypt_pieces(layer.take_der(), keys)  # the ciphertext goes before the rejoin
    report = DecryptReport(content_algorithm=r.content_algorithm, key_algorithm=r.key_algorithm,
                           weak=r.weak, authenticated=r.authenticated, recipient_cert=r.recipient_cert)
    return DecryptResult(message=mime.rejoin(outer, pieces), report=report)
