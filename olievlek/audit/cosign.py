"""Witness cosignatures over signed tree heads, and the quorum check nodes run. No I/O."""

from __future__ import annotations

from collections.abc import Collection

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek.errors import IdentityError, VerificationError
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2

from .log import head_message

COSIGN_CONTEXT = b"olievlek/v1/cosignature\x00"


def cosign(head: broker_pb2.TreeHead, witness: str, key: ed25519.Ed25519PrivateKey,
           cert_der: bytes) -> broker_pb2.Cosignature:
    return broker_pb2.Cosignature(witness=witness, head=head, signature=key.sign(COSIGN_CONTEXT + head_message(head)),
                                  signer_certificate=cert_der)


def verify_cosignature(c: broker_pb2.Cosignature, trust: TrustAnchor) -> str:
    """The witness id behind a valid cosignature.

    Raises:
        VerificationError: an unusable certificate, another identity, or a bad signature.
    """
    identity, public = trust.verify_signer(c.signer_certificate)
    if identity.org_id != c.witness:
        raise VerificationError(f"cosignature claims witness {c.witness!r} but is signed by {identity}",
                                field="cosignature")
    try:
        public.verify(c.signature, COSIGN_CONTEXT + head_message(c.head))
    except InvalidSignature:
        raise VerificationError(f"cosignature by {c.witness} does not verify", field="cosignature") from None
    return c.witness


def check_quorum(head: broker_pb2.TreeHead, cosignatures: Collection[broker_pb2.Cosignature], trust: TrustAnchor,
                 witnesses: Collection[str], quorum: int) -> list[str]:
    """The configured witnesses that validly cosigned exactly this head; raises below the quorum."""
    good: set[str] = set()
    for c in cosignatures:
        if c.witness not in witnesses or c.head.SerializeToString() != head.SerializeToString():
            continue
        try:
            good.add(verify_cosignature(c, trust))
        except (VerificationError, IdentityError):
            continue
    if len(good) < quorum:
        raise VerificationError(
            f"tree head of size {head.size} carries {len(good)} of the {quorum} witness cosignatures required "
            f"(from {', '.join(sorted(witnesses)) or 'none'}): the broker may be showing us a private view",
            field="cosignature")
    return sorted(good)
