"""The states things pass through at a node and at the broker, as enums.

Stored as their string values (SQL keeps the strings; code reads them through these enums), so a
database written before they existed reads the same.
"""

from __future__ import annotations

from enum import StrEnum


class OutboxStatus(StrEnum):
    """An outbox row: queued (the intent, committed with the business change) -> pending (envelope built,
    signed and stored; sent as these bytes until answered) -> accepted | refused | failed; accepted ->
    expired (the recipient did not acknowledge in time) or rejected (the recipient refused it); a queued or
    pending row whose case was erased is cancelled."""

    QUEUED = "queued"
    PENDING = "pending"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    @property
    def unanswered(self) -> bool:
        """Not yet answered by the broker: the row may still leave (or, if queued, be cancelled)."""
        return self in (OutboxStatus.QUEUED, OutboxStatus.PENDING)


class InboxStatus(StrEnum):
    """An inbox item. Alerts and handovers: pending_identification -> identified -> accepted | returned.
    Disclosure requests: pending_decision -> approved | denied | expired. Disclosure answers: received."""

    PENDING_IDENTIFICATION = "pending_identification"
    IDENTIFIED = "identified"
    ACCEPTED = "accepted"
    RETURNED = "returned"
    PENDING_DECISION = "pending_decision"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    RECEIVED = "received"


class CaseStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    ERASED = "erased"


class LoadOutcome(StrEnum):
    """What became of a signed policy bundle a service was given."""

    ENFORCED = "enforced"
    REFUSED = "refused"


class Decision(StrEnum):
    """The broker's decision on an input, as its audit leaf and decision row record it."""

    ACCEPTED = "accepted"
    REFUSED = "refused"


class RefusalProof(StrEnum):
    """A node's interval of refusals covered by one aggregated leaf: provisional until that leaf is proven and
    its chain matches the envs the node kept (proven), or shown not to (unproven: an audit alarm)."""

    PROVISIONAL = "provisional"
    PROVEN = "proven"
    UNPROVEN = "unproven"


class Confirmation(StrEnum):
    """Whether the witnesses back an outcome of an outbox or inbox row: provisional until a quorum-cosigned head
    covers its leaf (final); unconfirmed when none did within the node's bound (perhaps it never arrived)."""

    PROVISIONAL = "provisional"
    FINAL = "final"
    UNCONFIRMED = "unconfirmed"
