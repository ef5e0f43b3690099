"""Message kinds: their policy names, the envelope payload field of each, and where
the policy's condition values (phase, risk level, concerns) sit in the payload."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from olievlek.errors import WireError
from olievlek.v1 import broker_pb2, envelope_pb2


class MessageKind(StrEnum):
    """A message kind by its policy name; stored and logged as that string."""

    ALERT_MOVE = "alert.move"
    ALERT_SIGNAL = "alert.signal"
    HANDOVER = "handover"
    DIRECTORY_REGISTER = "directory.register"
    DIRECTORY_WITHDRAW = "directory.withdraw"
    QUERY_HIT = "query.hit"
    QUERY_RESULT = "query.result"
    DISCLOSURE_REQUEST = "disclosure.request"
    DISCLOSURE_RESPONSE = "disclosure.response"
    ERASURE_NOTICE = "erasure.notice"
    REPORT_AGGREGATE = "report.aggregate"
    ITEM_STATUS = "item.status"


@dataclass(frozen=True, slots=True)
class KindInfo:
    """How one message kind is named in policy and carried in the envelope."""

    kind: int  # envelope_pb2.MessageKind value
    name: MessageKind  # the policy's name, e.g. "alert.move"
    payload_field: str  # EnvelopeBody oneof member
    condition_path: str  # where phase/risk_level/concerns live: "" (top) or "summary"
    may_carry_pseudonym: bool = True
    recipients: tuple[int, int] = (1, 1)  # how many recipients an envelope of this kind names (min, max)

    @property
    def descriptor(self) -> Descriptor:
        field: FieldDescriptor = envelope_pb2.EnvelopeBody.DESCRIPTOR.fields_by_name[self.payload_field]
        assert field.message_type is not None
        return field.message_type


K, M = envelope_pb2, MessageKind
KINDS: tuple[KindInfo, ...] = (
    KindInfo(K.MESSAGE_KIND_ALERT_MOVE, M.ALERT_MOVE, "move_alert", "summary"),
    KindInfo(K.MESSAGE_KIND_ALERT_SIGNAL, M.ALERT_SIGNAL, "signal_alert", "", may_carry_pseudonym=False,
             recipients=(1, 64)),
    KindInfo(K.MESSAGE_KIND_HANDOVER, M.HANDOVER, "handover", "summary"),
    KindInfo(K.MESSAGE_KIND_DIRECTORY_REGISTER, M.DIRECTORY_REGISTER, "directory_register", "", recipients=(0, 0)),
    KindInfo(K.MESSAGE_KIND_DIRECTORY_WITHDRAW, M.DIRECTORY_WITHDRAW, "directory_withdraw", "", recipients=(0, 0)),
    KindInfo(K.MESSAGE_KIND_QUERY_HIT, M.QUERY_HIT, "hit_query", "", recipients=(0, 0)),
    KindInfo(K.MESSAGE_KIND_QUERY_RESULT, M.QUERY_RESULT, "query_result", ""),
    KindInfo(K.MESSAGE_KIND_DISCLOSURE_REQUEST, M.DISCLOSURE_REQUEST, "disclosure_request", ""),
    KindInfo(K.MESSAGE_KIND_DISCLOSURE_RESPONSE, M.DISCLOSURE_RESPONSE, "disclosure_response", ""),
    KindInfo(K.MESSAGE_KIND_ERASURE_NOTICE, M.ERASURE_NOTICE, "erasure_notice", ""),
    KindInfo(K.MESSAGE_KIND_REPORT_AGGREGATE, M.REPORT_AGGREGATE, "aggregate_report", "", may_carry_pseudonym=False),
    KindInfo(K.MESSAGE_KIND_ITEM_STATUS, M.ITEM_STATUS, "item_status", "", may_carry_pseudonym=False),
)
assert {k.name for k in KINDS} == set(MessageKind)
BY_NAME = {k.name: k for k in KINDS}
BY_KIND = {k.kind: k for k in KINDS}

PURPOSES: dict[str, int] = {
    n.removeprefix("PURPOSE_").lower(): v for n, v in envelope_pb2.Purpose.items() if v != 0
}


def kind_of(body: envelope_pb2.EnvelopeBody) -> KindInfo:
    """The kind an envelope body declares, checked against its payload.

    Raises:
        WireError: unknown kind, or a payload that is not the kind's.
    """
    info = BY_KIND.get(body.kind)
    if info is None:
        raise WireError(
            f"message kind {body.kind} has no payload defined",
            refusal_code=broker_pb2.REFUSAL_CODE_INVALID_ENUM, field="kind",
        )
    if body.WhichOneof("payload") != info.payload_field:
        raise WireError(
            f"kind {info.name} must carry payload {info.payload_field}",
            refusal_code=broker_pb2.REFUSAL_CODE_INVALID_FIELD, field="payload",
        )
    low, high = info.recipients
    if not low <= len(body.recipients) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise WireError(f"kind {info.name} names {want} recipient(s), this envelope {len(body.recipients)}",
                        refusal_code=broker_pb2.REFUSAL_CODE_INVALID_FIELD, field="recipients")
    if len(set(body.recipients)) != len(body.recipients):
        raise WireError("a recipient is named twice", refusal_code=broker_pb2.REFUSAL_CODE_INVALID_FIELD,
                        field="recipients")
    return info


def leaf_paths(desc: Descriptor, prefix: str = "") -> list[str]:
    """Every leaf field path of a payload message (sub-messages expanded)."""
    out: list[str] = []
    for fd in desc.fields:
        name = f"{prefix}.{fd.name}" if prefix else fd.name
        if fd.type == FieldDescriptor.TYPE_MESSAGE and not fd.is_repeated and fd.message_type is not None:
            out.extend(leaf_paths(fd.message_type, name))
        else:
            out.append(name)
    return out
