"""Group commit: many concurrent decisions share one transaction, one fsync and one signed tree head.

Callers submit transaction functions ``op(tx, batch)``; the committer runs
whatever is queued (up to ``MAX_BATCH``) in one ``BEGIN IMMEDIATE`` … ``COMMIT``,
each op inside its own savepoint so one failing op rolls back alone (its
leaves included), appends every leaf to the Merkle log, signs one head for
the batch, commits, and only then answers every caller with its result and
the head. No network call happens inside the transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from olievlek import logs
from olievlek.audit.log import AuditLog, Batch
from olievlek.clock import now_ms
from olievlek.store import Database, Txn
from olievlek.v1 import broker_pb2

log = logs.get("broker.committer")

T = TypeVar("T")
Op = Callable[[Txn, Batch], Awaitable[Any]]
MAX_BATCH = 512


class Committer:
    def __init__(self, db: Database, audit: AuditLog, bundle_digest: Callable[[], str]) -> None:
        self._db = db
        self.audit = audit
        self._digest = bundle_digest
        self._queue: asyncio.Queue[tuple[Op, asyncio.Future[tuple[Any, broker_pb2.TreeHead]]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, op: Callable[[Txn, Batch], Awaitable[T]]) -> tuple[T, broker_pb2.TreeHead]:
        fut: asyncio.Future[tuple[Any, broker_pb2.TreeHead]] = asyncio.get_running_loop().create_future()
        await self._queue.put((op, fut))
        result, head = await asyncio.shield(fut)  # a cancelled caller does not cancel the commit
        return result, head

    async def _run(self) -> None:
        while True:
            items = [await self._queue.get()]
            while len(items) < MAX_BATCH and not self._queue.empty():
                items.append(self._queue.get_nowait())
            try:
                await self._commit(items)
            except Exception as exc:
                log.exception("commit.failed")
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)

    async def _commit(self, items: list[tuple[Op, asyncio.Future[tuple[Any, broker_pb2.TreeHead]]]]) -> None:
        results: list[tuple[bool, Any]] = []
        async with self._db.transaction() as tx:
            batch = self.audit.begin()
            for op, _ in items:
                mark = batch.mark()
                await tx.execute("SAVEPOINT op")
                try:
                    results.append((True, await op(tx, batch)))
                    await tx.execute("RELEASE op")
                except Exception as exc:  # this op alone is undone, leaves included
                    await tx.execute("ROLLBACK TO op")
                    await tx.execute("RELEASE op")
                    batch.reset(mark)
                    results.append((False, exc))
            head = await self.audit.write_txn(tx, batch, self._digest(), now_ms())
        self.audit.commit(batch)
        self.batches += 1
        for (ok, value), (_, fut) in zip(results, items, strict=True):
            if fut.done():
                continue
            if ok:
                fut.set_result((value, head))
            else:
                fut.set_exception(value)
