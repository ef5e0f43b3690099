"""The broker's decisions: authenticate the sender, verify, decide, queue.

Order of checks on ``Send`` (each refusal names what is wrong and is recorded
as a decision):

1. the envelope and its body parse strictly (``olievlek.wire``);
2. the body's sender is the organisation of the caller's TLS certificate,
   and the bundle knows it with that kind;
3. the signer certificate chains to the federation CA, is not revoked, names
   the sender; the signature verifies over the exact body bytes;
4. a known idempotency key returns the original answer (same body) or is
   refused (another body) - before the clock check, so that a retry after a
   long outage still gets its receipt;
5. created-at is within the allowed skew of the broker's clock;
6. the rule bundle decides (default deny);
7. each recipient's queue is below its limit (else QUEUE_FULL: nothing is
   queued, the sender retries later);
8. one transaction records the decision, the idempotency key and one queue
   row per recipient (under the recipient's next sequence number, with the
   rule's delivery deadline); only then is the receipt returned.

``send_batch`` runs steps 1-6 for all envelopes concurrently, then queues the
commits in the envelopes' order, so a sender's order is the recipients'
delivery order, and the whole batch shares one commit.

Whatever fails while preparing an envelope - however malformed - becomes a refusal with a code
(MALFORMED where nothing more precise fits), a decision and a leaf; each batch item is answered on its
own. A sender's first ``individual_refusals`` refusals in an interval get a leaf each; the rest of that
interval's are counted into one aggregated leaf (count, codes, first and last time, and a hash chain
over each refused input's ``env``, in order), written when the interval ends - so a flood costs one row,
not a leaf per input, and the sender that kept its inputs can show it is covered.

Every decision's leaf carries ``env`` (``envelope.leaf_env``): it binds the leaf to the envelope it is
about, so a node can tell its own receipt from someone else's, and nobody else can test a guess about a body.

This module does not import grpc.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from olievlek import envelope, logs, timing, wire
from olievlek.clock import now_ms
from olievlek.errors import PolicyDenied, Refused, StoreUnavailable, VerificationError, WireError
from olievlek.identity import OrgIdentity
from olievlek.kinds import MessageKind
from olievlek.metrics import Metrics
from olievlek.policy import Bundle, Request
from olievlek.policy.from_envelope import request_from_envelope
from olievlek.policy.model import Relation
from olievlek.ratelimit import Limit, TokenBuckets
from olievlek.statuses import Decision
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2

from .committer import Committer
from .queries import DirectoryService, over_limit
from .storage.directory import OverLimit
from .storage.interface import BrokerStorage
from .storage.operations import (
    Accept,
    AckItem,
    Acknowledge,
    AdmitEntry,
    AggregateRefusal,
    Conflict,
    DecisionRecord,
    DirectoryChange,
    Due,
    Expire,
    FlushAggregates,
    NotQueued,
    QueueFull,
    Record,
)
from .storage.store import NEVER
from .streams import Notifier

log = logs.get("broker")


def _decision_inputs(req: Request) -> dict[str, object]:
    """What a replay under another bundle needs: enum values and field names, never values or pseudonyms."""
    return {"phase": req.phase, "risk_level": req.risk_level, "concerns": sorted(req.concerns),
            "fields": sorted(req.present_fields), "purpose": req.purpose}


EXPIRY_BATCH = 500
MAX_TRACKED_IDENTITIES = 10_000


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-identity rate limits and refusal aggregation (broker configuration ``rate_limits``)."""

    # Recorded calls (writes: a batch counts its envelopes) and read calls have a bucket each, so a sender
    # that spends its writes can still fetch the proofs its receipts need.
    calls: Limit = field(default_factory=lambda: Limit(200.0, 2000.0))
    reads: Limit = field(default_factory=lambda: Limit(200.0, 2000.0))
    refusals: Limit = field(default_factory=lambda: Limit(2.0, 100.0))  # refusals per s before calls wait
    refusal_interval_ms: int = 60_000  # one aggregated refusal leaf per identity and interval
    individual_refusals: int = 20  # refusals per identity and interval that still get a leaf each


class CallLimits:
    """The token buckets of ``Limits``, per exact identity."""

    def __init__(self, limits: Limits) -> None:
        self.settings = limits
        self.calls = TokenBuckets(limits.calls)
        self.reads = TokenBuckets(limits.reads)
        self.refusals = TokenBuckets(limits.refusals)

    def admit(self, identity: str, cost: int, now_s: float, write: bool) -> float:
        """0 when ``identity`` may make a call of ``cost``; else how long it must wait (seconds)."""
        bucket = self.calls if write else self.reads
        return self.refusals.peek(identity, now_s) or bucket.wait(identity, now_s, cost)


