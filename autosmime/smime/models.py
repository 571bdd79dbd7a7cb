"""Results of the message engine's operations."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509

from autosmime.errors import AutosmimeError

if TYPE_CHECKING:
    from autosmime.pki.revocation import RevocationStatus


@dataclass(frozen=True)
class SignerReport:
    """One signer (SignerInfo) of a message, with the chain it was validated through.

    ``cert`` is None only for a SignerInfo whose certificate is nowhere to be found;
    ``verdict`` is this signer's own (signature and chain; From and Date judge the layer).
    ``revocation`` is the status a revocation checker gave (None: not asked), and
    ``revocation_note`` what it means for a signature that stays good (also in ``notes``).
    """

    cert: x509.Certificate | None
    chain: tuple[x509.Certificate, ...]
    addresses: tuple[str, ...]
    signing_time: _dt.datetime | None
    digest_algorithm: str
    signature_algorithm: str
    capabilities: tuple[str, ...] = ()
    verdict: str = "good"
    detail: str = ""
    notes: tuple[str, ...] = ()  # deviations from the strict profile that are not failures (pki.validate)
    revocation: RevocationStatus | None = None
    revocation_note: str = ""


@dataclass(frozen=True)
class VerifyResult:
    """A verified signature layer.

    ``message`` is the inner message with the mail's own headers (From, To,
    Subject, ...) put back in front of it. ``signers[0]`` is the signer that
    counts: the one whose certificate names From (the others follow in the
    order received). ``verdict`` is one of docs/engine.md's words; ``error``
    the typed error behind any verdict but "good".
    """

    message: bytes
    signers: tuple[SignerReport, ...]
    from_address: str | None
    from_matches: bool | None
    verdict: str = "good"
    error: AutosmimeError | None = None

    @property
    def signer_cert(self) -> x509.Certificate | None:
        return self.signers[0].cert if self.signers else None

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return self.signers[0].chain if self.signers else ()

    @property
    def signer_address(self) -> str | None:
        addrs = self.signers[0].addresses if self.signers else ()
        if self.from_address and self.from_address in addrs:
            return self.from_address
        return addrs[0] if addrs else None

    @property
    def signing_time(self) -> _dt.datetime | None:
        return self.signers[0].signing_time if self.signers else None

    @property
    def revocation_note(self) -> str:
        """What the signer's revocation status means for a signature that stays good ("" if nothing)."""
        return self.signers[0].revocation_note if self.signers else ""


@dataclass(frozen=True)
class DecryptReport:
    """How a message was decrypted."""

    content_algorithm: str
    key_algorithm: str
    weak: bool
    authenticated: bool
    recipient_cert: x509.Certificate | None


@dataclass(frozen=True)
class DecryptResult:
    message: bytes
    report: DecryptReport


# -- read: one record per layer -----------------------------------------------------------

KINDS = ("clear-signed", "opaque-signed", "enveloped", "auth-enveloped", "foreign", "plain")
VERDICTS = ("good", "bad-digest", "bad-signature", "untrusted", "expired", "revoked", "weak-algorithm",
            "time-mismatch", "from-mismatch", "not-for-me", "unsupported")
WHOLE = "message"  # what ``Layer.covers`` says of a layer around everything that is printed


@dataclass(frozen=True)
class Layer:
    """One layer of a message as :func:`autosmime.smime.read` found it (see docs/engine.md).

    ``kind`` is one of KINDS; ``verdict`` one of VERDICTS (None for "plain", the content);
    ``covers`` is WHOLE, or the part number (IMAP style: "1", "2.1") inside the printed
    content of the one part the layer protects. ``decides`` marks the layer whose verdict
    is the message's.
    """

    kind: str
    verdict: str | None
    detail: str
    covers: str = WHOLE
    signature: VerifyResult | None = None
    decryption: DecryptReport | None = None
    decides: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def signed(self) -> bool:
        return self.kind in ("clear-signed", "opaque-signed")

    def to_json(self) -> dict:
        """The stable JSON form (docs/engine.md, "read --json")."""
        sig = self.signature
        algorithms: dict[str, str] = {}
        signer = None
        signers: list[dict] = []
        if sig is not None and sig.signers:
            first = sig.signers[0]
            names = {"digest": first.digest_algorithm, "signature": first.signature_algorithm}
            algorithms = {k: v for k, v in names.items() if v}  # a failed signer may name no scheme
            signer = _signer_json(first, sig.signer_address)
            signers = [dict(_signer_json(s, None), verdict=s.verdict, detail=s.detail, notes=list(s.notes),
                            revocation=_revocation_json(s))
                       for s in sig.signers]
        if self.decryption is not None:
            algorithms = {"content": self.decryption.content_algorithm, "key": self.decryption.key_algorithm}
        return {
            "kind": self.kind,
            "verdict": self.verdict,
            "detail": self.detail,
            "covers": self.covers,
            "decides": self.decides,
            "signer": signer,
            "signers": signers,
            "from": sig.from_address if sig is not None else None,
            "signing_time": (sig.signing_time.isoformat() if sig is not None and sig.signing_time else None),
            "algorithms": algorithms,
            "warnings": list(self.warnings),
        }


def _revocation_json(report: SignerReport) -> dict | None:
    """``{"status", "revoked_at", "reason"}`` when a checker was asked about this signer, else None."""
    status = report.revocation
    if status is None:
        return None
    return {"status": status.status, "reason": status.reason,
            "revoked_at": status.revoked_at.isoformat() if status.revoked_at is not None else None}


def _signer_json(report: SignerReport, address: str | None) -> dict:
    from cryptography.hazmat.primitives import hashes

    cert = report.cert
    if address is None:
        address = report.addresses[0] if report.addresses else None
    return {"address": address, "sha256": cert.fingerprint(hashes.SHA256()).hex() if cert is not None else None}


@dataclass(frozen=True)
class ReadResult:
    """A message opened through all its layers (see docs/engine.md, "What read reports").

    ``message`` is the content (None when it could not be decrypted); ``verdict`` the
    verdict of the signature nearest the content, or of the layer that kept the content
    hidden, or None when no S/MIME signature decides. ``summary`` is one line for people.
    """

    message: bytes | None
    layers: tuple[Layer, ...] = field(default_factory=tuple)
    verdict: str | None = None
    summary: str = ""

    @property
    def exit_code(self) -> int:
        """0 when the verdict is good or no S/MIME signature decides; 1 otherwise."""
        return 0 if self.verdict in (None, "good") else 1

    @property
    def decided_by(self) -> int | None:
        return next((i for i, layer in enumerate(self.layers) if layer.decides), None)

    @property
    def encrypted(self) -> bool:
        return any(layer.kind in ("enveloped", "auth-enveloped") and layer.covers == WHOLE for layer in self.layers)

    @property
    def signatures(self) -> tuple[VerifyResult, ...]:
        return tuple(layer.signature for layer in self.layers if layer.signature is not None)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(w for layer in self.layers for w in layer.warnings)

    def to_json(self) -> dict:
        """The stable JSON form of ``read --json`` (docs/engine.md)."""
        content: str | None = None
        encoding = None
        if self.message is not None:
            try:
                content, encoding = self.message.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                import base64

                content, encoding = base64.b64encode(self.message).decode("ascii"), "base64"
        return {
            "verdict": self.verdict,
            "exit": self.exit_code,
            "summary": self.summary,
            "decided_by": self.decided_by,
            "layers": [layer.to_json() for layer in self.layers],
            "content": content,
            "content_encoding": encoding,
        }
