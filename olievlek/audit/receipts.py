"""Checking an audit proof as a node does: signed head, own leaf, inclusion, and consistency
with the last head this node accepted. Pure functions; the node supplies the I/O."""

from __future__ import annotations

import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek.errors import VerificationError
from olievlek.v1 import broker_pb2

from . import checkpoint
from .log import head_message, leaf_of
from .verify import verify_consistency, verify_inclusion


def _fail(message: str) -> VerificationError:
    return VerificationError(message, refusal_code=broker_pb2.REFUSAL_CODE_BAD_SIGNATURE, field="audit")


def verify_head(head: broker_pb2.TreeHead, log_key: ed25519.Ed25519PublicKey, origin: str | None = None) -> None:
    """The head is signed by the log key: its checkpoint (under ``origin`` when given) says exactly what its
    fields say; a head from before checkpoints carries the old signature over its fields instead.

    Raises:
        VerificationError: unsigned, signed by another key, or a checkpoint that says something else.
    """
    if not head.checkpoint:
        try:
            log_key.verify(head.signature, head_message(head))
        except InvalidSignature:
            raise _fail(f"tree head of size {head.size} is not signed by the broker's log key") from None
        return
    try:
        cp, _note = checkpoint.open_signed(head.checkpoint, origin, log_key)
    except VerificationError as exc:
        raise _fail(f"tree head of size {head.size}: {exc.message}") from None
    if (cp.size, cp.root, cp.bundle_digest, cp.timestamp_ms) != (head.size, head.root, head.bundle_digest,
                                                                 head.timestamp_ms):
        raise _fail(f"tree head of size {head.size} says something else than its signed checkpoint")


def verify_receipt(proof: broker_pb2.AuditProof, log_key: ed25519.Ed25519PublicKey,
                   expect: dict[str, Any], origin: str | None = None) -> dict[str, Any]:
    """Check one's own leaf: its metadata says what we were told, and it is in the signed tree.

    Raises:
        VerificationError: unsigned head, metadata that disagrees with the answer, or a bad proof.
    """
    verify_head(proof.head, log_key, origin)
    return verify_leaf(proof, expect)


def verify_leaf(proof: broker_pb2.AuditProof, expect: dict[str, Any]) -> dict[str, Any]:
    """``verify_receipt`` without the head's signature (for a head already verified): the leaf's metadata
    and its inclusion in the head.

    Raises:
        VerificationError: metadata that disagrees with the answer, or a bad proof.
    """
    try:
        meta: dict[str, Any] = json.loads(proof.metadata)
    except json.JSONDecodeError:
        raise _fail("audit metadata is not JSON") from None
    for key, value in expect.items():
        if meta.get(key) != value:
            raise _fail(f"audit leaf says {key}={meta.get(key)!r}, the answer said {value!r}")
    verify_inclusion(leaf_of(proof.salt, proof.metadata), proof.leaf_index, proof.head.size, list(proof.inclusion),
                     proof.head.root)
    return meta


def check_extends(old: broker_pb2.TreeHead, new: broker_pb2.TreeHead, consistency: list[bytes]) -> None:
    """``new`` is an append-only extension of ``old`` (both already signature-checked)."""
    verify_consistency(old.size, new.size, consistency, old.root, new.root)
