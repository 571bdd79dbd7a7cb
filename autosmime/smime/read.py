"""Open a message through all its layers: decrypt and verify, in any nesting.

    >>> from autosmime.smime import read
    >>> opened = read(raw, keys=vault.decryption_keys(), trust_roots=[ca])   # doctest: +SKIP
    >>> [layer.kind for layer in opened.layers]                             # doctest: +SKIP
    ['enveloped', 'signed']
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from cryptography import x509

from autosmime.errors import MalformedMessage
from autosmime.smime._cmstype import classify
from autosmime.smime.decrypt import KeyList, decrypt_classified
from autosmime.smime.models import Layer, ReadResult
from autosmime.smime.verify import verify_classified

MAX_LAYERS = 8  # real mail has at most 3 (signed, enveloped, signed); more is an attack on our time


def read(message: bytes, *, keys: KeyList = (), trust_roots: Sequence[x509.Certificate] = (),
         at: _dt.datetime | None = None, require_from_match: bool = True) -> ReadResult:
    layers: list[Layer] = []
    current = message
    for _ in range(MAX_LAYERS + 1):
        layer = classify(current)  # parsed and decoded once, for both the kind and the opening
        if layer.kind == "enveloped":
            result = decrypt_classified(layer, keys)
            layers.append(Layer("enveloped", result.report))
            current = result.message
        elif layer.kind == "signed":
            vresult = verify_classified(layer, trust_roots, at, require_from_match=require_from_match)
            layers.append(Layer("signed", vresult))
            current = vresult.message
        else:
            return ReadResult(current, tuple(layers))
    raise MalformedMessage(f"more than {MAX_LAYERS} nested S/MIME layers")
