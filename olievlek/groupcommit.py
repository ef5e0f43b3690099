"""Group commit: many concurrent writes share one transaction and one fsync.

Callers submit operations (the broker: typed operations its store executes; a
node: transaction functions); one task runs whatever is queued (up to
``max_batch``) in one ``BEGIN IMMEDIATE`` … ``COMMIT`` and only then answers
every caller. Ops run in submission order, so a caller that submits A before B
(without awaiting in between) sees A committed no later than B. If one op
raises, the transaction rolls back, that op gets its error, and the batch is
committed again without it (no savepoint, which would cost every op a round
trip). ``stop`` drains: everything submitted before it is committed.

Subclasses add work to every batch through the hooks (the broker appends the
batch's audit leaves and signs one tree head before the commit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, cast

from olievlek import logs
from olievlek.errors import ConnectionLost, ShuttingDown
from olievlek.lifecycle import read_outcome
from olievlek.storage.sqlite import Database, Txn

log = logs.get("groupcommit")

T = TypeVar("T")
Item = TypeVar("Item")
Ctx = TypeVar("Ctx")
Extra = TypeVar("Extra")
_Queued = tuple[Item, "asyncio.Future[tuple[Any, Extra]]"]  # an item and its caller's future

MAX_BATCH = 512
RECONNECT_FOR_S = 30.0  # a failover with Patroni's lab timings takes under 15 s, with its defaults 30-45 s


class _OpFailed(Exception):
    def __init__(self, position: int, error: Exception) -> None:
        super().__init__(str(error))
        self.position = position
        self.error = error


class GroupCommitter(Generic[Item, Ctx, Extra]):
    """One writer task per database; ``_execute`` runs one queued item in the batch's transaction."""

    def __init__(self, db: Database, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Queued[Item, Extra] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.batches = 0
        self.reconnect_for_s = RECONNECT_FOR_S
        self.reconnects = 0

    # -- hooks ----------------------------------------------------------
    async def _execute(self, tx: Txn, ctx: Ctx, item: Item) -> Any:
        raise NotImplementedError

    async def _begin(self, tx: Txn) -> Ctx:
        """The batch's context, first thing in its transaction (the broker: the log's writer lock)."""
        return None  # type: ignore[return-value]

    async def _before_commit(self, tx: Txn, ctx: Ctx) -> Extra:
        return None  # type: ignore[return-value]

    def _after_commit(self, ctx: Ctx) -> None:
        return None

    # -- API ------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Commit everything already submitted, then stop."""
        if self._task is None or self._stopping:
            return
        self._stopping = True
        self._queue.put_nowait(None)
        await self._task

    def enqueue(self, item: Item) -> asyncio.Future[tuple[Any, Extra]]:
        """Queue ``item`` now (order is submission order); await the future for (result, extra)."""
        if self._stopping:
            raise ShuttingDown("the service is shutting down; nothing new is accepted")
        fut: asyncio.Future[tuple[Any, Extra]] = asyncio.get_running_loop().create_future()
        # A caller that stops awaiting (an earlier op of its batch failed, or it was cancelled) leaves
        # the error unread: read it here so asyncio does not report it as lost; awaiters still get it.
        fut.add_done_callback(read_outcome)
        self._queue.put_nowait((item, fut))
        return fut

    async def submit(self, item: Item) -> tuple[Any, Extra]:
        # A cancelled caller cancels only its future: the batch still commits without answering it.
        result, extra = await self.enqueue(item)
        return result, extra

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            items = [] if first is None else [first]
            done = first is None
            while len(items) < self._max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    done = True
                    continue
                items.append(nxt)
            if items:
                try:
                    await self._commit(items)
                except Exception as exc:  # the database failed: every caller of the batch learns it
                    log.exception("commit.failed")
                    for _, fut in items:
                        if not fut.done():
                            fut.set_exception(exc)
            if done and self._queue.empty():
                return

    async def _commit(self, items: list[_Queued[Item, Extra]]) -> None:
        try:
            results, ctx, extra = await self._attempt_until_connected(items)
        except _OpFailed as failed:
            _, fut = items.pop(failed.position)
            if not fut.done():
                fut.set_exception(failed.error)
            if items:
                await self._commit(items)
            return
        self._after_commit(ctx)
        self.batches += 1
        for value, (_, fut) in zip(results, items, strict=True):
            if not fut.done():
                fut.set_result((value, extra))

    async def _attempt_until_connected(self, items: list[_Queued[Item, Extra]]) -> tuple[list[Any], Ctx, Extra]:
        """``_attempt``, run again while the database connection is lost before COMMIT (nothing of the batch
        committed: a PostgreSQL failover, a restart) - for up to ``reconnect_for_s``, with backoff - so callers
        see a slower answer rather than an error. A failure during COMMIT itself is never run again here: whether
        it committed is not known, and the callers' idempotent retries settle it."""
        deadline = time.monotonic() + self.reconnect_for_s
        pause = 0.05
        while True:
            try:
                return await self._attempt(items)
            except ConnectionLost as exc:
                if time.monotonic() + pause > deadline:
                    raise
                self.reconnects += 1
                log.warning("commit.reconnecting", error=str(exc)[:200], retry_in_s=round(pause, 2))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def _attempt(self, items: list[_Queued[Item, Extra]]) -> tuple[list[Any], Ctx, Extra]:
        results: list[Any] = []
        async with self._db.transaction() as tx:
            ctx = await self._begin(tx)
            for position, (item, _) in enumerate(items):
                try:
                    results.append(await self._execute(tx, ctx, item))
                except ConnectionLost:
                    raise  # the database's doing, not this item's: the whole batch runs again
                except Exception as exc:
                    raise _OpFailed(position, exc) from exc
            extra = await self._before_commit(tx, ctx)
        return results, ctx, extra


class Writer(GroupCommitter[Callable[[Txn], Awaitable[Any]], None, None]):
    """Group commit without extras: ``write(op)`` with ``op(tx)``, for a node's store."""

    async def _execute(self, tx: Txn, ctx: None, item: Callable[[Txn], Awaitable[Any]]) -> Any:
        return await item(tx)

    async def write(self, op: Callable[[Txn], Awaitable[T]]) -> T:
        result, _ = await self.submit(op)
        return cast(T, result)

    def write_soon(self, op: Callable[[Txn], Awaitable[None]]) -> asyncio.Future[Any]:
        """Queue ``op`` without waiting for its commit: it commits with whatever is written next (in submission
        order), so a caller that then writes and waits has both committed, or neither - one fsync, not two."""
        return self.enqueue(op)
