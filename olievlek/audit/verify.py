"""Proof checks, no I/O: what nodes, witnesses and the CLI run (RFC 9162 2.1.3.2 and 2.1.4.2)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from olievlek.errors import VerificationError
from olievlek.v1 import broker_pb2

from .hashing import node_hash


def _fail(message: str) -> VerificationError:
    return VerificationError(message, refusal_code=broker_pb2.REFUSAL_CODE_BAD_SIGNATURE, field="audit")


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.3.2: the root implied by an inclusion proof."""
    if not 0 <= index < size:
        raise _fail(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise _fail("inclusion proof is longer than the tree is deep")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _fail("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raises VerificationError unless ``leaf`` is at ``index`` of the tree with ``root``."""
    if not hmac.compare_digest(root_from_inclusion(leaf, index, size, proof), root):
        raise _fail(f"inclusion proof for leaf {index} does not lead to the signed root of size {size}")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """RFC 9162 2.1.4.2: the tree of ``size2`` extends the tree of ``size1`` (append-only).

    Raises:
        VerificationError: the proof does not show that the second tree contains the first.
    """
    if not 0 < size1 <= size2:
        raise _fail(f"no consistency between sizes {size1} and {size2}")
    if size1 == size2:
        if proof or not hmac.compare_digest(root1, root2):
            raise _fail("same size but different roots: the log was rewritten")
        return
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is the first node
        path.insert(0, root1)
    if not path:
        raise _fail("empty consistency proof")
    fn, sn = size1 - 1, size2 - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise _fail("consistency proof is too long")
        if fn % 2 == 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or not hmac.compare_digest(fr, root1) or not hmac.compare_digest(sr, root2):
        raise _fail(f"consistency proof from size {size1} to {size2} fails: the log is not append-only")


def full_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a whole log from its leaf hashes (RFC 9162: pair left to right, carry an odd last node up).

    What ``audit verify`` runs over the whole log; written for speed (one SHA-256 per interior node).
    """
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    sha = hashlib.sha256
    level = list(leaf_hashes)
    while len(level) > 1:
        odd = level[-1] if len(level) % 2 else None
        nxt = [sha(b"\x01" + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)]
        if odd is not None:
            nxt.append(odd)
        level = nxt
    return level[0]
