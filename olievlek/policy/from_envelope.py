"""Turning a verified envelope into a policy request: shapes and enum names, never values."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from olievlek import wire
from olievlek.envelope import OpenedEnvelope
from olievlek.identity import OrgId
from olievlek.v1 import envelope_pb2

from .engine import Request

_PREFIXES = {"phase": "PHASE_", "risk_level": "RISK_LEVEL_", "concerns": "CONCERN_CATEGORY_"}


def _enum_name(msg: Message, field: str, value: int) -> str:
    fd = msg.DESCRIPTOR.fields_by_name[field]
    assert fd.enum_type is not None
    name: str = fd.enum_type.values_by_number[value].name
    return name.removeprefix(_PREFIXES[field]).lower()


def _contacts(msg: Message, prefix: str = "") -> list[tuple[str, str]]:
    """Every singular ``contact_id`` in the payload with its path: the sender's own contacts."""
    out: list[tuple[str, str]] = []
    for fd, value in msg.ListFields():
        path = f"{prefix}.{fd.name}" if prefix else fd.name
        if fd.name == "contact_id":
            out.append((path, str(value)))
        elif fd.message_type is not None and not fd.is_repeated:
            out.extend(_contacts(value, path))
    return out


def request_from_envelope(opened: OpenedEnvelope) -> Request:
    body = opened.body
    payload = opened.payload
    cond: Message | None = payload
    if opened.kind.condition_path:
        cond = getattr(payload, opened.kind.condition_path) if payload.HasField(opened.kind.condition_path) else None
    values: dict[str, Any] = {}
    if cond is not None:
        values = {fd.name: value for fd, value in cond.ListFields() if fd.name in _PREFIXES}
    phase = _enum_name(cond, "phase", values["phase"]) if cond is not None and "phase" in values else None
    risk = _enum_name(cond, "risk_level", values["risk_level"]) if cond is not None and "risk_level" in values else None
    concerns = frozenset(_enum_name(cond, "concerns", c) for c in values.get("concerns", ())) if cond else frozenset()
    return Request(
        kind=opened.kind.name, sender=OrgId(body.sender), recipients=tuple(OrgId(r) for r in body.recipients),
        rule_id=body.rule_id, present_fields=frozenset(wire.present_fields(payload)), phase=phase,
        risk_level=risk, concerns=concerns, contacts=tuple(_contacts(payload)),
        purpose=envelope_pb2.Purpose.Name(body.purpose).removeprefix("PURPOSE_").lower(),
    )
