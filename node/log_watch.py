"""Reads what the log shows this node and settles what waited for a leaf.

Two things a node takes from its broker cannot be proven at once: a refusal counted into an interval's
aggregated leaf (the leaf is written when the interval ends), and a gap in the delivery sequence (an
honest broker skips a number only when the delivery expired, and the expiry's leaf may follow the gap by
the grace period). The watch reads the events visible to this node (``AuditEvents``, from where it last
stopped), proves each one it uses (``GetInclusion`` to a head that extends the node's), and then:

- an aggregated refusal leaf of this node: proven when its count is the number of refusals the node kept
  for the interval and its chain is the chain over their ``env``s in the broker's order; otherwise an alarm;
- an expiry of a delivery to this node: its sequence number explains that number of a gap.

What is still unsettled after ``alarm_after_ms`` is an alarm: a leaf that never came, a gap nothing explains.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from olievlek import logs
from olievlek.audit.refusal_chain import chain_over
from olievlek.clock import now_ms as clock_now
from olievlek.errors import TransportError, VerificationError
from olievlek.metrics import Metrics
from olievlek.statuses import RefusalProof
from olievlek.storage.sqlite import Txn
from olievlek.v1 import broker_pb2

from . import evidence
from .audit_check import AuditChecker
from .broker_client import BrokerClient
from .store import NodeStore

log = logs.get("node.log_watch")

PAGE = 1000
ALARM_AFTER_MS = 600_000  # beyond the broker's refusal interval, expiry grace and sweep period


class LogWatch:
    def __init__(self, org_id: str, store: NodeStore, client: BrokerClient, audit: AuditChecker, origin: str,
                 metrics: Metrics, alarm_after_ms: int = ALARM_AFTER_MS) -> None:
        self._org_id = org_id
        self._store = store
        self._client = client
        self._audit = audit
        self._origin = origin
        self._metrics = metrics
        self._alarm_after_ms = alarm_after_ms

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.pass_once()
            except TransportError as exc:
                log.info("log_watch.unreachable", error=exc.message)
            except Exception:  # never let the watch die; the next round retries
                log.exception("log_watch.failed")

    async def pass_once(self, now_ms: int | None = None) -> None:
        """Read new events, settle what they prove, alarm on what stayed unsettled too long."""
        now = clock_now() if now_ms is None else now_ms
        await self._read_events()
        await self._settle_gaps(now)
        await self._overdue_intervals(now)

    async def _read_events(self) -> None:
        db = self._store.db
        cursor = await evidence.watch_cursor(db)
        while True:
            page = await self._client.audit_events(cursor, PAGE)
            for event in page.events:
                await self._use(event, page.head)
            if page.events:
                cursor = page.events[-1].index + 1
                await self._store.writer.write(functools.partial(evidence.set_watch_cursor_txn, index=cursor))
            if not page.next_index:
                return

    async def _use(self, event: broker_pb2.AuditEvent, head: broker_pb2.TreeHead) -> None:
        try:
            meta: dict[str, Any] = json.loads(event.metadata) if event.metadata else {}
        except json.JSONDecodeError:
            return
        what = meta.get("event")
        if what == "delivery.expired" and meta.get("recipient") == self._org_id and isinstance(meta.get("seq"), int):
            await self._expiry(event, head, meta)
        elif what == "refusals.aggregated" and meta.get("sender") == self._org_id:
            await self._aggregated(event, head, meta)

    async def _expiry(self, event: broker_pb2.AuditEvent, head: broker_pb2.TreeHead, meta: dict[str, Any]) -> None:
        try:
            await self._audit.prove_event(event, head, {"event": "delivery.expired", "recipient": self._org_id,
                                                        "seq": meta["seq"]})
        except VerificationError:
            return  # alarmed by the checker
        origin, seq, index = self._origin, int(meta["seq"]), event.index

        async def op(tx: Txn) -> None:
            await evidence.keep_expired_txn(tx, origin, seq, index)
        await self._store.writer.write(op)

    async def _aggregated(self, event: broker_pb2.AuditEvent, head: broker_pb2.TreeHead,
                          meta: dict[str, Any]) -> None:
        start = meta.get("interval_start_ms")
        if not isinstance(start, int) or await evidence.interval_state(self._store.db, start) \
                != RefusalProof.PROVISIONAL:
            return
        try:
            await self._audit.prove_event(event, head, {"event": "refusals.aggregated", "sender": self._org_id,
                                                        "interval_start_ms": start})
        except VerificationError:
            return  # alarmed by the checker; the interval stays provisional
        kept = await evidence.interval_envs(self._store.db, start)
        count = meta.get("count")
        places = [p for p, _ in kept]
        if places != list(range(1, len(kept) + 1)) or count != len(kept):
            state, reason = RefusalProof.UNPROVEN, "refusal_count_differs"
        elif chain_over(e for _, e in kept).hex() != meta.get("chain"):
            state, reason = RefusalProof.UNPROVEN, "refusal_chain_differs"
        else:
            state, reason = RefusalProof.PROVEN, ""
        if reason:
            self._audit.alarm(reason, interval_start_ms=start, leaf=event.index, leaf_count=count, kept=len(kept))
        else:
            log.info("refusals.proven", interval_start_ms=start, leaf=event.index, count=count)
        index = event.index

        async def op(tx: Txn) -> None:
            await evidence.settle_interval_txn(tx, start, state, index)
            if state == RefusalProof.PROVEN:
                await evidence.place_interval_txn(tx, start, index)
        await self._store.writer.write(op)

    async def _settle_gaps(self, now: int) -> None:
        for gap in await evidence.open_gaps(self._store.db, self._origin):
            explained = await evidence.explained_in(self._store.db, gap)
            if explained < gap.size and now - gap.seen_ms < self._alarm_after_ms:
                continue  # its expiries may still be logged
            if explained:
                self._metrics.delivery_gaps.labels(explained="yes").inc(explained)
            if explained < gap.size:
                self._metrics.delivery_gaps.labels(explained="no").inc(gap.size - explained)
                self._audit.alarm("delivery_gap", first=gap.first, last=gap.last, unexplained=gap.size - explained)
            else:
                log.info("delivery.gap_explained", first=gap.first, last=gap.last)

            async def op(tx: Txn, gap: evidence.Gap = gap) -> None:
                await evidence.settle_gap_txn(tx, gap)
            await self._store.writer.write(op)

    async def _overdue_intervals(self, now: int) -> None:
        for start, alarmed in await evidence.provisional_intervals(self._store.db):
            if alarmed or now - start < self._alarm_after_ms:
                continue
            self._audit.alarm("refusal_leaf_missing", interval_start_ms=start)

            async def op(tx: Txn, start: int = start) -> None:
                await evidence.mark_interval_alarmed_txn(tx, start)
            await self._store.writer.write(op)