@dataclass
class _Plan:
    """One envelope after the checks that need no commit."""

    kind_name: str = "unknown"
    rule_id: str = ""
    raw: bytes = b""  # the input as sent: a refusal's digest covers it
    inputs: dict[str, object] = field(default_factory=dict)
    answer: broker_pb2.SendResponse | None = None  # a replay, answered from the idempotency record
    refusal: Refused | None = None
    opened: envelope.OpenedEnvelope | None = None
    ttl_ms: int = 0
    # A directory change applied in the accepting transaction instead of a queue row, and the limit check
    # that runs first in that transaction (its refusal is the envelope's).
    change: DirectoryChange | None = None
    admit: AdmitEntry | None = None


def _queue_full(exc: QueueFull) -> Refused:
    what = "from you for" if exc.sender_share else "for"
    return Refused(
        f"the queue {what} {exc.recipient} holds {exc.depth} undelivered envelopes, its limit is {exc.limit}; "
        "nothing was queued, send again later",
        refusal_code=broker_pb2.REFUSAL_CODE_QUEUE_FULL, field="recipients",
    )


class BrokerService:
    """Send and delivery logic behind the gRPC servicer."""

    def __init__(
        self,
        store: BrokerStorage,
        committer: Committer,
        bundle: Bundle,
        trust: TrustAnchor,
        notifier: Notifier,
        *,
        max_skew_ms: int = timing.CLOCK_WINDOW_MS,
        clock: Callable[[], int] = now_ms,
        metrics: Metrics | None = None,
        queue_limit: int = 10_000,
        share_limit: int = 2_000,
        limits: Limits | None = None,
    ) -> None:
        self.metrics = metrics or Metrics("broker")
        self.store = store
        self.committer = committer
        self.bundle = bundle
        self.trust = trust
        self.notifier = notifier
        self._max_skew_ms = max_skew_ms
        self._clock = clock
        self.queue_limit = queue_limit
        self.share_limit = share_limit
        self.directory = DirectoryService(self)
        self.limits = CallLimits(limits or Limits())
        self._individual: dict[tuple[str, int], int] = {}  # (identity, interval) -> refusals with a leaf

    def now(self) -> int:
        return self._clock()

    def viewer_of(self, org_id: str) -> str | None:
        """An organisation's full identity under the enforced bundle: who reads the events about it."""
        return self.bundle.identity_of(org_id)

    def viewers(self, *org_ids: str) -> list[str]:
        return [v for v in map(self.viewer_of, org_ids) if v is not None]

    async def send(self, origin: OrgIdentity, raw: bytes) -> broker_pb2.SendResponse:
        """Decide on one envelope from an authenticated organisation; every outcome is a log leaf."""
        [response] = await self.send_batch(origin, [raw])
        return response

    async def send_batch(self, origin: OrgIdentity, raws: list[bytes]) -> list[broker_pb2.SendResponse]:
        """Decide on envelopes in order; one answer each, in the same order."""
        now = self._clock()
        plans = await asyncio.gather(*(self._prepare(origin, raw, now) for raw in raws))
        # Queued synchronously, in order: the committer runs them in this order, in one batch. Once a
        # recipient is full, later envelopes of this batch to it are refused too, so none overtakes.
        full: set[str] = set()
        commits = [self._enqueue_accept(p, now, full) for p in plans]
        return [await self._answer(origin, p, c, now) for p, c in zip(plans, commits, strict=True)]

    async def _prepare(self, origin: OrgIdentity, raw: bytes, now: int) -> _Plan:
        plan = _Plan(raw=raw)
        try:
            await self._checked(origin, raw, now, plan)
        except Refused as refusal:
            plan.refusal = refusal
        except StoreUnavailable:
            raise  # the database's doing, not the input's: the caller sends again
        except Exception as exc:  # whatever an input makes fail is that input's refusal, never an UNKNOWN
            log.error("send.unprocessable", sender=str(origin), kind=plan.kind_name, error=type(exc).__name__)
            plan.refusal = Refused(f"the envelope could not be processed ({type(exc).__name__})",
                                   refusal_code=broker_pb2.REFUSAL_CODE_MALFORMED)
        return plan

    async def _checked(self, origin: OrgIdentity, raw: bytes, now: int, plan: _Plan) -> None:
        """Steps 1-6 of the module docstring, filling ``plan``; raises Refused."""
        env, body, kind = envelope.parse(raw)
        plan.kind_name, plan.rule_id = kind.name, body.rule_id
        self.check_sender(origin, body.sender)
        if body.sender in body.recipients:
            raise Refused(f"{body.sender} cannot send to itself", field="recipients",
                          refusal_code=broker_pb2.REFUSAL_CODE_SELF_ADDRESSED)
        opened = envelope.verify(raw, env, body, kind, self.trust)
        plan.answer = await self._replayed(body.sender, body.idempotency_key, opened.digest)
        if plan.answer is not None:
            log.info("send.duplicate", sender=body.sender, kind=plan.kind_name, rule=plan.rule_id)
            self.metrics.sends.labels(decision="duplicate").inc()
            return
        self.check_clock(body.created_at_ms, now)
        if kind.name == MessageKind.QUERY_HIT:
            raise WireError("query.hit is answered by the Query call, not sent", field="kind")
        request = request_from_envelope(opened)
        plan.inputs = _decision_inputs(request)
        decision = self.bundle.decide(self.directory.assume_holder(request))
        decision.raise_if_denied()
        assert decision.rule is not None
        if decision.rule.relation == Relation.PSEUDONYM_HOLDER:  # only now: a denied sender learns nothing
            await self.directory.route_to_holder(opened, decision.rule, origin, now)
        await self.directory.check_response(opened)
        plan.rule_id, plan.opened = decision.rule.id, opened
        plan.ttl_ms = decision.rule.ttl_hours * 3_600_000
        plan.change = self.directory.changes(opened, now, plan)

    def _enqueue_accept(self, plan: _Plan, now: int, full: set[str]) -> asyncio.Future[Any] | None:
        if plan.opened is None:
            return None
        opened, body = plan.opened, plan.opened.body
        response = broker_pb2.SendResponse(
            receipt=broker_pb2.Receipt(
                body_digest=opened.digest, accepted_at_ms=now, recipients=list(body.recipients), rule_id=plan.rule_id,
            )
        )
        record = DecisionRecord(now, body.sender, opened.kind.name, plan.rule_id, Decision.ACCEPTED, "", "",
                                tuple(body.recipients))
        meta = {"event": "send", "sender": body.sender, "kind": opened.kind.name, "rule": plan.rule_id,
                "decision": Decision.ACCEPTED, "reason": "", "field": "", "recipients": list(body.recipients),
                "env": envelope.env_of(opened.raw).hex(), "at": now, "bundle": self.bundle.digest, **plan.inputs}
        return self.committer.enqueue(Accept(
            body.idempotency_key, opened.digest, wire.encode(response), opened.raw, record, meta,
            now + plan.ttl_ms if plan.ttl_ms else NEVER, self.queue_limit, self.share_limit,
            tuple(self.viewers(body.sender, *body.recipients)), plan.change, plan.admit, full))

    async def _answer(self, origin: OrgIdentity, plan: _Plan, commit: asyncio.Future[Any] | None,
                      now: int) -> broker_pb2.SendResponse:
        if plan.answer is not None:
            return plan.answer
        if commit is not None:
            assert plan.opened is not None
            try:
                return await self._accepted(plan.opened, plan.rule_id, commit)
            except QueueFull as exc:
                plan.refusal = _queue_full(exc)
            except Refused as refusal:
                plan.refusal = refusal
        assert plan.refusal is not None
        return await self.refuse(origin, plan, plan.refusal, now)

    async def refuse_input(self, origin: OrgIdentity, kind_name: str, refusal: Refused,
                           raw: bytes) -> broker_pb2.SendResponse:
        """Record the refusal of an input that never became an envelope plan (a malformed request, a report,
        a cosignature)."""
        return await self.refuse(origin, _Plan(kind_name=kind_name, raw=raw), refusal, self._clock())

    async def refuse(self, origin: OrgIdentity, plan: _Plan, refusal: Refused, now: int) -> broker_pb2.SendResponse:
        """Every refusal is recorded: a leaf of its own, or - beyond the first few of this identity in the
        interval - a count in the interval's aggregated leaf."""
        identity = str(origin)
        self.limits.refusals.take(identity, time.monotonic())
        self.metrics.sends.labels(decision=Decision.REFUSED).inc()
        interval_ms = self.limits.settings.refusal_interval_ms
        interval = now - now % interval_ms
        key = (identity, interval)
        if self._individual.get(key, 0) >= self.limits.settings.individual_refusals:
            code = broker_pb2.RefusalCode.Name(refusal.refusal_code).removeprefix("REFUSAL_CODE_")
            digest = envelope.env_of(plan.raw)
            position, _head = await self.committer.submit(AggregateRefusal(identity, interval, code, digest, now))
            refused = refusal.to_proto()
            refused.aggregated_interval_ms = interval
            refused.aggregated_position = int(position)
            return broker_pb2.SendResponse(refusal=refused)
        if len(self._individual) > MAX_TRACKED_IDENTITIES:
            self._individual = {k: v for k, v in self._individual.items() if k[1] == interval}
        self._individual[key] = self._individual.get(key, 0) + 1
        record = DecisionRecord(now, str(origin.org_id), plan.kind_name, refusal.rule_id or plan.rule_id,
                                Decision.REFUSED, refusal.reason, refusal.field, ())
        meta = {"event": "send", "sender": str(origin.org_id), "kind": plan.kind_name, "rule": record.rule_id,
                "decision": Decision.REFUSED, "reason": refusal.reason, "field": refusal.field,
                "env": envelope.env_of(plan.raw).hex(), "bundle": self.bundle.digest, **plan.inputs}
        recorded, head = await self.committer.submit(Record(record, meta, (identity,)))
        log.warning("send.refused", sender=identity, kind=plan.kind_name, rule=record.rule_id,
                    reason=refusal.reason, field=refusal.field, leaf=recorded.index)
        refused = refusal.to_proto()
        refused.audit.CopyFrom(await self.audit_proof(recorded.index, head, recorded.leaf))
        return broker_pb2.SendResponse(refusal=refused)

    async def audit_proof(self, index: int, head: broker_pb2.TreeHead,
                          leaf: tuple[bytes, bytes] | None = None) -> broker_pb2.AuditProof:
        """The caller's own leaf (salt and metadata) with its inclusion proof to ``head``.

        ``leaf`` is (salt, metadata) when the caller just appended it (saves reading it back)."""
        audit = self.committer.audit
        salt, meta = leaf or await audit.event(index)
        return broker_pb2.AuditProof(leaf_index=index, salt=salt, metadata=meta or b"", head=head,
                                     inclusion=await audit.inclusion(index, head.size))

    async def audit_proofs(self, indices: list[int], head: broker_pb2.TreeHead) -> dict[int, broker_pb2.AuditProof]:
        """``audit_proof`` for many leaves to one head, in two reads (a delivery batch)."""
        audit = self.committer.audit
        wanted = sorted(set(indices))
        events = await audit.events(wanted)
        paths = await audit.inclusions(wanted, head.size)
        return {i: broker_pb2.AuditProof(leaf_index=i, salt=events[i][0], metadata=events[i][1] or b"", head=head,
                                         inclusion=path) for i, path in zip(wanted, paths, strict=True)}

    def check_sender(self, origin: OrgIdentity, sender: str) -> None:
        if sender != origin.org_id:
            raise VerificationError(
                f"envelope sender {sender!r} is not the authenticated organisation "
                f"{origin.org_id!r} (from its TLS client certificate)",
                refusal_code=broker_pb2.REFUSAL_CODE_SENDER_MISMATCH, field="sender",
            )
        org = self.bundle.org(sender)
        if org is None or org.kind != origin.kind:
            raise PolicyDenied(
                f"organisation {origin} is not in the policy bundle with that kind; default deny",
                field="sender",
            )

    def check_clock(self, created_at_ms: int, now: int) -> None:
        skew = abs(now - created_at_ms)
        if skew > self._max_skew_ms:
            raise Refused(
                f"created_at_ms is {skew // 1000} s from the broker's clock; at most "
                f"{self._max_skew_ms // 1000} s is accepted",
                refusal_code=broker_pb2.REFUSAL_CODE_STALE, field="created_at_ms",
            )

    async def _replayed(self, sender: str, key: str, digest: bytes) -> broker_pb2.SendResponse | None:
        prior = await self.store.idempotency(sender, key)
        if prior is None:
            return None
        prior_digest, response, index = prior
        if prior_digest != digest:
            raise Refused(
                "idempotency_key was already used by this sender with a different body",
                refusal_code=broker_pb2.REFUSAL_CODE_IDEMPOTENCY_CONFLICT, field="idempotency_key",
            )
        return await self._with_proof(response, index, None)

    async def _with_proof(self, response: bytes, index: int, head: broker_pb2.TreeHead | None,
                          leaf: tuple[bytes, bytes] | None = None) -> broker_pb2.SendResponse:
        """The stored receipt with a fresh proof of its leaf (to the latest head on a replay)."""
        out = broker_pb2.SendResponse.FromString(response)
        head = head or await self.committer.audit.head()
        assert head is not None
        out.receipt.audit.CopyFrom(await self.audit_proof(index, head, leaf))
        return out

    async def _accepted(self, opened: envelope.OpenedEnvelope, rule_id: str,
                        commit: asyncio.Future[Any]) -> broker_pb2.SendResponse:
        body = opened.body
        result, head = await commit
        if isinstance(result, QueueFull):
            raise result
        if isinstance(result, OverLimit):
            raise over_limit(body.sender, result, rule_id)
        if isinstance(result, Conflict):  # a concurrent call won with another body
            raise Refused(
                "idempotency_key was already used by this sender with a different body",
                refusal_code=broker_pb2.REFUSAL_CODE_IDEMPOTENCY_CONFLICT, field="idempotency_key",
            )
        for recipient in body.recipients:
            self.notifier.notify(recipient)
        log.info("send.accepted", sender=body.sender, kind=opened.kind.name, rule=rule_id,
                 recipients=list(body.recipients), leaf=result.leaf_index)
        self.metrics.sends.labels(decision=Decision.ACCEPTED).inc()
        return await self._with_proof(result.response, result.leaf_index, head, result.leaf)

    async def ack(self, org: OrgIdentity, acks: list[broker_pb2.Ack]) -> None:
        """Record a batch of acknowledgements in one commit."""
        at, recipient = self._clock(), str(org.org_id)
        outcomes = [broker_pb2.AckOutcome.Name(a.outcome).removeprefix("ACK_OUTCOME_").lower() for a in acks]

        done, _head = await self.committer.submit(Acknowledge(
            recipient, tuple(AckItem(a.seq, o, a.reason_code) for a, o in zip(acks, outcomes, strict=True)), at,
            self.viewer_of))
        for a, o, acked in zip(acks, outcomes, done, strict=True):
            sender = None if isinstance(acked, NotQueued) else acked.sender
            self.metrics.acks.labels(outcome=o).inc()
            if o == "rejected" and sender is not None:
                self.notifier.notify(sender)  # a notice waits for it
            if o != "stored" or sender is None:
                log.info("delivery.ack", recipient=recipient, seq=a.seq, outcome=o, reason=a.reason_code,
                         known=sender is not None)
        log.debug("delivery.acks", recipient=recipient, count=len(acks))

    async def flush_refusals(self, now: int) -> int:
        """Write the aggregated refusal leaf of every interval that has ended; returns how many."""
        interval_ms = self.limits.settings.refusal_interval_ms
        current = now - now % interval_ms
        if not await self.store.has_aggregates_before(current):
            return 0  # the usual case: no commit for nothing
        flushed, _head = await self.committer.submit(FlushAggregates(current, interval_ms, now))
        log.info("refusals.aggregated", leaves=flushed)
        return int(flushed)

    async def expire_due(self) -> int:
        """Expire every envelope past its delivery deadline; the sender is told on its stream. Open
        disclosure requests nobody answered within their rule's time-to-live are closed too, and ended
        intervals' refusals get their aggregated leaf."""
        now = self._clock()
        await self.directory.close_stale_requests(now)
        await self.flush_refusals(now)
        due = await self.store.due(now, EXPIRY_BATCH)
        commits = [self.committer.enqueue(self._expiry(d, now)) for d in due]
        expired = 0
        for d, c in zip(due, commits, strict=True):
            index, _head = await c
            if index is None:
                continue
            expired += 1
            self.metrics.expiries.inc()
            self.notifier.notify(d.sender)
            log.warning("delivery.expired", sender=d.sender, recipient=d.recipient, rule=d.rule_id,
                        queued_s=(now - d.enqueued_ms) // 1000, leaf=index)
        return expired

    def _expiry(self, due: Due, now: int) -> Expire:
        notice = broker_pb2.DeliveryNotice(idempotency_key=due.idem_key, recipient=due.recipient, rule_id=due.rule_id,
                                           enqueued_at_ms=due.enqueued_ms, expired_at_ms=now,
                                           reason=broker_pb2.NOTICE_REASON_EXPIRED)
        meta: dict[str, object] = {"event": "delivery.expired", "sender": due.sender, "recipient": due.recipient,
                                   "rule": due.rule_id, "key": due.idem_key}
        return Expire(due, wire.encode(notice), meta, now, self.viewer_of)
