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
