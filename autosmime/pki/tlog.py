"""A transparency log's arithmetic: RFC 9162 Merkle hashing, proofs, and signed checkpoints.

    >>> from autosmime.pki.tlog import leaf_hash, root_from_leaves, inclusion_ranges, verify_inclusion
    >>> leaves = [leaf_hash(b"event %d" % i) for i in range(5)]
    >>> proof = [root_from_leaves(leaves[a:b]) for a, b in inclusion_ranges(3, 5)]
    >>> verify_inclusion(leaves[3], 3, 5, proof, root_from_leaves(leaves))
    True

Both sides use this module: the directory server to build proofs from the
perfect subtree hashes it stores, the client to check them. Proofs are built
from *ranges* of leaves (``inclusion_ranges`` / ``consistency_ranges``, RFC 9162
2.1.3.1 and 2.1.4.1 PATH and SUBPROOF); a range [a, b) that the tree splits is
always a run of perfect subtrees of descending size (``perfect_parts``), so a
server that stores every perfect subtree's hash answers any proof with at most
2 log2(n) stored hashes and no leaf scan. Verification follows RFC 9162 2.1.3.2
and 2.1.4.2 literally.

Checkpoints are C2SP signed notes (tlog-checkpoint): the origin line, the tree
size, the base64 root hash, then an Ed25519 signature line keyed by the first
4 bytes of SHA-256(name || 0x0A || 0x01 || public key).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from autosmime.errors import LogVerificationError

__all__ = ["leaf_hash", "node_hash", "perfect_parts", "fold_parts", "root_from_leaves", "inclusion_ranges",
           "consistency_ranges", "verify_inclusion", "verify_consistency", "Checkpoint", "sign_checkpoint",
           "open_checkpoint", "key_id"]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def perfect_parts(start: int, end: int) -> list[tuple[int, int]]:
    """(level, index) of the perfect subtrees that make up the tree's split of [start, end), largest first.

    Valid for the ranges RFC 9162 trees produce: ``start`` aligned to a power of two >= end - start.
    """
    parts = []
    size = end - start
    while size:
        level = size.bit_length() - 1
        parts.append((level, start >> level))
        start += 1 << level
        size -= 1 << level
    return parts


def fold_parts(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from its perfect parts' hashes (largest first): the right fold RFC 9162's split makes."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (the reference definition, for tests and small trees)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(root_from_leaves(leaf_hashes[:k]), root_from_leaves(leaf_hashes[k:]))


def inclusion_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form PATH(m, D[0:n]), in proof order (bottom up)."""
    if not 0 <= m < n:
        raise ValueError(f"leaf {m} is not in a tree of size {n}")
    out: list[tuple[int, int]] = []
    start, end = 0, n
    while end - start > 1:
        k = 1 << ((end - start - 1).bit_length() - 1)
        if m - start < k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()
    return out


def consistency_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form PROOF(m, D[0:n]) (RFC 9162 2.1.4.1), in proof order."""
    if not 0 < m <= n:
        raise ValueError(f"no consistency proof from size {m} to {n}")
    out: list[tuple[int, int]] = []

    def subproof(m: int, start: int, end: int, b: bool) -> None:
        n = end - start
        if m == n:
            if not b:
                out.append((start, end))
            return
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            subproof(m, start, start + k, b)
            out.append((start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            out.append((start, start + k))

    subproof(m, 0, n, True)
    return out


def ranges_hashes(ranges: Sequence[tuple[int, int]], node: Callable[[int, int], bytes]) -> list[bytes]:
    """MTHs of ``ranges`` from ``node(level, index)``, a lookup of stored perfect subtree hashes."""
    return [fold_parts([node(level, index) for level, index in perfect_parts(a, b)]) for a, b in ranges]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` show leaf hash ``leaf`` at ``index`` in the tree of ``size`` with ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: is the tree (size2, root2) an append-only extension of (size1, root1)?"""
    if size1 == size2:
        return not proof and root1 == root2
    if not 0 < size1 < size2 or not proof:
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is the proof's implicit first node
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0


# --- checkpoints (C2SP signed notes) ------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    note: str  # the whole signed note, as served

    def body(self) -> bytes:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n".encode()


def key_id(name: str, public_key: ed25519.Ed25519PublicKey) -> bytes:
    raw = public_key.public_bytes_raw()
    return hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]


def sign_checkpoint(origin: str, size: int, root: bytes, key: ed25519.Ed25519PrivateKey) -> Checkpoint:
    body = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
    sig = key_id(origin, key.public_key()) + key.sign(body.encode())
    note = f"{body}\n\u2014 {origin} {base64.b64encode(sig).decode()}\n"
    return Checkpoint(origin, size, root, note)


def open_checkpoint(note: str, origin: str, public_key: ed25519.Ed25519PublicKey) -> Checkpoint:
    """The checkpoint in ``note`` if ``public_key`` signed it for ``origin``; LogVerificationError otherwise."""
    body, sep, sigs = note.partition("\n\n")
    lines = body.split("\n")
    if not sep or len(lines) < 3 or lines[0] != origin:
        raise LogVerificationError(f"the checkpoint is not for the log {origin!r}")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except ValueError:
        raise LogVerificationError("the checkpoint is malformed") from None
    if size < 0 or len(root) != 32 or lines[1] != str(size):
        raise LogVerificationError("the checkpoint is malformed")
    signed = (body + "\n").encode()
    want = key_id(origin, public_key)
    for line in sigs.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or parts[1] != origin:
            continue
        try:
            sig = base64.b64decode(parts[2], validate=True)
        except ValueError:
            continue
        if sig[:4] != want:
            continue
        try:
            public_key.verify(sig[4:], signed)
        except InvalidSignature:
            raise LogVerificationError("the checkpoint's signature does not verify") from None
        return Checkpoint(origin, size, root, note)
    raise LogVerificationError("the checkpoint carries no signature by the log's key")
