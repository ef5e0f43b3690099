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
7. one transaction records the decision, the idempotency key and one queue
   row per recipient; only then is the receipt returned.

This module does not import grpc.
"""

from __future__ import annotations

from collections.abc import Callable

from olievlek import envelope, logs, wire
from olievlek.clock import now_ms
from olievlek.errors import PolicyDenied, Refused, VerificationError
from olievlek.identity import OrgIdentity
from olievlek.metrics import Metrics
from olievlek.policy import Bundle, Request
from olievlek.policy.from_envelope import request_from_envelope
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2

from .committer import Committer
from .store import DecisionRecord, SqliteBrokerStore
from .streams import Notifier

log = logs.get("broker")


def _decision_inputs(req: Request) -> dict[str, object]:
    """What a replay under another bundle needs: enum values and field names, never values or pseudonyms."""
    return {"phase": req.phase, "risk_level": req.risk_level, "concerns": sorted(req.concerns),
            "fields": sorted(req.present_fields), "purpose": req.purpose}


class BrokerService:
    """Send and delivery logic behind the gRPC servicer."""

    def __init__(
        self,
        store: SqliteBrokerStore,
        committer: Committer,
        bundle: Bundle,
        trust: TrustAnchor,
        notifier: Notifier,
        *,
        max_skew_ms: int = 300_000,
        clock: Callable[[], int] = now_ms,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics("broker")
        self.store = store
        self.committer = committer
        self.bundle = bundle
        self.trust = trust
        self.notifier = notifier
        self._max_skew_ms = max_skew_ms
        self._clock = clock

    async def send(self, origin: OrgIdentity, raw: bytes) -> broker_pb2.SendResponse:
        """Decide on one envelope from an authenticated organisation; every outcome is a log leaf."""
        now = self._clock()
        kind_name, rule_id = "unknown", ""
        inputs: dict[str, object] = {}
        try:
            env, body, kind = envelope.parse(raw)
            kind_name, rule_id = kind.name, body.rule_id
            self._check_sender(origin, body.sender)
            opened = envelope.verify(raw, env, body, kind, self.trust)
            replay = await self._replayed(body.sender, body.idempotency_key, opened.digest)
            if replay is not None:
                log.info("send.duplicate", sender=body.sender, kind=kind_name, rule=rule_id)
                self.metrics.sends.labels(decision="duplicate").inc()
                return replay
            self._check_clock(body.created_at_ms, now)
            request = request_from_envelope(opened)
            inputs = _decision_inputs(request)
            decision = self.bundle.decide(request)
            decision.raise_if_denied()
            assert decision.rule is not None
            return await self._accept(opened, decision.rule.id, now, inputs)
        except Refused as refusal:
            record = DecisionRecord(
                now, str(origin.org_id), kind_name, refusal.rule_id or rule_id, "refused",
                refusal.reason, refusal.field, (),
            )
            meta = {"event": "send", "sender": str(origin.org_id), "kind": kind_name, "rule": record.rule_id,
                    "decision": "refused", "reason": refusal.reason, "field": refusal.field,
                    "bundle": self.bundle.digest, **inputs}
            index, head = await self.committer.submit(
                lambda tx, batch: self.store.record_txn(tx, batch, record, meta))
            log.warning(
                "send.refused", sender=str(origin), kind=kind_name, rule=refusal.rule_id or rule_id,
                reason=refusal.reason, field=refusal.field, leaf=index,
            )
            self.metrics.sends.labels(decision="refused").inc()
            refused = refusal.to_proto()
            refused.audit.CopyFrom(await self.audit_proof(index, head))
            return broker_pb2.SendResponse(refusal=refused)

    async def audit_proof(self, index: int, head: broker_pb2.TreeHead) -> broker_pb2.AuditProof:
        """The caller's own leaf (salt and metadata) with its inclusion proof to ``head``."""
        audit = self.committer.audit
        salt, meta = await audit.event(index)
        return broker_pb2.AuditProof(leaf_index=index, salt=salt, metadata=meta or b"", head=head,
                                     inclusion=await audit.inclusion(index, head.size))

    def _check_sender(self, origin: OrgIdentity, sender: str) -> None:
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

    def _check_clock(self, created_at_ms: int, now: int) -> None:
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

    async def _with_proof(self, response: bytes, index: int,
                          head: broker_pb2.TreeHead | None) -> broker_pb2.SendResponse:
        """The stored receipt with a fresh proof of its leaf (to the latest head on a replay)."""
        out = broker_pb2.SendResponse.FromString(response)
        head = head or await self.committer.audit.head()
        assert head is not None
        out.receipt.audit.CopyFrom(await self.audit_proof(index, head))
        return out

    async def _accept(self, opened: envelope.OpenedEnvelope, rule_id: str, now: int,
                      inputs: dict[str, object]) -> broker_pb2.SendResponse:
        body = opened.body
        response = broker_pb2.SendResponse(
            receipt=broker_pb2.Receipt(
                body_digest=opened.digest, accepted_at_ms=now,
                recipients=list(body.recipients), rule_id=rule_id,
            )
        )
        record = DecisionRecord(
            now, body.sender, opened.kind.name, rule_id, "accepted", "", "", tuple(body.recipients)
        )
        meta = {"event": "send", "sender": body.sender, "kind": opened.kind.name, "rule": rule_id,
                "decision": "accepted", "reason": "", "field": "", "recipients": list(body.recipients),
                "bundle": self.bundle.digest, **inputs}
        (stored, index), head = await self.committer.submit(
            lambda tx, batch: self.store.accept_txn(tx, batch, body.idempotency_key, opened.digest,
                                                    wire.encode(response), opened.raw, record, meta))
        if not stored:  # a concurrent call won with another body
            raise Refused(
                "idempotency_key was already used by this sender with a different body",
                refusal_code=broker_pb2.REFUSAL_CODE_IDEMPOTENCY_CONFLICT, field="idempotency_key",
            )
        for recipient in body.recipients:
            self.notifier.notify(recipient)
        log.info(
            "send.accepted", sender=body.sender, kind=opened.kind.name, rule=rule_id,
            recipients=list(body.recipients), leaf=index,
        )
        self.metrics.sends.labels(decision="accepted").inc()
        return await self._with_proof(stored, index, head)

    async def ack(self, org: OrgIdentity, ack: broker_pb2.Ack) -> None:
        outcome = broker_pb2.AckOutcome.Name(ack.outcome).removeprefix("ACK_OUTCOME_").lower()
        at = self._clock()
        known, _head = await self.committer.submit(
            lambda tx, batch: self.store.ack_txn(tx, batch, str(org.org_id), ack.seq, outcome, ack.reason_code, at))
        self.metrics.acks.labels(outcome=outcome).inc()
        log.info("delivery.ack", recipient=str(org), seq=ack.seq, outcome=outcome,
                 reason=ack.reason_code, known=known)
