"""The recipient side: verify each delivery, refuse what is not ours, store, acknowledge.

A delivery is stored keyed by (sender, idempotency key) so a redelivery is
acknowledged as a duplicate and never applied twice. An envelope that fails
verification or is not addressed to this organisation is refused: recorded
locally and acknowledged as REJECTED, so the broker stops redelivering it and
logs the rejection.
"""

from __future__ import annotations

from olievlek import envelope, logs
from olievlek.clock import now_ms
from olievlek.errors import Refused
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2

from .store import NodeStore

log = logs.get("node.inbox")


class Inbox:
    """Accepts deliveries for one organisation."""

    def __init__(self, org_id: str, store: NodeStore, trust: TrustAnchor) -> None:
        self._org_id = org_id
        self._store = store
        self._trust = trust

    async def accept(self, delivery: broker_pb2.Delivery) -> broker_pb2.Ack:
        now = now_ms()
        try:
            opened = envelope.open_envelope(delivery.envelope, self._trust)
        except Refused as exc:
            return await self._reject(delivery.seq, exc.reason, exc.message, now)
        if self._org_id not in opened.body.recipients:
            return await self._reject(
                delivery.seq, "not_a_recipient",
                f"envelope from {opened.body.sender} is addressed to {list(opened.body.recipients)}, "
                f"not to {self._org_id}",
                now,
            )
        summary = getattr(opened.payload, "summary", None)
        pseudonym = bytes(summary.subject_pseudonym) if summary is not None else b""
        fresh = await self._store.store_delivery(
            opened.body.sender, opened.body.idempotency_key, opened.kind.name, delivery.envelope, pseudonym, now
        )
        log.info("delivery.stored" if fresh else "delivery.duplicate", seq=delivery.seq,
                 sender=opened.body.sender, kind=opened.kind.name)
        outcome = broker_pb2.ACK_OUTCOME_STORED if fresh else broker_pb2.ACK_OUTCOME_DUPLICATE
        return broker_pb2.Ack(seq=delivery.seq, outcome=outcome)

    async def _reject(self, seq: int, reason: str, detail: str, now: int) -> broker_pb2.Ack:
        await self._store.refuse_delivery(seq, reason, detail, now)
        log.warning("delivery.refused", seq=seq, reason=reason)
        return broker_pb2.Ack(seq=seq, outcome=broker_pb2.ACK_OUTCOME_REJECTED, reason_code=reason)
