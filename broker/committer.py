"""Group commit: many concurrent decisions share one transaction, one fsync and one signed tree head.

Callers submit transaction functions ``op(tx, batch)``; the committer runs
whatever is queued (up to ``MAX_BATCH``) in one ``BEGIN IMMEDIATE`` … ``COMMIT``,
appends every leaf to the Merkle log, signs one head for the batch, commits,
and only then answers every caller with its result and the head. If one op
raises, the whole transaction rolls back, that op gets its error, and the
batch is committed again without it. No network call happens inside the
transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from olievlek import faults, logs
from olievlek.audit.log import AuditLog, Batch
from olievlek.clock import now_ms
from olievlek.store import Database, Txn
from olievlek.v1 import broker_pb2

log = logs.get("broker.committer")

T = TypeVar("T")
Op = Callable[[Txn, Batch], Awaitable[Any]]
MAX_BATCH = 512


class _OpFailed(Exception):
    def __init__(self, position: int, error: Exception) -> None:
        super().__init__(str(error))
        self.position = position
        self.error = error


class Committer:
    def __init__(self, db: Database, audit: AuditLog, bundle_digest: Callable[[], str]) -> None:
        self._db = db
        self.audit = audit
        self._digest = bundle_digest
        self._queue: asyncio.Queue[tuple[Op, asyncio.Future[tuple[Any, broker_pb2.TreeHead]]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self._pending: Batch | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, op: Callable[[Txn, Batch], Awaitable[T]]) -> tuple[T, broker_pb2.TreeHead]:
        fut: asyncio.Future[tuple[Any, broker_pb2.TreeHead]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, fut))
        # A cancelled caller cancels only its future: the committer skips answering it, and the
        # batch still commits (no shield needed, which saves a future per decision).
        result, head = await fut
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
        try:
            results, head = await self._attempt(items)
        except _OpFailed as failed:
            # Rare: one op raised. Answer it with its error and commit the others without it,
            # so a bad op never takes the batch down (and no savepoint costs every op a round trip).
            _, fut = items.pop(failed.position)
            if not fut.done():
                fut.set_exception(failed.error)
            if items:
                await self._commit(items)
            return
        assert self._pending is not None
        self.audit.commit(self._pending)
        self.batches += 1
        for value, (_, fut) in zip(results, items, strict=True):
            if not fut.done():
                fut.set_result((value, head))

    async def _attempt(self, items: list[tuple[Op, asyncio.Future[tuple[Any, broker_pb2.TreeHead]]]]
                       ) -> tuple[list[Any], broker_pb2.TreeHead]:
        results: list[Any] = []
        async with self._db.transaction() as tx:
            batch = self.audit.begin()
            for position, (op, _) in enumerate(items):
                try:
                    results.append(await op(tx, batch))
                except Exception as exc:
                    raise _OpFailed(position, exc) from exc
            head = await self.audit.write_txn(tx, batch, self._digest(), now_ms())
            faults.point("broker.before_commit")
        self._pending = batch
        return results, head
