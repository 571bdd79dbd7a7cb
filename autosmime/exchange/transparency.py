"""Checking directory answers against the directory's transparency log, with a memory that only grows.

    >>> from autosmime.exchange.transparency import LogWitness
    >>> witness = LogWitness.open(home, client)                      # doctest: +SKIP
    >>> certs = witness.verify_lookup("bob@example.test", answer)     # doctest: +SKIP

What a client keeps per directory (``<home>/directory/<id>.json``, 0600): the
log's origin and Ed25519 key (pinned on first use), the largest checkpoint it
has accepted, and which certificate it was shown for which address at which
leaf (evidence, if the log later turns out to disagree).

An answer is used only if: its checkpoint carries the pinned key's signature;
that checkpoint and the stored one are provably one history (an RFC 9162
consistency proof from the smaller to the larger; same size means same root);
and every certificate comes with a leaf that publishes exactly that
certificate's SHA-256 under this address's label, included in that checkpoint.
Anything else raises: LogForked for two histories (a rewritten or rolled-back
log), CertificateSwapped for a certificate the log does not show for the
address, LogVerificationError for a proof that does not verify. The stored
checkpoint is replaced only by a larger one that was proven consistent with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from autosmime._files import ensure_home, locked, write_private
from autosmime.errors import CertificateSwapped, DirectoryError, LogForked, LogVerificationError
from autosmime.exchange.client import DirectoryClient
from autosmime.pki import tlog
from autosmime.pki.select import address_label, normalize_address

STATE_DIR = "directory"


@dataclass(frozen=True)
class ProvenCert:
    """A certificate the directory showed, with the log entry that proves it."""

    cert: x509.Certificate
    sha256: str
    address: str
    leaf_index: int
    status: str
    checked_at: str
    preferred: bool
    issuers: tuple[x509.Certificate, ...] = ()  # intermediates the directory sent along (not proven, only a path hint)


def _b64d(value: object, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise LogVerificationError(f"the directory's {what} is not base64") from None


class LogWitness:
    def __init__(self, path: Path, client: DirectoryClient, state: dict) -> None:
        self.path = path
        self.client = client
        self.state = state

    @classmethod
    def open(cls, home: Path, client: DirectoryClient) -> LogWitness:
        """The stored view of ``client``'s directory; pins the log key on first contact."""
        ensure_home(home)
        directory = home / STATE_DIR
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / (hashlib.sha256(client.url.encode()).hexdigest()[:24] + ".json")
        state: dict = json.loads(path.read_text()) if path.exists() else {}
        witness = cls(path, client, state)
        if not state:
            info = client.log_key()
            if info.get("algorithm") != "ed25519" or not isinstance(info.get("origin"), str):
                raise DirectoryError(f"{client.url}: the log key is not an Ed25519 key")
            _b64d(info.get("public_key_b64"), "log key")
            witness.state = {"url": client.url, "origin": info["origin"], "key_b64": info["public_key_b64"],
                             "size": 0, "root_b64": base64.b64encode(tlog.EMPTY_ROOT).decode(), "note": "",
                             "seen": {}}
            witness._save()
        return witness

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        return ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(self.state["key_b64"]))

    @property
    def size(self) -> int:
        return int(self.state["size"])

    def _save(self) -> None:
        with locked(self.path.with_suffix(".lock")):
            write_private(self.path, json.dumps(self.state, indent=1, sort_keys=True).encode())

    # --- checkpoints ---------------------------------------------------------------------

    def accept_checkpoint(self, note: str) -> tlog.Checkpoint:
        """The checkpoint in ``note``, once proven one history with the stored one (which may grow)."""
        cp = tlog.open_checkpoint(note, self.state["origin"], self.public_key)
        old_size, old_root = self.size, base64.b64decode(self.state["root_b64"])
        if cp.size == old_size:
            if cp.root != old_root:
                raise LogForked(f"two different logs of size {cp.size}: the directory's history was rewritten")
            return cp
        if old_size == 0:
            self._grow(cp)
            return cp
        small, large = (cp, None) if cp.size < old_size else (None, cp)
        first, second = (cp.size, old_size) if small else (old_size, cp.size)
        first_root, second_root = (cp.root, old_root) if small else (old_root, cp.root)
        reply = self.client.consistency(first, second)
        proof = [_b64d(p, "consistency proof") for p in reply.get("proof", [])]
        if not tlog.verify_consistency(first, second, first_root, second_root, proof):
            what = "rolled back to a different history" if small else "not an extension of the one seen before"
            raise LogForked(f"the directory's log (size {cp.size}) is {what} (size {old_size})")
        if large is not None:
            self._grow(large)
        return cp

    def _grow(self, cp: tlog.Checkpoint) -> None:
        if cp.size <= self.size:
            return
        self.state.update(size=cp.size, root_b64=base64.b64encode(cp.root).decode(), note=cp.note)
        self._save()

    def refresh(self) -> tlog.Checkpoint:
        """Fetch the latest checkpoint and accept it (proves the log only grew since last time)."""
        return self.accept_checkpoint(self.client.checkpoint())

    # --- answers -------------------------------------------------------------------------

    def verify_lookup(self, address: str, answer: dict) -> list[ProvenCert]:
        """The certificates of a by-email answer, each proven published for ``address`` in the log."""
        address = normalize_address(address)
        if answer.get("address") != address:
            raise CertificateSwapped(f"the directory answered for {answer.get('address')!r}, not {address}")
        proven = self._verify_entries(answer, expected_address=address)
        seen = self.state.setdefault("seen", {}).setdefault(address, {})
        changed = False
        for p in proven:
            if seen.get(p.sha256) != p.leaf_index:
                seen[p.sha256] = p.leaf_index
                changed = True
        if changed:
            self._save()
        return proven

    def verify_events(self, address: str, answer: dict) -> list[dict]:
        """A monitor answer's events for ``address`` (each proven in the log), oldest first."""
        address = normalize_address(address)
        cp = self.accept_checkpoint(str(answer.get("checkpoint", "")))
        label = address_label(address).hex()
        out = []
        for ev in answer.get("events", []):
            leaf = _b64d(ev.get("leaf_b64"), "leaf")
            index = int(ev.get("leaf_index", -1))
            data = self._check_leaf(leaf, index, ev, cp)
            if data.get("label") != label:
                raise LogVerificationError(f"leaf {index} is not about {address}")
            out.append(data)
        return out

    def _verify_entries(self, answer: dict, expected_address: str | None) -> list[ProvenCert]:
        cp = self.accept_checkpoint(str(answer.get("checkpoint", "")))
        entries = answer.get("certificates")
        if not isinstance(entries, list) or not entries:
            raise LogVerificationError("the directory's answer lists no certificates")
        proven = []
        for e in entries:
            der = _b64d(e.get("der_b64"), "certificate")
            digest = hashlib.sha256(der).hexdigest()
            address = expected_address or normalize_address(str(e.get("address")))
            leaf = _b64d(e.get("leaf_b64"), "leaf")
            index = int(e.get("leaf_index", -1))
            data = self._check_leaf(leaf, index, e, cp)
            if data.get("op") != "publish" or data.get("cert") != digest or \
                    data.get("label") != address_label(address).hex() or e.get("sha256") != digest:
                raise CertificateSwapped(f"the directory's log does not publish certificate {digest[:16]}… for {address}")
            try:
                cert = x509.load_der_x509_certificate(der)
                issuers = tuple(x509.load_der_x509_certificate(_b64d(i, "issuer")) for i in e.get("issuers_b64") or [])
            except ValueError:
                raise LogVerificationError("the directory sent an unreadable certificate") from None
            status = e.get("status") or {}
            proven.append(ProvenCert(cert, digest, address, index, str(status.get("state", "unknown")),
                                     str(status.get("checked_at", "")), bool(e.get("preferred")), issuers))
        return proven

    def _check_leaf(self, leaf: bytes, index: int, entry: dict, cp: tlog.Checkpoint) -> dict:
        proof = [_b64d(p, "inclusion proof") for p in entry.get("inclusion", [])]
        if not tlog.verify_inclusion(tlog.leaf_hash(leaf), index, cp.size, proof, cp.root):
            raise LogVerificationError(f"leaf {index} is not included in the directory's log of size {cp.size}")
        try:
            data = json.loads(leaf)
        except ValueError:
            raise LogVerificationError(f"leaf {index} is not a directory event") from None
        if not isinstance(data, dict) or data.get("idx") != index:
            raise LogVerificationError(f"leaf {index} is not a directory event")
        return data
