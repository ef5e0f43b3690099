"""The broker's group commit: many decisions share one transaction, one fsync and one signed tree head.

On top of ``olievlek.groupcommit``: every batch appends its ops' leaves to the
Merkle log and signs one head before the commit; callers get (result, head)
only after the commit. No network call happens inside the transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from olievlek import faults
from olievlek.audit.log import AuditLog, Batch
from olievlek.clock import now_ms
from olievlek.groupcommit import GroupCommitter
from olievlek.storage.sqlite import Database, Txn
from olievlek.v1 import broker_pb2


class Committer(GroupCommitter[Batch, broker_pb2.TreeHead]):
    def __init__(self, db: Database, audit: AuditLog, bundle_digest: Callable[[], str]) -> None:
        super().__init__(db)
        self.audit = audit
        self._digest = bundle_digest

    def _begin(self) -> Batch:
        return self.audit.begin()

    async def _before_commit(self, tx: Txn, ctx: Batch) -> broker_pb2.TreeHead:
        head = await self.audit.write_txn(tx, ctx, self._digest(), now_ms())
        faults.point("broker.before_commit")
        return head

    def _after_commit(self, ctx: Batch) -> None:
        self.audit.commit(ctx)

    async def _resync(self) -> None:
        # A failed COMMIT may still have committed (PostgreSQL lost between COMMIT and its answer): the log's
        # frontier is read again from what the database holds, never trusted from memory.
        await self.audit.load()
