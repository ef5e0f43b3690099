"""The sender side: signed envelope bytes are stored before the first send
and resent unchanged until the broker answers with a receipt or a refusal.

A transport failure leaves the row pending and retries with jittered
exponential backoff; the broker's idempotency record makes a resend of the
same bytes return the original receipt. No network call happens inside a
database transaction: the worker reads the row, sends, then records.
"""

from __future__ import annotations

import asyncio
import random

from olievlek import envelope, logs, wire
from olievlek.errors import TransportError
from olievlek.v1 import broker_pb2

from .broker_client import BrokerClient
from .store import NodeStore, OutboxRow

log = logs.get("node.outbox")

INITIAL_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0


class OutboxSender:
    """Background worker draining the outbox."""

    def __init__(self, store: NodeStore, client: BrokerClient, rng: random.Random | None = None) -> None:
        self._store = store
        self._client = client
        self._wake = asyncio.Event()
        self._finished: dict[int, asyncio.Event] = {}
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        backoff = INITIAL_BACKOFF_S
        while True:
            self._wake.clear()
            if await self._drain():
                backoff = INITIAL_BACKOFF_S
                await self._wake.wait()
                continue
            delay = backoff * (0.5 + self._rng.random())
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _drain(self) -> bool:
        """Send every pending row; False when the broker could not be reached."""
        for row in await self._store.pending_outbox():
            try:
                response = await self._client.send(row.envelope)
            except TransportError as exc:
                await self._store.count_attempt(row.id)
                log.warning("outbox.retry", outbox_id=row.id, error=exc.message)
                return False
            await self._record(row, response)
        return True

    async def _record(self, row: OutboxRow, response: broker_pb2.SendResponse) -> None:
        outcome = response.WhichOneof("outcome")
        if outcome == "receipt":
            env = envelope.envelope_pb2.Envelope.FromString(row.envelope)
            if response.receipt.body_digest != envelope.body_digest(env.body):
                # Not our body: keep it pending rather than trust a wrong receipt.
                log.error("outbox.bad_receipt", outbox_id=row.id)
                return
            status = "accepted"
        else:
            status = "refused"
            log.warning(
                "outbox.refused", outbox_id=row.id, rule=response.refusal.rule_id,
                code=broker_pb2.RefusalCode.Name(response.refusal.code), field=response.refusal.field,
            )
        await self._store.finish_outbox(row.id, status, wire.encode(response))
        log.info("outbox.done", outbox_id=row.id, status=status)
        self._finished.setdefault(row.id, asyncio.Event()).set()

    async def wait(self, outbox_id: int, timeout: float) -> None:
        """Wait until a row has an answer from the broker, or the timeout passes."""
        row = await self._store.outbox(outbox_id)
        if row is not None and row.status != "pending":
            return
        try:
            await asyncio.wait_for(self._finished.setdefault(outbox_id, asyncio.Event()).wait(), timeout)
        except TimeoutError:
            pass
