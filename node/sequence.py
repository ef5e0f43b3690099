"""The delivery stream's sequence numbers, as a recipient checks them (per log origin).

The broker numbers what it queues for this node 1, 2, 3, ... and delivers in that order; it redelivers
what was not acknowledged. So, at a node:

- a number at or below the highest one handled, and not among those seen but left unacknowledged, is a
  *repeat*: acknowledged as a duplicate without being looked at again, and counted;
- a number more than one above the highest seen opens a *gap*: the numbers between were queued for this
  node and never shown to it. An honest broker skips a number only when the delivery expired (a proven
  ``delivery.expired`` leaf for this node names it); the log watch settles gaps that way, and what stays
  unexplained is an audit alarm;
- the state is kept after the batch is stored and before its acknowledgements leave, so a crash between
  the two replays a batch the store deduplicates rather than skipping one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum

from olievlek import logs
from olievlek.metrics import Metrics
from olievlek.storage.sqlite import Txn

from . import evidence
from .store import NodeStore

log = logs.get("node.sequence")


class Seen(Enum):
    NEW = "new"
    REPEAT = "repeat"


@dataclass
class _Pending:
    """Changes of one batch, written before its acknowledgements leave."""

    held: set[int] = field(default_factory=set)
    released: set[int] = field(default_factory=set)
    gaps: list[tuple[int, int]] = field(default_factory=list)


class SequenceTracker:
    def __init__(self, store: NodeStore, origin: str, metrics: Metrics) -> None:
        self._store = store
        self.origin = origin
        self._metrics = metrics
        self._top: int | None = None
        self._held: set[int] = set()
        self._loaded = False
        self._pending = _Pending()

    async def load(self) -> None:
        if not self._loaded:
            self._top, self._held = await evidence.delivery_seqs(self._store.db, self.origin)
            self._loaded = True

    def forget(self) -> None:
        """Drop what was seen since the last write (its batch failed); the next batch reads the store."""
        self._loaded = False
        self._pending = _Pending()

    def see(self, seq: int) -> Seen:
        """Classify one delivered number (in stream order) and note a gap before it."""
        if seq in self._held:
            return Seen.NEW
        top = self._top
        if top is not None and seq <= top:
            self._metrics.delivery_repeats.inc()
            log.info("delivery.repeat", seq=seq, handled_up_to=top)
            return Seen.REPEAT
        if top is not None and seq > top + 1:
            self._pending.gaps.append((top + 1, seq - 1))
            self._metrics.delivery_gaps.labels(explained="pending").inc(seq - 1 - top)
            log.warning("delivery.gap", first=top + 1, last=seq - 1)
        self._top = seq
        return Seen.NEW

    def handled(self, seq: int) -> None:
        """Acknowledged (stored, duplicate or rejected)."""
        if seq in self._held:
            self._held.discard(seq)
            self._pending.released.add(seq)

    def left(self, seq: int) -> None:
        """Seen but not acknowledged (the proof could not be checked now): the broker redelivers it."""
        self._held.add(seq)
        self._pending.held.add(seq)
        self._pending.released.discard(seq)

    def changes(self, now_ms: int) -> Callable[[Txn], Awaitable[None]] | None:
        """This batch's changes, to write in the transaction that stores the batch (before its
        acknowledgements are sent); None when there is nothing to write."""
        if self._top is None:
            return None
        pending, self._pending = self._pending, _Pending()
        top, origin = self._top, self.origin

        async def op(tx: Txn) -> None:
            await evidence.keep_delivery_seqs_txn(tx, origin, top, pending.held, pending.released, pending.gaps,
                                                  now_ms)
        return op
