"""Time bounds the broker and the nodes share: how far a created-at may be from the broker's clock, how long
an unacknowledged delivery outlives its rule's time-to-live before the expiry sweep removes it, and how
often that sweep runs. A recipient uses them to refuse what no honest broker could have delivered."""

from __future__ import annotations

from typing import Final

CLOCK_WINDOW_MS: Final = 300_000  # created-at within 5 minutes of the broker's clock
EXPIRY_GRACE_MS: Final = 120_000  # an in-flight acknowledgement may still arrive this long after the deadline
EXPIRY_SWEEP_MS: Final = 30_000  # the broker looks for expired deliveries this often (its default)


def oldest_deliverable_created_at(accepted_at_ms: int, ttl_ms: int) -> int:
    """The earliest created-at of an envelope accepted at ``accepted_at_ms`` under a rule with time-to-live
    ``ttl_ms``: accepted within the clock window of its creation, it was delivered before it expired."""
    return accepted_at_ms - CLOCK_WINDOW_MS - ttl_ms - EXPIRY_GRACE_MS - EXPIRY_SWEEP_MS


def last_delivery_at(accepted_at_ms: int, ttl_ms: int) -> int:
    """The latest time (a recipient's clock) a delivery accepted at ``accepted_at_ms`` under a time-to-live of
    ``ttl_ms`` can arrive: the broker stops delivering at the deadline; an acknowledgement may be in flight
    for the grace period, and the clocks may differ by the window."""
    return accepted_at_ms + ttl_ms + EXPIRY_GRACE_MS + EXPIRY_SWEEP_MS + CLOCK_WINDOW_MS
