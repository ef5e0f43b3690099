"""The recipient side: verify each delivery, refuse what is not ours, store a batch, acknowledge it.

Deliveries are verified one by one (no transaction open), then stored in one
transaction keyed by (sender, idempotency key), then acknowledged together: a
redelivery is acknowledged as a duplicate and never applied twice, and a
tombstone keeps an erased item from coming back.

A delivery is believed only when the log backs it and the node would have let it through itself:

1. the envelope's signature verifies and this organisation is a recipient;
2. the delivery's proof holds: the decision leaf that queued it is in a head that extends the one this node
   holds, says "send accepted" for this ``env`` (so for these very bytes), this sender, kind and rule, and
   names this node among the recipients. No proof, no delivery: it is refused and the audit alarm raised
   here - a rejection notice would travel through the very broker that lied;
3. its created-at is no later than now plus the clock window and, under a rule with a time-to-live, no
   earlier than the leaf's acceptance time allows (``olievlek.timing``); nothing is delivered after its
   time-to-live has run out;
4. the decision is taken again, under the bundle the leaf names (``node/bundles.py``), and must allow it by
   the same rule; a ``disclosure.response`` must answer a request this node sent to that holder about that
   pseudonym.

What fails is refused: recorded locally with its reason and acknowledged as REJECTED, so the broker stops
redelivering it and logs the rejection. A proof that cannot be checked now (the broker is unreachable for
a consistency proof or a bundle) leaves the item unacknowledged; it is redelivered.

Sequence numbers are checked on the way in (``node/sequence.py``): repeats are acknowledged unseen,
gaps counted and left to the log watch to explain.

An expiry or rejection notice (our envelope was not acknowledged in time, or its recipient refused it) is
believed only with a valid proof of its leaf, whose ``env`` must be that of the envelope this node sent
under that key to that recipient; a notice about a key this node never used is refused and alarmed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any

from olievlek import envelope, logs, timing
from olievlek.clock import now_ms
from olievlek.envelope import OpenedEnvelope, body_of
from olievlek.errors import Refused, TransportError, VerificationError
from olievlek.kinds import MessageKind
from olievlek.metrics import Metrics
from olievlek.policy.from_envelope import request_from_envelope
from olievlek.report_check import ReportRefused
from olievlek.storage.sqlite import Txn
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2, summary_pb2

from . import evidence
from .audit_check import AuditChecker
from .bundles import BundleKeeper
from .report_gate import ReportGate
from .sequence import Seen, SequenceTracker
from .store import NewDelivery, NodeStore

log = logs.get("node.inbox")

_DIGEST = re.compile(r"[0-9a-f]{64}")


class _Reject(Exception):
    """A delivery that fails a check: refused with this reason (a stable code) and detail."""

    def __init__(self, reason: str, detail: str, alarm: bool = False) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.alarm = reason, detail, alarm


class Inbox:
    """Accepts deliveries for one organisation."""

    def __init__(self, org_id: str, store: NodeStore, trust: TrustAnchor, audit: AuditChecker,
                 tag: Callable[[bytes], bytes], bundles: BundleKeeper, metrics: Metrics | None = None,
                 reports: ReportGate | None = None) -> None:
        self._tag = tag
        self._reports = reports  # at the monitor: quarterly reports are checked before they are kept
        self._org_id = org_id
        self._store = store
        self._trust = trust
        self._audit = audit
        self._bundles = bundles
        self._metrics = metrics or Metrics("node")
        self.sequence = SequenceTracker(store, audit.origin or "", self._metrics)
        # The item the last batch stopped at, unacknowledged because its proof could not be checked then; the
        # stream must start again for the broker to redeliver it and what followed it.
        self.stopped_at: int | None = None

    async def accept(self, downs: list[broker_pb2.SubscribeDown]) -> list[broker_pb2.Ack]:
        """Acks for the items handled, strictly in delivery order; an item whose proof cannot be checked now
        gets none, and neither does anything after it in the batch (``stopped_at``: all are redelivered on the
        next stream), so a sender's items are stored in the order they were queued even when the broker instance
        that answers proofs changes in the middle of a batch. Plain deliveries are stored together; an erasure
        notice or item status first flushes what came before it, so a notice never overtakes the alert it
        erases."""
        self.stopped_at = None
        await self.sequence.load()
        try:
            return await self._accept(downs)
        except BaseException:
            self.sequence.forget()  # what it saw in this batch was not written: read the store again
            raise

    async def _accept(self, downs: list[broker_pb2.SubscribeDown]) -> list[broker_pb2.Ack]:
        now = now_ms()
        acks: list[broker_pb2.Ack | None] = []
        store: list[tuple[int, int, NewDelivery]] = []  # (position, seq, delivery) not yet stored
        for down in downs:
            which = down.WhichOneof("msg")
            seq = down.delivery.seq if which == "delivery" else down.notice.seq
            if which not in ("delivery", "notice"):
                continue
            if self.sequence.see(seq) == Seen.REPEAT:
                acks.append(await self._repeat(seq))
                continue
            result = await (self._verify(down.delivery, now, [d for _, _, d in store]) if which == "delivery"
                            else self._notice(down.notice))
            if result is None:
                self.sequence.left(seq)  # not acknowledged: redelivered, and not a repeat then
                self.stopped_at = seq
                break
            elif isinstance(result, broker_pb2.Ack):
                acks.append(result)
            elif result.kind in (MessageKind.ERASURE_NOTICE, MessageKind.ITEM_STATUS):
                await self._store_batch(store, acks, now)
                handle = self._erase if result.kind == MessageKind.ERASURE_NOTICE else self._status
                acks.append(await handle(seq, result, now))
            else:
                store.append((len(acks), seq, result))
                acks.append(None)
        for seq in [a.seq for a in acks if a is not None] + [seq for _, seq, _ in store]:
            self.sequence.handled(seq)
        changes = self.sequence.changes(now)
        if store:
            await self._store_batch(store, acks, now, changes)
        elif changes is not None:
            await self._store.writer.write(changes)
        return [a for a in acks if a is not None]

    async def _repeat(self, seq: int) -> broker_pb2.Ack:
        """A number handled before: answer as then (a refusal stays a refusal), without looking again."""
        reason = await self._store.refusal_reason(seq)
        if reason is not None:
            return broker_pb2.Ack(seq=seq, outcome=broker_pb2.ACK_OUTCOME_REJECTED, reason_code=reason)
        return broker_pb2.Ack(seq=seq, outcome=broker_pb2.ACK_OUTCOME_DUPLICATE)

    async def _store_batch(self, store: list[tuple[int, int, NewDelivery]], acks: list[broker_pb2.Ack | None],
                           now: int, then: Callable[[Txn], Awaitable[None]] | None = None) -> None:
        if not store:
            return
        fresh = await self._store.store_deliveries([d for _, _, d in store], now, then, self._audit.quorum <= 0)
        for (position, seq, d), new in zip(store, fresh, strict=True):
            outcome = broker_pb2.ACK_OUTCOME_STORED if new else broker_pb2.ACK_OUTCOME_DUPLICATE
            acks[position] = broker_pb2.Ack(seq=seq, outcome=outcome)
            (self._metrics.deliveries if new else self._metrics.duplicates).inc()
            if not new:
                log.info("delivery.duplicate", seq=seq, sender=d.sender, kind=d.kind)
        log.info("delivery.stored", count=sum(fresh), duplicates=len(fresh) - sum(fresh))
        store.clear()

    async def _verify(self, delivery: broker_pb2.Delivery, now: int,
                      pending: list[NewDelivery]) -> NewDelivery | broker_pb2.Ack | None:
        """The delivery to store, a rejection, or None when its proof cannot be checked now. ``pending``: this
        batch's deliveries not stored yet."""
        try:
            opened = envelope.open_envelope(delivery.envelope, self._trust)
        except Refused as exc:
            return await self._reject(delivery.seq, exc.reason, exc.message, now)
        try:
            if self._org_id not in opened.body.recipients:
                raise _Reject("not_a_recipient", f"envelope from {opened.body.sender} is addressed to "
                              f"{list(opened.body.recipients)}, not to {self._org_id}")
            meta = await self._proven(delivery, opened)
            await self._in_time(opened, meta, now)
            await self._solicited(opened)
            if self._reports is not None and opened.kind.name == MessageKind.REPORT_AGGREGATE:
                await self._reports.check(opened, pending, now)
        except ReportRefused as exc:  # the sender's doing, not the broker's: no alarm
            return await self._reject(delivery.seq, exc.problem.value, exc.message, now)
        except _Reject as exc:
            if exc.alarm:
                self._audit.alarm(exc.reason, seq=delivery.seq, sender=opened.body.sender, kind=opened.kind.name,
                                  detail=exc.detail)
            return await self._reject(delivery.seq, exc.reason, exc.detail, now)
        except TransportError as exc:
            log.warning("delivery.unchecked", seq=delivery.seq, error=exc.message)
            return None
        summary = getattr(opened.payload, "summary", None)
        holder = summary if summary is not None else opened.payload
        pseudonym = bytes(getattr(holder, "subject_pseudonym", b""))
        return NewDelivery(opened.body.sender, opened.body.idempotency_key, opened.kind.name, delivery.envelope,
                           pseudonym, opened.body.created_at_ms, self._tag(pseudonym) if pseudonym else b"",
                           delivery.audit.leaf_index)

    async def _proven(self, delivery: broker_pb2.Delivery, opened: OpenedEnvelope) -> dict[str, Any]:
        """The decision leaf that queued this very envelope for this node, proven to a head we accept."""
        body = opened.body
        expect = {"event": "send", "decision": "accepted", "env": envelope.env_of(delivery.envelope).hex(),
                  "sender": body.sender, "kind": opened.kind.name, "rule": body.rule_id}
        try:
            meta = await self._audit.check(delivery.audit, expect)
        except VerificationError as exc:  # the checker raised the alarm
            raise _Reject("delivery_unproven", exc.message) from None
        recipients = meta.get("recipients")
        if not isinstance(recipients, list) or self._org_id not in recipients:
            raise _Reject("delivery_unproven", "the decision leaf does not name this node as a recipient", True)
        bundle = meta.get("bundle")
        if not isinstance(meta.get("at"), int) or not isinstance(bundle, str) or not _DIGEST.fullmatch(bundle):
            raise _Reject("delivery_unproven", "the decision leaf has no acceptance time or bundle digest", True)
        return meta

    async def _in_time(self, opened: OpenedEnvelope, meta: dict[str, Any], now: int) -> None:
        """Created no later than now allows, and - under a rule with a time-to-live - not too long before its
        acceptance, and still within that time-to-live; the decision taken again under the leaf's bundle."""
        created, accepted = opened.body.created_at_ms, int(meta["at"])
        if created > now + timing.CLOCK_WINDOW_MS:
            raise _Reject("from_the_future", f"created {(created - now) // 1000} s in the future, beyond the "
                          f"clock window of {timing.CLOCK_WINDOW_MS // 1000} s", True)
        try:
            bundle = await self._bundles.get(meta["bundle"], accepted)
        except VerificationError as exc:
            raise _Reject("bundle_untrusted", exc.message, True) from None
        request = dataclasses.replace(request_from_envelope(opened), holder_asserted=True)
        decision = bundle.decide(request)
        if not decision.allowed or decision.rule_id != meta.get("rule"):
            raise _Reject("policy_violation", f"under bundle {bundle.digest[:12]}… this node decides "
                          f"{decision.reason} ({decision.message}), not what the broker logged", True)
        assert decision.rule is not None
        ttl = decision.rule.ttl_hours * 3_600_000
        if ttl and (created < timing.oldest_deliverable_created_at(accepted, ttl)
                    or now > timing.last_delivery_at(accepted, ttl)):
            raise _Reject("stale", f"created {(now - created) // 1000} s ago under rule {decision.rule.id!r}, "
                          f"whose time-to-live is {decision.rule.ttl_hours} h", True)

    async def _solicited(self, opened: OpenedEnvelope) -> None:
        """A disclosure answers a request this node sent; it is never pushed."""
        if opened.kind.name != MessageKind.DISCLOSURE_RESPONSE:
            return
        pseudonym = bytes(opened.body.disclosure_response.subject_pseudonym)
        if not await self._store.asked_for_disclosure(opened.body.sender, pseudonym):
            raise _Reject("unsolicited", f"no disclosure request of this node to {opened.body.sender} about this "
                          "pseudonym", True)

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
        env = await evidence.sent_env(self._store.db, notice.idempotency_key, notice.recipient)
        if env is None:
            self._audit.alarm("notice_unknown_key", seq=notice.seq, recipient=notice.recipient)
            return await self._reject(notice.seq, "unknown_key", f"this node sent nothing under that key to "
                                      f"{notice.recipient}", now_ms())
        expect: dict[str, object] = {"sender": self._org_id, "recipient": notice.recipient,
                                     "key": notice.idempotency_key, "env": env.hex()}
        expect |= ({"event": "delivery.ack", "outcome": "rejected", "reason": notice.reason_code} if rejected
                   else {"event": "delivery.expired"})
        try:
            await self._audit.check(notice.audit, expect)
        except TransportError:
            return None  # the broker is unreachable for the check: it redelivers the notice on the next stream
        except VerificationError as exc:
            # Alarmed by the checker; refused for good so it cannot hold a window slot forever.
            return await self._reject(notice.seq, "bad_expiry_proof", exc.message, now_ms())
        if rejected:
            known = await self._store.mark_undelivered(
                notice.idempotency_key, notice.recipient, f"{notice.recipient} refused it: {notice.reason_code}",
                "rejected", notice.audit.leaf_index, now_ms(), self._audit.quorum <= 0)
        else:
            known = await self._store.mark_undelivered(
                notice.idempotency_key, notice.recipient,
                f"not acknowledged by {notice.recipient} within the time-to-live of rule {notice.rule_id}", "expired",
                notice.audit.leaf_index, now_ms(), self._audit.quorum <= 0)
            self._metrics.expiries.inc()
        log.warning("outbox.rejected" if rejected else "outbox.expired", recipient=notice.recipient,
                    rule=notice.rule_id, reason=notice.reason_code, known=known)
        return broker_pb2.Ack(seq=notice.seq, outcome=broker_pb2.ACK_OUTCOME_STORED)

    async def _reject(self, seq: int, reason: str, detail: str, now: int) -> broker_pb2.Ack:
        await self._store.refuse_delivery(seq, reason, detail, now)
        log.warning("delivery.refused", seq=seq, reason=reason)
        return broker_pb2.Ack(seq=seq, outcome=broker_pb2.ACK_OUTCOME_REJECTED, reason_code=reason)
