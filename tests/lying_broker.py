"""A compromised broker for tests: the real broker's process and files, with a gRPC face that lies.

Whoever controls a broker's machine holds its certificate from the federation CA, its database and - in the
worst case - its log key. ``Liar`` is what such an attacker does with them:

- answers ``SendBatch`` with whatever it likes (an old receipt, an invented refusal) and drops the envelopes;
- writes queue rows of its own choosing (any payload, any leaf index - or none (-1), any sequence number),
  which the real delivery loop then sends with the proof of that leaf (or none);
- with the log key, appends leaves that say what it wants (``append``), signed like every other head;
- ends a node's stream, so the node reconnects and is delivered the queue from the start;
- shows one node a private branch of its log (a copy of its database with leaves of its own, signed with the
  log key): stream items proven in it, consistency proofs from it, and an old cosigned head instead of the
  latest, so the node does not see the witnesses moved on.

Nothing here is used outside tests.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from olievlek.broker.committer import Committer
from olievlek.broker.server import BrokerServer, BrokerServicer
from olievlek.broker.storage.operations import AppendLeaves, Leaf, Queued
from olievlek.broker.storage.store import NEVER, BrokerStore

from olievlek.audit.log import AuditLog
from olievlek.policy.signing import load_signing_key
from olievlek.storage.sqlite import Database
from olievlek.v1 import broker_pb2

Answer = Callable[[list[bytes]], list[broker_pb2.SendResponse]]


class Liar:
    """What the broker does instead of the truth; ``None``/empty: the honest thing."""

    def __init__(self) -> None:
        self.answer: Answer | None = None
        self.dropped: list[bytes] = []  # envelopes the liar answered and threw away
        self.server: BrokerServer | None = None
        # A split view: what the stream sends instead of a queued item (by its number), the private branch's
        # log whose consistency proofs are served for its sizes, and a cosigned head served instead of the latest.
        self.replace: dict[int, broker_pb2.SubscribeDown] = {}
        self.private: AuditLog | None = None
        self.cosigned: broker_pb2.WitnessedHead | None = None

    def servicer(self) -> type[BrokerServicer]:
        liar = self

        class LyingServicer(BrokerServicer):
            async def SendBatch(self, request: broker_pb2.SendBatchRequest,
                                context: grpc.aio.ServicerContext[Any, Any]) -> broker_pb2.SendBatchResponse:
                if liar.answer is None:
                    return await super().SendBatch(request, context)
                liar.dropped.extend(request.envelopes)
                return broker_pb2.SendBatchResponse(responses=liar.answer(list(request.envelopes)))

            def _down(self, item: Queued, proof: broker_pb2.AuditProof | None) -> broker_pb2.SubscribeDown:
                return liar.replace.get(item.seq) or super()._down(item, proof)

            async def GetConsistency(self, request: broker_pb2.ConsistencyRequest,
                                     context: grpc.aio.ServicerContext[Any, Any]) -> broker_pb2.ConsistencyProof:
                private = liar.private
                if private is not None and request.to_size == private.size:
                    head = await private.head(request.to_size)
                    return broker_pb2.ConsistencyProof(
                        head=head, proof=await private.consistency(request.from_size, request.to_size))
                return await super().GetConsistency(request, context)

            async def GetHead(self, request: broker_pb2.GetHeadRequest,
                              context: grpc.aio.ServicerContext[Any, Any]) -> broker_pb2.WitnessedHead:
                if request.cosigned and liar.cosigned is not None:
                    return liar.cosigned
                return await super().GetHead(request, context)

        return LyingServicer

    def start(self, server: BrokerServer) -> BrokerServer:
        self.server = server
        return server

    @property
    def _server(self) -> BrokerServer:
        assert self.server is not None and self.server.service is not None
        return self.server

    async def append(self, meta: dict[str, object], viewers: tuple[str, ...]) -> int:
        """With the log key: a leaf that says ``meta``; returns its index."""
        service = self._server.service
        assert service is not None
        [recorded], _head = await service.committer.submit(AppendLeaves((Leaf(meta, viewers, service.now()),)))
        return recorded.index

    async def queue(self, recipient: str, item: str, payload: bytes, leaf_index: int, *, sender: str = "gent",
                    key: str = "forged", rule_id: str = "move-alert", seq: int | None = None) -> int:
        """A queue row of the liar's choosing (the next number, or ``seq``); the stream delivers it."""
        service = self._server.service
        assert service is not None
        db = service.store.db
        async with db.transaction() as tx:
            await tx.execute("INSERT OR IGNORE INTO recipients (recipient, next_seq, depth) VALUES (?, 1, 0)",
                             (recipient,))
            row = await tx.fetchone("SELECT next_seq FROM recipients WHERE recipient = ?", (recipient,))
            assert row is not None
            number = int(row[0]) if seq is None else seq
            await tx.execute(
                "INSERT INTO queue (recipient, seq, item, sender, idem_key, rule_id, payload, enqueued_ms,"
                " expires_ms, leaf_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (recipient, number, item, sender, key, rule_id, payload, service.now(), NEVER, leaf_index))
            await tx.execute("UPDATE recipients SET next_seq = MAX(next_seq, ?), depth = depth + 1"
                             " WHERE recipient = ?", (number + 1, recipient))
        service.notifier.notify(recipient)
        return number

    async def next_seq(self, recipient: str) -> int:
        """The number the next queue row for ``recipient`` gets."""
        service = self._server.service
        assert service is not None
        row = await service.store.db.fetchone("SELECT next_seq FROM recipients WHERE recipient = ?", (recipient,))
        return int(row[0]) if row else 1

    async def skip(self, recipient: str, numbers: int) -> None:
        """Silently use up sequence numbers (what dropping queued deliveries looks like)."""
        service = self._server.service
        assert service is not None
        async with service.store.db.transaction() as tx:
            await tx.execute("UPDATE recipients SET next_seq = next_seq + ? WHERE recipient = ?", (numbers, recipient))

    def end_stream(self, org: str) -> None:
        """End the node's delivery stream (it reconnects and is delivered its queue from the start)."""
        self._server._registry.claim(org).set()

    async def leaves(self) -> list[tuple[int, dict[str, Any]]]:
        """Every leaf's index and metadata (the liar reads its own log)."""
        service = self._server.service
        assert service is not None
        rows = await service.store.db.fetchall("SELECT idx, meta FROM audit_events ORDER BY idx")
        return [(int(i), json.loads(m) if m else {}) for i, m in rows]


async def private_branch(liar: Liar, workdir: Path, log_key: Path, origin: str,
                         leaves: list[tuple[dict[str, object], tuple[str, ...]]]) -> tuple[AuditLog, list[int]]:
    """A copy of the broker's log as it is now, extended with ``leaves`` (metadata, viewers) and a head signed
    with the real log key: the branch one node is shown. Returns its log and the new leaves' indices."""
    assert liar.server is not None and liar.server.service is not None
    service = liar.server.service
    copy = workdir / "private.sqlite"
    source = sqlite3.connect(service.store.db.path)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    db = await Database.open(copy, [])
    audit = AuditLog(db, load_signing_key(log_key), origin)
    await audit.load()
    committer = Committer(BrokerStore(db), audit, lambda: service.bundle.digest)
    committer.start()
    try:
        appended, _head = await committer.submit(AppendLeaves(tuple(Leaf(m, v, service.now()) for m, v in leaves)))
        indices = [r.index for r in appended]
    finally:
        await committer.stop()
    return audit, indices
