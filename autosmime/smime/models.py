"""Results of the message engine's operations."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from cryptography import x509


@dataclass(frozen=True)
class SignerReport:
    """One signer of a verified message, with the chain it was validated through."""

    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    addresses: tuple[str, ...]
    signing_time: _dt.datetime | None
    digest_algorithm: str
    signature_algorithm: str
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifyResult:
    """A verified signature layer.

    ``message`` is the inner message with the mail's own headers (From, To,
    Subject, ...) put back in front of it.
    """

    message: bytes
    signers: tuple[SignerReport, ...]
    from_address: str | None
    from_matches: bool | None

    @property
    def signer_cert(self) -> x509.Certificate:
        return self.signers[0].cert

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return self.signers[0].chain

    @property
    def signer_address(self) -> str | None:
        addrs = self.signers[0].addresses
        if self.from_address and self.from_address in addrs:
            return self.from_address
        return addrs[0] if addrs else None

    @property
    def signing_time(self) -> _dt.datetime | None:
        return self.signers[0].signing_time


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


@dataclass(frozen=True)
class Layer:
    kind: str  # "enveloped" | "signed"
    detail: DecryptReport | VerifyResult


@dataclass(frozen=True)
class ReadResult:
    """A message opened through all its layers (decrypt and verify, any nesting)."""

    message: bytes
    layers: tuple[Layer, ...] = field(default_factory=tuple)

    @property
    def encrypted(self) -> bool:
        return any(layer.kind == "enveloped" for layer in self.layers)

    @property
    def signatures(self) -> tuple[VerifyResult, ...]:
        return tuple(layer.detail for layer in self.layers if isinstance(layer.detail, VerifyResult))
