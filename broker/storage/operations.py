"""The broker's writes as typed operations: what the service asks the store to do in a batch's transaction.

The service builds an operation from checks that need no transaction (signature, policy, the directory read on
the reader connection); the group committer (``broker/committer.py``) queues operations - data, never
callables - and runs each batch's in one transaction through ``BrokerStore.execute``, which appends the
operation's audit leaves to the batch. An operation's result is a value of a type it names (``Accepted``,
``Conflict``, ``QueueFull``, ``OverLimit``, ``OverBudget``, ``Recorded`` ...), never an exception for an
expected outcome: a raising operation makes the committer run its batch again without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from olievlek.policy.model import EntryLimit
from olievlek.statuses import Decision, LoadOutcome

from .directory import OverBudget, OverLimit, Registration

R = TypeVar("R")
ViewerOf = Callable[[str], str | None]  # an org id -> its full identity under the enforced bundle
ViewersOf = Callable[[str, Sequence[str]], list[str]]  # (sender, recipients) -> who may read the event


class Operation(Generic[R]):
    """A write the store executes inside a batch's transaction; ``R`` is the type of its result."""

    __slots__ = ()


# -- results ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Accepted:
    """An envelope accepted: the stored answer, its leaf, and the leaf's (salt, metadata) when this call
    appended it (None: an earlier call with the same key and body did)."""

    response: bytes
    leaf_index: int
    leaf: tuple[bytes, bytes] | None


@dataclass(frozen=True, slots=True)
class Conflict:
    """The sender used the idempotency key before, for another body."""

    key: str


class QueueFull(Exception):
    """A recipient's queue, or one sender's share of it, is at its limit (a QUEUE_FULL refusal)."""

    def __init__(self, recipient: str, depth: int, limit: int, sender_share: bool = False) -> None:
        super().__init__(recipient)
        self.recipient, self.depth, self.limit, self.sender_share = recipient, depth, limit, sender_share


@dataclass(frozen=True, slots=True)
class Recorded:
    """A decision's leaf: its index and (salt, canonical metadata), for the caller's inclusion proof."""

    index: int
    leaf: tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Acked:
    """An acknowledged queue item: who sent it (its notices go there)."""

    sender: str


@dataclass(frozen=True, slots=True)
class NotQueued:
    """An acknowledgement of a sequence number this recipient has no item under (acked before, or never)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Queued:
    """One item of a recipient's queue, in sequence order."""

    seq: int
    item: str  # "envelope" | "expiry"
    payload: bytes
    leaf_index: int


@dataclass(frozen=True, slots=True)
class DatabaseState:
    """What a probe of the database saw: whether it answers as a read-write primary, which server answered
    ("" and 0 over a Unix socket, and on SQLite), and the standbys' replay lag if the role may see it."""

    primary: bool
    server: tuple[str, int]
    replication_lag_s: float | None


# -- the parts operations share ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One broker decision as the audit trail keeps it (no payload values)."""

    at_ms: int
    sender: str
    kind: str
    rule_id: str
    decision: Decision
    reason: str
    field: str
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Leaf:
    """An audit leaf to append: its metadata, who may read it (exact identities; the data-protection officers
    read every leaf), when."""

    meta: dict[str, object]
    viewers: tuple[str, ...]
    at_ms: int


@dataclass(frozen=True, slots=True)
class Due:
    """An envelope past its delivery deadline, still unacknowledged."""

    recipient: str
    seq: int
    sender: str
    idem_key: str
    rule_id: str
    enqueued_ms: int


@dataclass(frozen=True, slots=True)
class AckItem:
    seq: int
    outcome: str  # "stored" | "rejected" | ...: the AckOutcome's name, lower case
    reason: str


# -- directory changes, applied with the envelope that makes them -------------------
@dataclass(frozen=True, slots=True)
class Register:
    entry: Registration
    at_ms: int


@dataclass(frozen=True, slots=True)
class Withdraw:
    holder: str
    pseudonym: bytes


@dataclass(frozen=True, slots=True)
class NoteRequest:
    """A disclosure request routed (``asking``: it opens) or answered (it closes)."""

    requester: str
    holder: str
    pseudonym: bytes
    at_ms: int
    asking: bool


