"""Message kinds: their policy names and the envelope payload field of each."""

from __future__ import annotations

from dataclasses import dataclass

from olievlek.errors import WireError
from olievlek.v1 import broker_pb2, envelope_pb2


@dataclass(frozen=True, slots=True)
class KindInfo:
    """How one message kind is named in policy and carried in the envelope."""

    kind: int  # envelope_pb2.MessageKind value
    name: str  # the policy's name, e.g. "alert.move"
    payload_field: str  # EnvelopeBody oneof member


KINDS: tuple[KindInfo, ...] = (
    KindInfo(envelope_pb2.MESSAGE_KIND_ALERT_MOVE, "alert.move", "move_alert"),
)
BY_NAME = {k.name: k for k in KINDS}
BY_KIND = {k.kind: k for k in KINDS}


def kind_of(body: envelope_pb2.EnvelopeBody) -> KindInfo:
    """The kind an envelope body declares, checked against its payload.

    Raises:
        WireError: unknown kind, or a payload that is not the kind's.
    """
    info = BY_KIND.get(body.kind)
    if info is None:
        raise WireError(
            f"message kind {body.kind} has no payload defined yet",
            refusal_code=broker_pb2.REFUSAL_CODE_INVALID_ENUM, field="kind",
        )
    if body.WhichOneof("payload") != info.payload_field:
        raise WireError(
            f"kind {info.name} must carry payload {info.payload_field}",
            refusal_code=broker_pb2.REFUSAL_CODE_INVALID_FIELD, field="payload",
        )
    return info
