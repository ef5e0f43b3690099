"""Command-line names for wire enums: PHASE_FOLLOW_UP <-> follow-up."""

from __future__ import annotations

from typing import Protocol, TypeVar

import typer

from olievlek.i18n import N_
from olievlek.statuses import InboxStatus
from olievlek.v1 import local_pb2, summary_pb2

V = TypeVar("V", bound=int)


class WireEnum(Protocol[V]):
    """A generated protobuf enum: its members and their typed values."""

    def items(self) -> list[tuple[str, V]]: ...


def names(enum: WireEnum[V], prefix: str) -> dict[str, V]:
    return {
        n.removeprefix(prefix).lower().replace("_", "-"): v
        for n, v in enum.items()
        if not n.endswith("_UNSPECIFIED")
    }


PHASES = names(summary_pb2.Phase, "PHASE_")
CONCERNS = names(summary_pb2.ConcernCategory, "CONCERN_CATEGORY_")
RISKS = names(summary_pb2.RiskLevel, "RISK_LEVEL_")
AGENCIES = names(summary_pb2.AgencyRole, "AGENCY_ROLE_")
PURPOSES = names(local_pb2.AccessPurpose, "ACCESS_PURPOSE_")
DISCLOSABLE = names(summary_pb2.DisclosableField, "DISCLOSABLE_FIELD_")
DENIALS = names(summary_pb2.DenialReason, "DENIAL_REASON_")


def parse(table: dict[str, V], what: str, value: str) -> V:
    try:
        return table[value]
    except KeyError:
        raise typer.BadParameter(f"unknown {what} {value!r}; choose from {', '.join(table)}") from None


def name_of(table: dict[str, V], value: int) -> str:
    for k, v in table.items():
        if v == value:
            return k
    return "-"


# What an inbox item's status reads as (translated where it is shown).
INBOX_STATUSES = {
    InboxStatus.PENDING_IDENTIFICATION: N_("pending identification"), InboxStatus.IDENTIFIED: N_("identified"),
    InboxStatus.ACCEPTED: N_("accepted"), InboxStatus.RETURNED: N_("returned"),
    InboxStatus.PENDING_DECISION: N_("pending decision"), InboxStatus.APPROVED: N_("approved"),
    InboxStatus.DENIED: N_("denied"), InboxStatus.EXPIRED: N_("expired"), InboxStatus.RECEIVED: N_("received"),
}
assert set(INBOX_STATUSES) == set(InboxStatus)
OUTBOX_STATUSES = {
    local_pb2.OUTBOX_STATUS_UNSPECIFIED: N_("unknown"), local_pb2.OUTBOX_STATUS_PENDING: N_("pending"),
    local_pb2.OUTBOX_STATUS_ACCEPTED: N_("accepted"), local_pb2.OUTBOX_STATUS_REFUSED: N_("refused"),
    local_pb2.OUTBOX_STATUS_EXPIRED: N_("expired"), local_pb2.OUTBOX_STATUS_QUEUED: N_("queued"),
    local_pb2.OUTBOX_STATUS_REJECTED: N_("rejected"),
}
assert set(OUTBOX_STATUSES) == set(local_pb2.OutboxStatus.values())
# An outcome the witnesses do not back yet never reads like a final one (node/witness_watch.py).
AWAITING_WITNESSES = N_("awaiting witnesses")
UNCONFIRMED = N_("unconfirmed: perhaps it never arrived — contact the recipient")


def confirmed(status: str, confirmation: int) -> str:
    """What to show for an outcome: its own words only once the witnesses back it."""
    if confirmation == local_pb2.CONFIRMATION_AWAITING_WITNESSES:
        return AWAITING_WITNESSES
    if confirmation == local_pb2.CONFIRMATION_UNCONFIRMED:
        return UNCONFIRMED
    return status
