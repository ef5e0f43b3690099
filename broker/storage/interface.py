"""What the broker needs of its storage, as typed interfaces: the service is written against these, and
``BrokerStore`` (SQLite or PostgreSQL behind ``olievlek.storage``) is the one implementation.

Writes are operations (``operations.py``) executed in the group committer's transaction; everything else
here is a read on the reader connection, or - for records that are not decisions (a bundle's archive, a
witness's cosignature, an operator's counts) - a small transaction of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from olievlek.audit.log import Batch
from olievlek.storage.sqlite import Database, Txn

from .directory import Entry, OwnEntry
from .operations import DatabaseState, DecisionRecord, Due, Operation, Queued

R = TypeVar("R")


class Operations(Protocol):
    """Accepting decision batches, deliveries' acknowledgements, expiry, directory changes and budgets, policy
    loads: every write that appends to the audit log."""

    @property
    def db(self) -> Database: ...

    async def execute(self, tx: Txn, batch: Batch, op: Operation[R]) -> R: ...


class Queues(Protocol):
    """Idempotency records and the per-recipient queues."""

    async def idempotency(self, sender: str, key: str) -> tuple[bytes, bytes, int] | None: ...

    async def pending(self, recipient: str, after_seq: int, limit: int,
                      now_ms: int | None = None) -> list[Queued]: ...

    async def due(self, now_ms: int, limit: int) -> list[Due]: ...

    async def has_aggregates_before(self, before_ms: int) -> bool: ...

    async def queue_stats(self) -> list[tuple[str, int, int]]: ...

    async def decisions(self) -> list[DecisionRecord]: ...


class Directory(Protocol):
    """The reference directory's reads; its writes are the changes an accepted envelope carries."""

    async def lookup(self, pseudonyms: list[bytes]) -> dict[bytes, list[Entry]]: ...

    async def entry_of(self, pseudonym: bytes, holder: str) -> str | None: ...

    async def open_request(self, requester: str, holder: str, pseudonym: bytes) -> bool: ...

    async def has_requests_before(self, cutoff_ms: int) -> bool: ...

    async def own_entries(self, holder: str, after: bytes, limit: int) -> list[OwnEntry]: ...

    async def holder_counts(self, since_day: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]: ...


class PolicyRecords(Protocol):
    """Bundles enforced, their archives, and the operators' evaluation reports."""

    async def keep_bundle(self, digest: str, archive: bytes) -> None: ...

    async def bundle_archive(self, digest: str) -> bytes | None: ...

    async def enforced_policy_version(self) -> int: ...

    async def evaluations_since(self, since_ms: int, domain: int) -> dict[str, int]: ...

    async def store_evaluation_counts(self, operator: str, counts: object, received_ms: int) -> None: ...


class Cosignatures(Protocol):
    """The witnesses' cosignatures of the log's heads."""

    async def store_cosignature(self, size: int, witness: str, cosignature: bytes) -> None: ...

    async def latest_cosigned_size(self) -> int | None: ...

    async def cosignatures(self, size: int) -> list[bytes]: ...


class Instances(Protocol):
    """Leases among several broker instances over one database: delivery streams (the newest claim wins) and
    single-holder duties such as the checkpoint pusher (held until they expire)."""

    async def take_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool: ...

    async def claim_stream(self, recipient: str, holder: str) -> int: ...

    async def release_stream(self, recipient: str, holder: str, epoch: int) -> None: ...

    async def stream_owners(self, recipients: Sequence[str]) -> dict[str, tuple[str, int]]: ...

    async def queue_marks(self, recipients: Sequence[str]) -> dict[str, int]: ...

    async def database_state(self) -> DatabaseState: ...


class BrokerStorage(Operations, Queues, Directory, PolicyRecords, Cosignatures, Instances, Protocol):
    """Everything the broker's service reads and writes."""

    async def close(self) -> None: ...
