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
from olievlek.clock import now_ms
from olievlek.envelope import Signer
from olievlek.errors import TransportError, VerificationError
from olievlek.v1 import broker_pb2

from .audit_check import AuditChecker
from .broker_client import BrokerClient
from .store import NodeStore, OutboxRow

log = logs.get("node.outbox")

INITIAL_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0


class OutboxSender:
    """Background worker draining the outbox."""

    def __init__(self, store: NodeStore, client: BrokerClient, signer: Signer, audit: AuditChecker,
                 rng: random.Random | None = None) -> None:
        self._store = store
        self._client = client
        self._signer = signer
        self._audit = audit
        self._wake = asyncio.Event()
        self._finished: dict[int, asyncio.Event] = {}
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        backoff = INITIAL_BACKOFF_S
        while True:
            self._wake.clear()
            try:
                drained = await self._drain()
            except Exception:  # never let the worker die: log, back off, retry
                log.exception("outbox.failed")
                drained = False
            if drained:
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
            if not await self._record(row, response):
                return False
        return True

    async def _reseal(self, row: OutboxRow) -> None:
        env = envelope.envelope_pb2.Envelope.FromString(row.envelope)
        body = envelope.envelope_pb2.EnvelopeBody.FromString(env.body)
        body.created_at_ms = now_ms()
        await self._store.replace_outbox_envelope(row.id, envelope.seal(body, self._signer))
        log.warning("outbox.resealed", outbox_id=row.id, reason="stale")

    async def _record(self, row: OutboxRow, response: broker_pb2.SendResponse) -> bool:
        """Record the broker's answer; False when the row must wait (backoff)."""
        outcome = response.WhichOneof("outcome")
        sender = envelope.envelope_pb2.EnvelopeBody.FromString(
            envelope.envelope_pb2.Envelope.FromString(row.envelope).body).sender
        audit = response.receipt.audit if outcome == "receipt" else response.refusal.audit
        expect = {"sender": sender, "decision": "accepted" if outcome == "receipt" else "refused"}
        try:
            await self._audit.check(audit, expect)
        except VerificationError:
            return False  # logged loudly by the checker; keep the row and try again later
        if outcome == "receipt":
            env = envelope.envelope_pb2.Envelope.FromString(row.envelope)
            if response.receipt.body_digest != envelope.body_digest(env.body):
                # Not our body: keep it pending (and back off) rather than trust a wrong receipt.
                log.error("outbox.bad_receipt", outbox_id=row.id)
                return False
            status = "accepted"
        elif response.refusal.code == broker_pb2.REFUSAL_CODE_STALE:
            # The broker never accepted these bytes (a replay would have been answered from its
            # idempotency record first), so the same body under a fresh created-at is safe to send.
            await self._reseal(row)
            return False  # retried after a backoff, so a node with a wrong clock cannot spin
        else:
            status = "refused"
            log.warning(
                "outbox.refused", outbox_id=row.id, rule=response.refusal.rule_id,
                code=broker_pb2.RefusalCode.Name(response.refusal.code), field=response.refusal.field,
            )
        await self._store.finish_outbox(row.id, status, wire.encode(response))
        log.info("outbox.done", outbox_id=row.id, status=status)
        self._finished.setdefault(row.id, asyncio.Event()).set()
        return True

    async def wait(self, outbox_id: int, timeout: float) -> None:
        """Wait until a row has an answer from the broker, or the timeout passes."""
        row = await self._store.outbox(outbox_id)
        if row is not None and row.status != "pending":
            return
        try:
            await asyncio.wait_for(self._finished.setdefault(outbox_id, asyncio.Event()).wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._finished.pop(outbox_id, None)
