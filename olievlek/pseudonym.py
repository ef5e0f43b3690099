"""Subject pseudonyms from two operators' VOPRF shares (DESIGN.md section 6).

Pseudonym = epoch byte ‖ first 31 bytes of the 64-byte RFC 9497 Finalize
output under k = k1 + k2, computed obliviously:

1. the node blinds each normalised identifier (``prepare``);
2. both operators evaluate with their share and prove it (DLEQ) against a
   public point they sign with their CA-certified signing key;
3. the node verifies both signatures and both proofs, checks that each share
   was answered by the operator the signed bundle names for it and that
   K1 + K2 is the combined key the bundle names for this domain and epoch,
   adds the two evaluations, unblinds and finalizes (``combine``).

The bundle, not first use, says which key is right: a node that pinned the
first key it saw could be handed a rogue operator's key space at its first
call or at any new epoch, and nobody would notice that the same person has
different pseudonyms at two nodes.

No path computes a pseudonym without both operators and both proofs. This
module does no I/O; the node's transport calls the operators.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NewType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek import voprf
from olievlek.errors import VerificationError
from olievlek.identity import OrgKind
from olievlek.normalise import PrfInput
from olievlek.policy.model import PseudonymisationPolicy
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2, pseudonymiser_pb2

Pseudonym = NewType("Pseudonym", bytes)

PSEUDONYM_LEN = 32
KEY_CONTEXT = b"olievlek/v1/pseudonymiser-key\x00"
SHARES = (1, 2)


def from_output(epoch: int, output: bytes) -> Pseudonym:
    """The wire pseudonym: epoch byte, then the first 31 bytes of the 64-byte output."""
    if not 0 < epoch < 256 or len(output) != voprf.OUTPUT_LEN:
        raise ValueError("epoch must be 1..255 and the output 64 bytes")
    return Pseudonym(bytes([epoch]) + output[: PSEUDONYM_LEN - 1])


def key_message(key: pseudonymiser_pb2.PublishedKey) -> bytes:
    """What an operator signs about its public point."""
    return KEY_CONTEXT + struct.pack(">IIIQ", key.domain, key.epoch, key.share, key.created_at_ms) + \
        key.public_element


def sign_key(key: pseudonymiser_pb2.PublishedKey, signer: ed25519.Ed25519PrivateKey) -> None:
    key.signature = signer.sign(key_message(key))


def _bad(message: str) -> VerificationError:
    return VerificationError(message, refusal_code=broker_pb2.REFUSAL_CODE_BAD_SIGNATURE, field="pseudonymiser")


def domain_name(domain: int) -> str:
    """The bundle's word for a wire domain ("routing", "monitoring")."""
    return pseudonymiser_pb2.Domain.Name(domain).removeprefix("DOMAIN_").lower()  # type: ignore[arg-type]


def verify_key(key: pseudonymiser_pb2.PublishedKey, trust: TrustAnchor, domain: int, share: int,
               holder: str) -> str:
    """Check an operator's signed public point; return the operator's organisation id.

    ``holder`` is the identity the bundle names for ``share`` ("pseudonymiser/<id>").

    Raises:
        VerificationError: not the named holder's certificate, bad signature, wrong domain or share.
    """
    identity, public = trust.verify_signer(key.signer_certificate)
    if identity.kind != OrgKind.PSEUDONYMISER:
        raise _bad(f"{identity} is not a pseudonymiser operator")
    if str(identity) != holder:
        raise _bad(f"{identity} answered for share {share}, which the bundle gives to {holder}")
    try:
        public.verify(key.signature, key_message(key))
    except InvalidSignature:
        raise _bad(f"the public point of {identity} is not signed by it") from None
    if key.domain != domain or key.share != share or not voprf.is_element(key.public_element):
        raise _bad(f"{identity} answered for domain {key.domain} share {key.share}, asked {domain}/{share}")
    return str(identity.org_id)


@dataclass(frozen=True, slots=True)
class Prepared:
    """Blinds kept by the node between the two calls; never leave the node."""

    inputs: tuple[PrfInput, ...]
    blinds: tuple[bytes, ...]
    blinded: tuple[bytes, ...]


def prepare(inputs: Sequence[PrfInput]) -> Prepared:
    pairs = [voprf.blind(i.value) for i in inputs]
    return Prepared(tuple(inputs), tuple(r for r, _ in pairs), tuple(b for _, b in pairs))


@dataclass(frozen=True, slots=True)
class Combined:
    pseudonyms: tuple[Pseudonym, ...]
    epoch: int
    combined_key: bytes  # K1 + K2, to pin
    warnings: tuple[str, ...]  # operators that reported > 50 % of the daily budget


def combine(prepared: Prepared, evaluations: Sequence[pseudonymiser_pb2.Evaluation], trust: TrustAnchor,
            domain: int, keys: PseudonymisationPolicy) -> Combined:
    """Verify both operators' keys and proofs against the bundle's ``keys``, add the evaluations, unblind,
    finalize.

    Raises:
        VerificationError: a missing share, an epoch the bundle names no key for, a share answered by another
            operator than the one named, a bad signature or proof, epochs that differ, or a combined key
            other than the bundle's.
    """
    if sorted(e.key.share for e in evaluations) != list(SHARES):
        raise _bad("pseudonyms need one evaluation from each of the two operators")
    epochs = {e.key.epoch for e in evaluations}
    if len(epochs) != 1:
        raise _bad(f"the operators answered in different epochs {sorted(epochs)}")
    epoch = epochs.pop()
    expected = keys.key(domain_name(domain), epoch)
    if expected is None:
        raise _bad(f"the bundle names no operator key for domain {domain_name(domain)} epoch {epoch}")
    warnings = []
    for e in evaluations:
        org = verify_key(e.key, trust, domain, e.key.share, expected.holder(e.key.share))
        voprf.verify_proof(e.key.public_element, prepared.blinded, list(e.evaluated), e.proof)
        if e.budget_warning:
            warnings.append(org)
    combined_key = voprf.add(evaluations[0].key.public_element, evaluations[1].key.public_element)
    if combined_key != expected.key:
        raise _bad(f"the operators' shares do not add up to the bundle's key for domain {domain_name(domain)} "
                   f"epoch {epoch}")
    out = []
    for i, inp in enumerate(prepared.inputs):
        total = voprf.add(evaluations[0].evaluated[i], evaluations[1].evaluated[i])
        out.append(from_output(epoch, voprf.finalize(inp.value, prepared.blinds[i], total)))
    return Combined(tuple(out), epoch, combined_key, tuple(warnings))
