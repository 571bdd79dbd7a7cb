"""Open a message through all its layers: decrypt and verify, in any nesting, and say what each layer is.

    >>> from autosmime.smime import read
    >>> opened = read(raw, keys=vault.decryption_keys(), trust_roots=[ca])   # doctest: +SKIP
    >>> [(layer.kind, layer.verdict) for layer in opened.layers]            # doctest: +SKIP
    [('enveloped', 'good'), ('clear-signed', 'good'), ('plain', None)]
    >>> opened.verdict, opened.exit_code, opened.summary                    # doctest: +SKIP
    ('good', 0, 'encrypted; signed by alice@example.test (good)')

The rules (docs/engine.md, "What read reports"):

- Content is never hidden by an outer layer: a failing signature is recorded and the
  content it wraps opened all the same; a foreign layer (an OpenPGP signature) is
  unwrapped. Only a layer that cannot be opened at all (not for me, unsupported) stops.
- The message's verdict is that of the signature nearest the content. A signature
  outside an encryption layer that fails does not decide.
- S/MIME parts inside a multipart container (a mailing-list wrapper, a
  multipart/alternative) are reported for the part they cover and never unwrapped or
  decrypted into the content: that is the EFAIL "hidden part" trick.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography import x509

from autosmime.errors import AutosmimeError, DecryptionError, MalformedMessage, UnsupportedAlgorithm
from autosmime.smime import mime
from autosmime.smime._cmstype import Classified, classify, cms_kind, is_auth_enveloped
from autosmime.smime.decrypt import KeyList, decrypt_classified
from autosmime.smime.models import WHOLE, Layer, ReadResult, VerifyResult
from autosmime.smime.verify import HeaderBlock, check_classified, message_block, verdict_of

if TYPE_CHECKING:
    from autosmime.pki.revocation import RevocationCheck

MAX_LAYERS = 8  # real mail has at most 3 (signed, enveloped, signed); more is an attack on our time
MAX_PART_DEPTH = 4  # multipart nesting searched for S/MIME parts
MAX_PARTS = 256  # parts looked at in all, however nested: bounds the time a crafted message costs
MAX_PART_SIGNATURES = 8  # signed parts verified; more are reported unchecked

_SIGNED = ("clear-signed", "opaque-signed")
_ENVELOPED = ("enveloped", "auth-enveloped")


class _Options:
    __slots__ = ("keys", "roots", "at", "require_from_match", "check_date", "revocation", "parts_left",
                 "signatures_left")

    def __init__(self, keys: KeyList, roots: Sequence[x509.Certificate], at: _dt.datetime | None,
                 require_from_match: bool, check_date: bool, revocation: RevocationCheck | None) -> None:
        self.keys, self.roots, self.at, self.revocation = keys, roots, at, revocation
        self.require_from_match, self.check_date = require_from_match, check_date
        self.parts_left, self.signatures_left = MAX_PARTS, MAX_PART_SIGNATURES


def read(message: bytes, *, keys: KeyList = (), trust_roots: Sequence[x509.Certificate] = (),
         at: _dt.datetime | None = None, require_from_match: bool = True, check_date: bool = True,
         revocation: RevocationCheck | None = None) -> ReadResult:
    """Every layer of ``message``, outermost first, and the content.

    Raises MalformedMessage only when the message itself is not MIME or CMS; whatever
    happens to a layer inside is a verdict in the result. ``revocation``: a checker asked
    about each signature layer's signer that counts once all else is good (see
    :func:`autosmime.smime.verify`); None checks nothing.
    """
    opts = _Options(keys, trust_roots, at, require_from_match, check_date, revocation)
    layers: list[Layer] = []
    current: bytes | None = message
    prefix = 0  # how many header fields of ``current`` were put back from outside its layer
    for depth in range(MAX_LAYERS + 1):
        assert current is not None
        try:
            layer = classify(current)  # parsed and decoded once, for both the kind and the opening
        except (MalformedMessage, UnsupportedAlgorithm) as e:
            if depth == 0:
                raise
            layers.append(Layer("plain", None, f"the content cannot be opened further: {e}"))
            break
        if layer.kind == "enveloped":
            current = _open_enveloped(layer, opts, layers)
        elif layer.kind == "signed":
            current, unwrapped_message = _open_signed(layer, opts, layers, prefix)
            if unwrapped_message:
                prefix = 0
                continue
        elif _foreign_encrypted(layer):
            layers.append(Layer("foreign", "unsupported", f"{_type(layer)}: not S/MIME, left as it is"))
            break
        else:
            layers.append(Layer("plain", None, f"the content ({_type(layer)})"))
            if layer.msg is not None and layer.msg.mime_type.startswith("multipart/"):
                _report_parts(layer.msg, message_block(layer.msg, prefix), "", 1, opts, layers)
            if layer.msg is not None and prefix:
                current = _protected_headers_win(layer.msg, prefix, current)
            break
        if current is None:
            break
        prefix = len(layer.msg.outer_headers()) if layer.msg is not None else prefix
    else:
        raise MalformedMessage(f"more than {MAX_LAYERS} nested S/MIME layers")
    return _conclude(current, layers)


# -- the layers on the way to the content ------------------------------------------------

def _open_enveloped(layer: Classified, opts: _Options, layers: list[Layer]) -> bytes | None:
    kind = "auth-enveloped" if layer.der is not None and is_auth_enveloped(layer.der) else "enveloped"
    try:
        result = decrypt_classified(layer, opts.keys)
    except DecryptionError as e:  # NotForMe, or no key of ours opens it
        layers.append(Layer(kind, "not-for-me", str(e)))
        return None
    except (UnsupportedAlgorithm, MalformedMessage) as e:
        layers.append(Layer(kind, "unsupported", str(e)))
        return None
    report = result.report
    warnings = (f"weak encryption ({report.content_algorithm})",) if report.weak else ()
    layers.append(Layer(kind, "good", f"decrypted ({report.content_algorithm}, {report.key_algorithm})",
                        decryption=report, warnings=warnings))
    return result.message


def _open_signed(layer: Classified, opts: _Options, layers: list[Layer], prefix: int) -> tuple[bytes | None, bool]:
    """(the content inside, whether it is a message/rfc822 message of its own)."""
    msg = layer.msg
    kind = "opaque-signed" if layer.der is not None else "clear-signed"
    if msg is not None and kind == "clear-signed":
        protocol = _protocol(msg)
        if protocol not in mime.SIGNATURE_TYPES:
            content = _first_part(msg)
            layers.append(Layer("foreign", "unsupported",
                                f"a {protocol or 'multipart/signed'} signature: not S/MIME, not checked; unwrapped"))
            return content, False
    try:
        result = check_classified(layer, opts.roots, opts.at, require_from_match=opts.require_from_match,
                                  check_date=opts.check_date, prefix=prefix, revocation=opts.revocation)
    except (MalformedMessage, UnsupportedAlgorithm) as e:
        layers.append(Layer(kind, verdict_of(e), str(e)))
        # A clear signature mangled beyond cutting: its first part is still the content.
        return (_first_part(msg) if msg is not None and kind == "clear-signed" else None), False
    layers.append(Layer(kind, result.verdict, _signed_detail(result), signature=result))
    inner = _rfc822_inside(result.message, msg)
    return (inner, True) if inner is not None else (result.message, False)


def _protocol(msg: mime.Message) -> str:
    """A multipart/signed's signature type: its protocol parameter, or, when a sender left that
    out, the type of its second part."""
    protocol = (msg.content_param("protocol") or "").lower()
    if protocol:
        return protocol
    try:
        parts = mime.body_parts(msg, limit=2)
        return mime.Message.parse(parts[1]).mime_type if len(parts) == 2 and parts[1].strip() else ""
    except MalformedMessage:
        return ""


def _first_part(msg: mime.Message) -> bytes | None:
    try:
        parts = mime.body_parts(msg, limit=1)
    except MalformedMessage:
        return None
    return mime.rejoin(msg.outer_headers(), parts[0]) if parts else None


def _rfc822_inside(content: bytes, msg: mime.Message | None) -> bytes | None:
    """The message inside a signed message/rfc822 entity (RFC 8551 3.1 header protection)."""
    if msg is None:
        inner = mime.Message.parse(content)
    else:
        inner = mime.Message.parse(content)
    if inner.mime_type != "message/rfc822":
        return None
    body = inner.body
    if inner.transfer_encoding not in ("7bit", "8bit", "binary", ""):
        body = mime.decode_body(body, inner.transfer_encoding)
    return mime.to_crlf(body) if body.strip() else None


def _protected_headers_win(msg: mime.Message, prefix: int, content: bytes) -> bytes:
    """The content without the outer copies of header fields that came out of the protection too.

    An entity that carries its own From (header protection: the whole header block inside the
    encryption or signature) would otherwise print two From fields, the outer, unprotected one
    first, where a reader takes it.
    """
    fields = msg.fields
    inner = {_field_name(f) for f in fields[prefix:]}
    if b"from" not in inner:
        return content
    kept = [f for f in fields[:prefix] if _field_name(f) not in inner]
    if len(kept) == prefix:
        return content
    return b"".join([*kept, *fields[prefix:], b"\r\n", msg.body])


def _field_name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def _foreign_encrypted(layer: Classified) -> bool:
    return layer.msg is not None and layer.msg.mime_type in ("multipart/encrypted", "application/pgp-encrypted")


def _type(layer: Classified) -> str:
    return layer.msg.mime_type if layer.msg is not None else "CMS"


def _signed_detail(result: VerifyResult) -> str:
    who = result.signer_address or "an unknown signer"
    if result.error is None:
        when = result.signing_time.isoformat() if result.signing_time else "no signing time"
        note = f"; {result.revocation_note}" if result.revocation_note else ""
        return f"signed by {who} ({when}){note}"
    return f"signed by {who}: {result.error}"


# -- S/MIME parts inside a multipart: reported for their part, never opened into the content --

def _report_parts(msg: mime.Message, context: HeaderBlock, path: str, depth: int, opts: _Options,
                  layers: list[Layer]) -> None:
    if opts.parts_left <= 0:
        return
    try:
        parts = mime.body_parts(msg, limit=opts.parts_left)
    except MalformedMessage:
        return
    opts.parts_left -= len(parts)
    container = msg.mime_type
    for number, raw in enumerate(parts, 1):
        where = f"{path}.{number}" if path else str(number)
        try:
            part = mime.Message.parse(raw) if raw.strip() else None
        except (MalformedMessage, ValueError):
            continue
        if part is None:
            continue
        kind = mime.kind(part)
        if kind == "plain":
            if part.mime_type.startswith("multipart/") and depth < MAX_PART_DEPTH:
                _report_parts(part, context, where, depth + 1, opts, layers)
            continue
        layers.append(_part_layer(part, kind, where, container, context, opts))


def _part_layer(part: mime.Message, kind: str, where: str, container: str, context: HeaderBlock,
                opts: _Options) -> Layer:
    if kind == "signed":
        protocol = _protocol(part)
        if protocol not in mime.SIGNATURE_TYPES:
            return Layer("foreign", "unsupported", f"part {where}: a {protocol} signature, not checked", covers=where)
        classified = Classified("signed", part, None)
        fine = "clear-signed"
    else:
        try:
            der = mime.pkcs7_der(part)
            cms = cms_kind(der)
        except (MalformedMessage, UnsupportedAlgorithm) as e:
            return Layer("opaque-signed", verdict_of(e), f"part {where}: {e}", covers=where)
        if cms == "enveloped":
            fine = "auth-enveloped" if is_auth_enveloped(der) else "enveloped"
            return Layer(fine, "unsupported",
                         f"part {where}: an encrypted part inside {container} is not decrypted: it is not the "
                         "message itself, and showing it as the message is how EFAIL leaks plaintext", covers=where)
        classified = Classified("signed", part, der)
        fine = "opaque-signed"
    if opts.signatures_left <= 0:
        return Layer(fine, "unsupported", f"part {where}: not checked, too many signed parts", covers=where)
    opts.signatures_left -= 1
    try:
        result = check_classified(classified, opts.roots, opts.at, require_from_match=opts.require_from_match,
                                  check_date=opts.check_date, context=context, revocation=opts.revocation)
    except AutosmimeError as e:
        return Layer(fine, verdict_of(e), f"part {where}: {e}", covers=where)
    return Layer(fine, result.verdict, f"part {where} only: {_signed_detail(result)}", covers=where,
                 signature=result)


# -- the message's verdict -------------------------------------------------------------

def _conclude(content: bytes | None, layers: list[Layer]) -> ReadResult:
    decider = _decider(content, layers)
    if decider is not None:
        layers[decider] = _replace(layers[decider], decides=True)
    verdict = layers[decider].verdict if decider is not None else None
    return ReadResult(content, tuple(layers), verdict, _summary(layers, decider))


def _decider(content: bytes | None, layers: list[Layer]) -> int | None:
    main = [i for i, layer in enumerate(layers) if layer.covers == WHOLE]
    if content is None:  # a layer kept the content from us: that layer is the verdict
        return main[-1] if main else None
    signed = [i for i in main if layers[i].signed]
    if signed:
        nearest = signed[-1]
        sealed = any(layers[i].kind in _ENVELOPED for i in main if i > nearest)
        if layers[nearest].verdict == "good" or not sealed:
            return nearest
        return None  # a failed signature outside the encryption: reported, does not decide
    parts = [i for i, layer in enumerate(layers) if layer.covers != WHOLE and layer.signed]
    return parts[0] if len(parts) == 1 else None


def _replace(layer: Layer, **changes) -> Layer:
    from dataclasses import replace

    return replace(layer, **changes)


def _summary(layers: list[Layer], decider: int | None) -> str:
    bits: list[str] = []
    inner_signature = decider is not None and layers[decider].signed
    for i, layer in enumerate(layers):
        if layer.kind == "plain":
            continue
        whose = note = ""
        if layer.signature is not None and layer.signature.signer_address:
            whose = f" by {layer.signature.signer_address}"
        if layer.signature is not None and layer.signature.revocation_note:
            note = f"; {layer.signature.revocation_note}"
        if layer.covers != WHOLE:
            if layer.signed:
                bits.append(f"part {layer.covers} signed{whose} ({layer.verdict}{note}); the rest is not signed")
            else:
                bits.append(f"part {layer.covers}: {layer.kind}, not opened ({layer.verdict})")
        elif layer.kind in _ENVELOPED:
            bits.append("encrypted" if layer.verdict == "good" else f"encrypted ({layer.verdict})")
        elif layer.kind == "foreign":
            bits.append("foreign layer (not S/MIME) — unwrapped" if i + 1 < len(layers) else "foreign layer (not S/MIME)")
        elif i == decider:
            label = "inner signature" if any(layers[j].signed for j in range(i)) else "signed"
            bits.append(f"{label}{whose} ({layer.verdict}{note})")
        elif layer.verdict == "good":
            bits.append(f"outer signature{whose} (good{note})")
        else:
            bits.append(f"outer signature {_broken(layer.verdict)}{whose} — ignored")
    for w in (w for layer in layers for w in layer.warnings):
        bits.append(f"warning: {w}")
    if not any(layer.signed for layer in layers) and not inner_signature:
        bits.append("no S/MIME signature")
    return "; ".join(bits)


def _broken(verdict: str | None) -> str:
    return "broken" if verdict in ("bad-digest", "bad-signature") else f"not good ({verdict})"
