"""Witness cosignatures (C2SP ``tlog-cosignature``, cosignature/v1) of the log's checkpoints, and the quorum check.

Whose cosignature counts is the bundle's ``witnesses:`` section (``WitnessPolicy``): a cosignature names its
witness by org id (its identity is ``witness/<id>``; the wire carries tokens only) and must verify, under the
key name and Ed25519 key the bundle names for that witness, over the head's signed checkpoint - never under
whatever key a certificate carries, so a certificate of another kind (``monitor``, say) or a witness the
bundle does not name counts for nothing. A cosignature carries the witness's own timestamp (POSIX seconds),
which is how a node learns how fresh a head is without trusting the broker's clock. No I/O.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek.errors import VerificationError
from olievlek.identity import OrgKind
from olievlek.policy.model import WitnessKey, WitnessPolicy
from olievlek.v1 import broker_pb2

from . import note


def witness_verifier(w: WitnessKey) -> note.Verifier:
    return note.Verifier(w.key_name, note.COSIGNATURE_V1, w.key)


def cosign(head: broker_pb2.TreeHead, witness: str, key_name: str, key: ed25519.Ed25519PrivateKey,
           timestamp: int) -> broker_pb2.Cosignature:
    """``witness`` is the witness's org id (its identity is ``witness/<id>``); ``timestamp`` in POSIX seconds."""
    text = note.parse(head.checkpoint).text
    return broker_pb2.Cosignature(witness=witness, head=head,
                                  line=note.cosign(text, key_name, key, timestamp).line.encode())


def verify_cosignature(c: broker_pb2.Cosignature, witnesses: WitnessPolicy) -> tuple[str, int]:
    """The identity of the witness behind a valid cosignature, and the time it gives.

    Raises:
        VerificationError: a witness the bundle does not name, a head without a checkpoint, or a line that
            does not verify under the key the bundle names for that witness.
    """
    named = witnesses.key_of(f"{OrgKind.WITNESS.value}/{c.witness}")
    if named is None:
        raise VerificationError(f"witness/{c.witness} is not a witness of the enforced bundle", field="witness")
    if not c.head.checkpoint:
        raise VerificationError(f"the head of size {c.head.size} has no checkpoint to cosign", field="head")
    try:
        text = note.parse(c.head.checkpoint).text
        cosigned = note.parse(text + "\n" + c.line.decode())
    except (VerificationError, UnicodeDecodeError):
        raise VerificationError(f"the cosignature by {c.witness} is not a note signature line", field="line") from None
    if len(cosigned.signatures) != 1 or not note.verify(cosigned, witness_verifier(named)):
        raise VerificationError(f"the cosignature by {c.witness} is not one by the key the bundle names "
                                f"({named.key_name})", field="line")
    return named.identity, note.cosignature_time(cosigned.signatures[0])


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
    return quorum_time(head, cosignatures, witnesses, quorum)[0]


def quorum_time(head: broker_pb2.TreeHead, cosignatures: list[broker_pb2.Cosignature], witnesses: WitnessPolicy,
                quorum: int) -> tuple[list[str], int]:
    """``check_quorum``, and the time (Unix seconds, from the witnesses' own signed cosignature/v1 timestamps -
    never the log's clock) by which ``quorum`` of them had cosigned this head: the quorum-th latest of their
    latest timestamps (0 with no cosignature).

    Raises:
        VerificationError: fewer than ``quorum`` of the bundle's witnesses validly cosigned this head.
    """
    latest: dict[str, int] = {}
    for c in cosignatures:
        if c.head.SerializeToString() != head.SerializeToString():
            continue
        try:
            identity, at = verify_cosignature(c, witnesses)
        except VerificationError:
            continue
        latest[identity] = max(at, latest.get(identity, 0))
    good = set(latest)
    if len(good) < quorum:
        raise VerificationError(
            f"tree head of size {head.size} carries {len(good)} of the {quorum} witness cosignatures required "
            f"(from {', '.join(sorted(witnesses.identities)) or 'no witness'}): the broker may be showing us a "
            "private view", field="cosignature")
    times = sorted(latest.values(), reverse=True)
    return sorted(good), (times[max(quorum, 1) - 1] if times else 0)


def cosigned_note(head: broker_pb2.TreeHead, cosignatures: list[broker_pb2.Cosignature]) -> str:
    """The head's checkpoint with the witnesses' cosignature lines added: one note anyone can archive and
    check with the log's key and the witnesses' keys (``olievlek audit checkpoint``)."""
    signed = note.parse(head.checkpoint)
    extra = [note.parse(signed.text + "\n" + c.line.decode()).signatures[0] for c in cosignatures
             if c.head.SerializeToString() == head.SerializeToString()]
    return note.Note(signed.text, (*signed.signatures, *extra)).encode()


def note_quorum(signed: note.Note, witnesses: WitnessPolicy, quorum: int) -> list[str]:
    """The bundle's witnesses whose cosignature/v1 of this note's checkpoint verifies; raises below ``quorum``."""
    good = []
    for w in witnesses.members:
        try:
            if note.verify(signed, witness_verifier(w)):
                good.append(w.identity)
        except VerificationError:
            continue
    if len(good) < quorum:
        raise VerificationError(f"the checkpoint carries {len(good)} of the {quorum} witness cosignatures required",
                                field="cosignature")
    return good


def tlog_policy(origin: str, log_key: ed25519.Ed25519PublicKey, witnesses: WitnessPolicy,
                urls: dict[str, str] | None = None) -> str:
    """A C2SP ``tlog-policy`` file for this log and the bundle's witnesses and quorum, for external
    verifiers and witnesses (``olievlek policy tlog-policy``)."""
    log_vkey = note.Verifier(origin, note.ED25519, log_key.public_bytes_raw()).vkey
    lines = [f"# {origin}: the bundle's witnesses and quorum", f"log {log_vkey}"]
    for w in witnesses.members:
        url = (urls or {}).get(w.identity, "")
        lines.append(f"witness {w.identity} {witness_verifier(w).vkey}" + (f" {url}" if url else ""))
    if witnesses.members:
        lines.append(f"group witnesses {witnesses.quorum} " + " ".join(w.identity for w in witnesses.members))
        lines.append("quorum witnesses")
    else:
        lines.append("quorum none")
    return "\n".join(lines) + "\n"
