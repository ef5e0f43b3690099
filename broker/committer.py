"""The broker's group commit: many decisions share one transaction, one fsync and one signed tree head.

On top of ``olievlek.groupcommit``: the items are typed operations the broker's store executes; every batch
appends its operations' leaves to the
Merkle log and signs one head before the commit; callers get (result, head)
only after the commit. No network call happens inside the transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar, cast

from olievlek import faults
from olievlek.audit.log import AuditLog, Batch
from olievlek.clock import now_ms
from olievlek.groupcommit import GroupCommitter
from olievlek.storage.sqlite import Txn
from olievlek.v1 import broker_pb2

from .storage.interface import Operations
from .storage.operations import Operation

R = TypeVar("R")


class Committer(GroupCommitter[Operation[Any], Batch, broker_pb2.TreeHead]):
    """Batches typed operations (``storage/operations.py``), which the store executes."""

    def __init__(self, store: Operations, audit: AuditLog, bundle_digest: Callable[[], str]) -> None:
        super().__init__(store.db)
        self.store = store
        self.audit = audit
        self._digest = bundle_digest

    async def _execute(self, tx: Txn, ctx: Batch, item: Operation[Any]) -> Any:
        return await self.store.execute(tx, ctx, item)

    def enqueue(self, item: Operation[R]) -> asyncio.Future[tuple[R, broker_pb2.TreeHead]]:
        return cast("asyncio.Future[tuple[R, broker_pb2.TreeHead]]", super().enqueue(item))

    async def submit(self, item: Operation[R]) -> tuple[R, broker_pb2.TreeHead]:
        result, head = await super().submit(item)
        return cast(R, result), head

    async def _begin(self, tx: Txn) -> Batch:
        return await self.audit.begin_txn(tx)

    async def _before_commit(self, tx: Txn, ctx: Batch) -> broker_pb2.TreeHead:
        head = await self.audit.write_txn(tx, ctx, self._digest(), now_ms())
        faults.point("broker.before_commit")
        return head

    def _after_commit(self, ctx: Batch) -> None:
        self.audit.commit(ctx)
