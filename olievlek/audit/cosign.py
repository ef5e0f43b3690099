"""Witness cosignatures over signed tree heads, and the quorum check nodes run. No I/O.

Whose cosignature counts is the bundle's ``witnesses:`` section (``WitnessPolicy``): a cosignature names its
witness by full identity ("witness/<id>") and verifies under the Ed25519 key the bundle names for that
witness - never under whatever key a certificate carries, so a certificate of another kind (``monitor``,
say) or a witness the bundle does not name counts for nothing. On the wire a cosignature carries the
witness's org id (a token); its kind is always ``witness``.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek.errors import VerificationError
from olievlek.identity import OrgKind
from olievlek.policy.model import WitnessKey, WitnessPolicy
from olievlek.v1 import broker_pb2

from .log import head_message

COSIGN_CONTEXT = b"olievlek/v1/cosignature\x00"


def cosign(head: broker_pb2.TreeHead, witness: str, key: ed25519.Ed25519PrivateKey,
           cert_der: bytes) -> broker_pb2.Cosignature:
    """``witness`` is the witness's org id (its identity is ``witness/<id>``)."""
    return broker_pb2.Cosignature(witness=witness, head=head, signature=key.sign(COSIGN_CONTEXT + head_message(head)),
                                  signer_certificate=cert_der)


def verify_cosignature(c: broker_pb2.Cosignature, witnesses: WitnessPolicy) -> str:
    """The identity of the witness behind a valid cosignature.

    Raises:
        VerificationError: a witness the bundle does not name, or a signature that does not verify under
            the key the bundle names for it.
    """
    named = witnesses.key_of(f"{OrgKind.WITNESS.value}/{c.witness}")
    if named is None:
        raise VerificationError(f"witness/{c.witness} is not a witness of the enforced bundle", field="witness")
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(named.key).verify(c.signature,
                                                                     COSIGN_CONTEXT + head_message(c.head))
    except (InvalidSignature, ValueError):
        raise VerificationError(f"cosignature by {c.witness} does not verify under the key the bundle names "
                                f"({named.key_name})", field="signature") from None
    return named.identity


def effective_witnesses(bundle: WitnessPolicy, configured: tuple[WitnessKey, ...],
                        configured_quorum: int) -> tuple[WitnessPolicy, int, str]:
    """The witnesses a node counts and the quorum it demands, with a diagnostic ("" when none).

    The bundle's witnesses and quorum rule; a node's configuration may only raise the quorum. A bundle
    that names no witnesses leaves the node's configured ones and quorum in force, said loudly - never
    quorum 0 by omission.
    """
    if bundle.members:
        return bundle, max(bundle.quorum, configured_quorum), ""
    if configured_quorum > 0:
        return (WitnessPolicy(configured_quorum, configured), configured_quorum,
                f"the bundle names no witnesses: the {len(configured)} configured here count, quorum "
                f"{configured_quorum}")
    return WitnessPolicy(), 0, "the bundle names no witnesses and none are configured: heads are not witnessed"


def check_quorum(head: broker_pb2.TreeHead, cosignatures: list[broker_pb2.Cosignature], witnesses: WitnessPolicy,
                 quorum: int) -> list[str]:
    """The bundle's witnesses that validly cosigned exactly this head; raises below ``quorum``."""
    good: set[str] = set()
    for c in cosignatures:
        if c.head.SerializeToString() != head.SerializeToString():
            continue
        try:
            good.add(verify_cosignature(c, witnesses))
        except VerificationError:
            continue
    if len(good) < quorum:
        raise VerificationError(
            f"tree head of size {head.size} carries {len(good)} of the {quorum} witness cosignatures required "
            f"(from {', '.join(sorted(witnesses.identities)) or 'no witness'}): the broker may be showing us a "
            "private view", field="cosignature")
    return sorted(good)