DirectoryChange = Register | Withdraw | NoteRequest


@dataclass(frozen=True, slots=True)
class AdmitEntry:
    """Count a new directory entry against its holder's limits first; over a limit, nothing is accepted."""

    holder: str
    pseudonym: bytes
    limit: EntryLimit
    periods: tuple[str, str]  # ("h:…", "d:…")


# -- operations ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Accept(Operation[Accepted | Conflict | QueueFull | OverLimit]):
    """Queue an accepted envelope for its recipients, keep its idempotency record and decision, append its leaf;
    a directory change happens in the same transaction, once, only for a new key.

    ``full`` is shared by the envelopes of one call: a recipient found full for one is refused for the next
    without a read, so a later envelope never overtakes a refused one."""

    key: str
    digest: bytes
    response: bytes
    envelope: bytes
    record: DecisionRecord
    meta: dict[str, object]
    expires_ms: int
    queue_limit: int
    share_limit: int
    viewers: tuple[str, ...]
    change: DirectoryChange | None = None
    admit: AdmitEntry | None = None
    full: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Record(Operation[Recorded]):
    """A decision without a queue row (a refusal, an answered query): its row and its leaf."""

    record: DecisionRecord
    meta: dict[str, object]
    viewers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendLeaves(Operation[list[Recorded]]):
    """Leaves of their own (counts reported, routing and query leaves of other holders)."""

    leaves: tuple[Leaf, ...]


@dataclass(frozen=True, slots=True)
class ChargeBudget(Operation[OverBudget | list[Recorded]]):
    """Count ``rows`` against an organisation's query budget; within it, append ``leaves`` (then ``record``, if
    any, as the last leaf); over it, nothing is counted or appended."""

    org: str
    periods: tuple[str, str]  # ("d:…", "m:…")
    rows: int
    limits: tuple[int, int]
    leaves: tuple[Leaf, ...]
    record: Record | None = None


@dataclass(frozen=True, slots=True)
class AggregateRefusal(Operation[int]):
    """One more refusal of ``viewer`` in its interval's aggregate (no leaf of its own); its place in the chain."""

    viewer: str
    interval_start_ms: int
    code: str
    env: bytes
    at_ms: int


@dataclass(frozen=True, slots=True)
class FlushAggregates(Operation[int]):
    """Every aggregate of an interval that started before ``before_ms`` becomes its one leaf; how many."""

    before_ms: int
    interval_ms: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class Acknowledge(Operation[list[Acked | NotQueued]]):
    """A recipient's acknowledgements: each removes its item and is logged; a rejection queues a notice."""

    recipient: str
    acks: tuple[AckItem, ...]
    at_ms: int
    viewer_of: ViewerOf


@dataclass(frozen=True, slots=True)
class Expire(Operation[int | None]):
    """Remove an expired envelope and queue ``notice`` for its sender; the expiry's leaf index (None: it was
    acknowledged meanwhile)."""

    due: Due
    notice: bytes
    meta: dict[str, object]
    at_ms: int
    viewer_of: ViewerOf


@dataclass(frozen=True, slots=True)
class CloseRequestsBefore(Operation[int]):
    """Forget open disclosure requests older than ``cutoff_ms``; how many."""

    cutoff_ms: int


@dataclass(frozen=True, slots=True)
class LoadPolicy(Operation[None]):
    """A bundle load attempt: its row and its leaf."""

    at_ms: int
    name: str
    version: int
    digest: str
    outcome: LoadOutcome
    reason: str


@dataclass(frozen=True, slots=True)
class Seed(Operation[None]):
    """Queue envelopes directly, skipping the checks (benches, and tests that redeliver); each still gets a
    real decision leaf."""

    recipient: str
    sender: str
    items: tuple[tuple[str, bytes], ...]
    at_ms: int
    expires_ms: int
    bundle: str
    viewers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BindQueueLeaves(Operation[int]):
    """Queued envelopes from before leaves bound their bytes each get a leaf that does; how many."""

    viewers_of: ViewersOf
    at_ms: int

