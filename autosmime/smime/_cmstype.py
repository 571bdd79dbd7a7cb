"""What a CMS blob or S/MIME message is, without parsing all of it."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from autosmime.errors import MalformedMessage, UnsupportedAlgorithm
from autosmime.smime import mime
from autosmime.smime._cms import der as _der

_KINDS = {
    "1.2.840.113549.1.7.2": "signed",
    "1.2.840.113549.1.7.3": "enveloped",
    "1.2.840.113549.1.9.16.1.23": "enveloped",  # AuthEnvelopedData
}
_KINDS_DER = {_der.oid(dotted): kind for dotted, kind in _KINDS.items()}
_NAMES = {"1.2.840.113549.1.9.16.1.9": "compressed-data (RFC 3274)",
          "1.2.840.113549.1.7.6": "encrypted-data",
          "1.2.840.113549.1.7.5": "digested-data"}


def cms_kind(der: bytes) -> str:
    """"signed" or "enveloped"; typed errors for anything else."""
    try:  # DER ContentInfo, read by hand: SEQUENCE { OID, [0] ... } with a short-form OID
        tag, start, end = _der.read_tlv(der, 0, len(der))
        oid_tag, oid_start, oid_end = _der.read_tlv(der, start, end)
        if tag == _der.SEQUENCE and oid_tag == _der.OID and oid_start - start == 2:
            kind = _KINDS_DER.get(bytes(der[start:oid_end]))
            if kind is not None:
                return kind
    except ValueError:
        pass  # BER or malformed: the general parse judges
    from asn1crypto import cms  # the general parse only: the common case above needs none of it

    try:
        oid = cms.ContentInfo.load(der)["content_type"].dotted
    except Exception:  # asn1crypto raises many types on garbage
        raise MalformedMessage("not a CMS (PKCS#7) structure") from None
    if oid in _KINDS:
        return _KINDS[oid]
    raise UnsupportedAlgorithm(_NAMES.get(oid, oid), "CMS content type")


_AUTH_ENVELOPED_OID = _der.oid("1.2.840.113549.1.9.16.1.23")


def is_auth_enveloped(der: bytes) -> bool:
    """AuthEnvelopedData rather than EnvelopedData, for a blob :func:`cms_kind` calls "enveloped".

    The content type OID follows the ContentInfo's SEQUENCE header (2 to 6 octets, or
    BER's 2): it lies within the first 24 octets, where nothing else can hold its 13.
    """
    return _AUTH_ENVELOPED_OID in bytes(der[:24])


_LEADING_SPACE = re.compile(rb"\s*")
# What bare CMS can start with: DER's SEQUENCE tag, PEM's dashes, or whitespace before either.
_CMS_FIRST_BYTES = frozenset(b"0- \t\r\n\x0b\x0c")


def looks_like_cms(data: bytes) -> bytes | None:
    """Bare DER/BER or PEM CMS (as from `openssl cms -outform DER/PEM`), else None."""
    if not data or data[0] not in _CMS_FIRST_BYTES:
        return None  # a mail starts with a header field's name: no scan, no copy
    # Where the content starts, found without copying: a mail is neither, and is not copied at all.
    leading = _LEADING_SPACE.match(data)
    first = leading.end() if leading is not None else 0
    if data[first:first + 1] == b"\x30":
        return data if first == 0 and isinstance(data, bytes) else bytes(data[first:])
    if data.startswith(b"-----BEGIN", first):
        stripped = data[first:]
        lines = stripped.splitlines()
        body = b"".join(line for line in lines[1:] if not line.startswith(b"-----"))
        try:
            return base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            raise MalformedMessage("invalid PEM") from None
    return None


@dataclass(slots=True)  # built per message
class Classified:
    """A message's outermost S/MIME layer, with what was parsed to find it, for the step that opens it."""

    kind: str | None  # "enveloped", "signed", or None for plain content
    msg: mime.Message | None  # the parsed MIME message; None for bare CMS
    der: bytes | None  # the CMS blob; None for multipart/signed (its signature is cut out later) and plain

    def take_der(self) -> bytes:
        """The CMS blob, handed over: a 10 MB ciphertext must not outlive its decryption."""
        der, self.der = self.der, None
        if der is None:
            raise ValueError("no CMS blob, or it was taken already")
        return der


def classify(message: bytes) -> Classified:
    """The outermost S/MIME layer of ``message``, keeping the parsed message and the decoded CMS for reuse."""
    der = looks_like_cms(message)
    if der is not None:
        return Classified(cms_kind(der), None, der)
    msg = mime.Message.parse(message)
    kind = mime.kind(msg)
    if kind == "signed":
        return Classified("signed", msg, None)
    if kind != "pkcs7-mime":
        return Classified(None, msg, None)
    der = mime.pkcs7_der(msg)
    return Classified(cms_kind(der), msg, der)
