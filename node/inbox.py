"""The recipient side: verify each delivery, refuse what is not ours, store a batch, acknowledge it.

Deliveries are verified one by one (no transaction open), then stored in one
transaction keyed by (sender, idempotency key), then acknowledged together: a
redelivery is acknowledged as a duplicate and never applied twice, and a
tombstone keeps an erased item from coming back. An envelope that fails
verification or is not addressed to this organisation is refused: recorded
locally and acknowledged as REJECTED, so the broker stops redelivering it and
logs the rejection.

An expiry notice (our envelope was not acknowledged by its recipient within
the rule's time-to-live) is believed only with a valid audit proof of the
expiry's leaf; the outbox entry then shows ``expired`` to the regisseur.
"""

from __future__ import annotations

from collections.abc import Callable

from olievlek import envelope, logs
from olievlek.clock import now_ms
from olievlek.envelope import body_of
from olievlek.errors import Refused, TransportError, VerificationError
from olievlek.kinds import MessageKind
from olievlek.metrics import Metrics
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2, summary_pb2

from .audit_check import AuditChecker
from .store import NewDelivery, NodeStore

log = logs.get("node.inbox")


class Inbox:
    """Accepts deliveries for one organisation."""

    def __init__(self, org_id: str, store: NodeStore, trust: TrustAnchor, audit: AuditChecker,
                 tag: Callable[[bytes], bytes], metrics: Metrics | None = None) -> None:
        self._tag = tag
        self._org_id = org_id
        self._store = store
        self._trust = trust
        self._audit = audit
        self._metrics = metrics or Metrics("node")

    async def accept(self, downs: list[broker_pb2.SubscribeDown]) -> list[broker_pb2.Ack]:
        """Acks for the items handled, strictly in delivery order; an item without a valid proof gets none
        (it is redelivered). Plain deliveries are stored together; an erasure notice or item status first
        flushes what came before it, so a notice never overtakes the alert it erases."""
        now = now_ms()
        acks: list[broker_pb2.Ack | None] = []
        store: list[tuple[int, int, NewDelivery]] = []  # (position, seq, delivery) not yet stored
        for down in downs:
            which = down.WhichOneof("msg")
            if which == "delivery":
                item = await self._verify(down.delivery, now)
                if isinstance(item, NewDelivery) and item.kind in (MessageKind.ERASURE_NOTICE, MessageKind.ITEM_STATUS):
                    await self._store_batch(store, acks, now)
                    handle = self._erase if item.kind == MessageKind.ERASURE_NOTICE else self._status
                    acks.append(await handle(down.delivery.seq, item, now))
                elif isinstance(item, NewDelivery):
                    store.append((len(acks), down.delivery.seq, item))
                    acks.append(None)
                else:
                    acks.append(item)
            elif which == "notice":
                acks.append(await self._notice(down.notice))
        await self._store_batch(store, acks, now)
        return [a for a in acks if a is not None]

    async def _store_batch(self, store: list[tuple[int, int, NewDelivery]], acks: list[broker_pb2.Ack | None],
                           now: int) -> None:
        if not store:
            return
        fresh = await self._store.store_deliveries([d for _, _, d in store], now)
        for (position, seq, d), new in zip(store, fresh, strict=True):
            outcome = broker_pb2.ACK_OUTCOME_STORED if new else broker_pb2.ACK_OUTCOME_DUPLICATE
            acks[position] = broker_pb2.Ack(seq=seq, outcome=outcome)
            (self._metrics.deliveries if new else self._metrics.duplicates).inc()
            if not new:
                log.info("delivery.duplicate", seq=seq, sender=d.sender, kind=d.kind)
        log.info("delivery.stored", count=sum(fresh), duplicates=len(fresh) - sum(fresh))
        store.clear()

    async def _verify(self, delivery: broker_pb2.Delivery, now: int) -> NewDelivery | broker_pb2.Ack:
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
        holder = summary if summary is not None else opened.payload
        pseudonym = bytes(getattr(holder, "subject_pseudonym", b""))
        return NewDelivery(opened.body.sender, opened.body.idempotency_key, opened.kind.name, delivery.envelope,
                           pseudonym, opened.body.created_at_ms, self._tag(pseudonym) if pseudonym else b"")

    async def _erase(self, seq: int, notice: NewDelivery, now: int) -> broker_pb2.Ack:
        """An erasure notice: erase what its sender sent about the pseudonym, keep tombstones, ack."""
        fresh, erased = await self._store.apply_erasure(notice.sender, notice.idem_key, notice.pseudonym,
                                                        notice.pseudonym_tag, notice.created_ms, now)
        if fresh:
            await self._store.db.checkpoint_truncate()  # the erased items leave the WAL too
        log.info("erasure.applied" if fresh else "erasure.duplicate", sender=notice.sender, items=erased, seq=seq)
        return broker_pb2.Ack(seq=seq, outcome=broker_pb2.ACK_OUTCOME_STORED if fresh
                              else broker_pb2.ACK_OUTCOME_DUPLICATE)

    async def _status(self, seq: int, item: NewDelivery, now: int) -> broker_pb2.Ack:
        """What a recipient did with an item we sent: shown on our outbox entry."""
        body = body_of(item.envelope)
        status = body.item_status
        outcome = summary_pb2.ItemOutcome.Name(status.outcome).removeprefix("ITEM_OUTCOME_").lower()
        detail = f"{item.sender} suggests NIS {status.suggested_nis}" if status.suggested_nis else ""
        fresh = await self._store.apply_item_status(item.sender, item.idem_key, status.item_key, outcome, detail, now)
        log.info("item.status", sender=item.sender, outcome=outcome, fresh=fresh, seq=seq)
        return broker_pb2.Ack(seq=seq, outcome=broker_pb2.ACK_OUTCOME_STORED if fresh
                              else broker_pb2.ACK_OUTCOME_DUPLICATE)

    async def _notice(self, notice: broker_pb2.DeliveryNotice) -> broker_pb2.Ack | None:
        rejected = notice.reason == broker_pb2.NOTICE_REASON_REJECTED
        expect: dict[str, object] = {"sender": self._org_id, "recipient": notice.recipient,
                                     "key": notice.idempotency_key}
        expect |= ({"event": "delivery.ack", "outcome": "rejected", "reason": notice.reason_code} if rejected
                   else {"event": "delivery.expired"})
        try:
            await self._audit.check(notice.audit, expect)
        except TransportError:
            return None  # the broker is unreachable for the check: it redelivers the notice on the next stream
        except VerificationError as exc:
            # Logged as an alarm by the checker; refused for good so it cannot hold a window slot forever.
            return await self._reject(notice.seq, "bad_expiry_proof", exc.message, now_ms())
        if rejected:
            known = await self._store.mark_undelivered(
                notice.idempotency_key, notice.recipient, f"{notice.recipient} refused it: {notice.reason_code}",
                "rejected")
        else:
            known = await self._store.mark_undelivered(
                notice.idempotency_key, notice.recipient,
                f"not acknowledged by {notice.recipient} within the time-to-live of rule {notice.rule_id}", "expired")
            self._metrics.expiries.inc()
        log.warning("outbox.rejected" if rejected else "outbox.expired", recipient=notice.recipient,
                    rule=notice.rule_id, reason=notice.reason_code, known=known)
        return broker_pb2.Ack(seq=notice.seq, outcome=broker_pb2.ACK_OUTCOME_STORED)

    async def _reject(self, seq: int, reason: str, detail: str, now: int) -> broker_pb2.Ack:
        await self._store.refuse_delivery(seq, reason, detail, now)
        log.warning("delivery.refused", seq=seq, reason=reason)
        return broker_pb2.Ack(seq=seq, outcome=broker_pb2.ACK_OUTCOME_REJECTED, reason_code=reason)
