"""The sender side: intents become signed envelopes, sent until the broker answers.

1. A business change writes an *intent* row (status ``queued``) in its own
   transaction (``NodeStore.add_intent_txn``), so the change and the intent to
   tell others commit together or not at all.
2. This worker builds each intent's envelope (a builder per kind), signs it
   and stores the bytes (``pending``) before the first send.
3. Pending rows are sent in batches (``SendBatch``), the same bytes on every
   retry, with a deadline and jittered exponential backoff after a transport
   failure; the broker's idempotency record answers a resend with the
   original receipt.
4. A row is finished (``accepted``/``refused``) only after the answer's audit
   proof verified and the proven leaf is about this row: its ``env`` (which only
   holders of the signed envelope can compute), kind, rule and recipients are
   the row's, and no other row was proven by that leaf. A refusal counted into
   an aggregated leaf is recorded with its place in that leaf's chain and stays
   provisional until the log watch proves the leaf (``node/log_watch.py``). ``STALE``
   (outage longer than the clock window) re-seals the same body under a fresh
   created-at; ``QUEUE_FULL`` keeps the row pending and backs off.

No network call happens inside a database transaction: the worker reads rows,
sends, then records.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from olievlek import envelope, logs, wire
from olievlek.clock import now_ms
from olievlek.envelope import Signer, body_of
from olievlek.errors import OlievlekError, TransportError, VerificationError
from olievlek.metrics import Metrics
from olievlek.statuses import OutboxStatus
from olievlek.v1 import broker_pb2, envelope_pb2

from . import evidence
from .audit_check import AuditChecker
from .broker_client import BrokerClient
from .store import Answer, NodeStore, OutboxRow

log = logs.get("node.outbox")

INITIAL_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0
BATCH = 128
SEND_DEADLINE_S = 15.0
IDLE_POLL_S = 30.0  # a kick is the normal wake-up; this catches rows written behind the worker's back
# Refusals that say "not now" rather than "no": the row stays pending and is sent again.
TRANSIENT = frozenset({broker_pb2.REFUSAL_CODE_STALE, broker_pb2.REFUSAL_CODE_QUEUE_FULL})

Builder = Callable[[OutboxRow], Awaitable[envelope_pb2.EnvelopeBody]]


class OutboxSender:
    """Background worker draining the outbox."""

    def __init__(self, store: NodeStore, client: BrokerClient, signer: Signer, audit: AuditChecker,
                 metrics: Metrics | None = None, rng: random.Random | None = None) -> None:
        self._store = store
        self._client = client
        self._signer = signer
        self._audit = audit
        self._metrics = metrics or Metrics("node")
        self._builders: dict[str, Builder] = {}
        self._wake = asyncio.Event()
        self._finished: dict[int, asyncio.Event] = {}
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._stop_requested = asyncio.Event()
        self._retry_after: float | None = None  # the broker's RetryInfo delay after a rate-limited batch
        self._stopped = asyncio.Event()

    def register(self, kind: str, builder: Builder) -> None:
        self._builders[kind] = builder

    def kick(self) -> None:
        self._wake.set()

    async def stop(self, grace: float) -> None:
        """Drain: finish the batch in flight (bounded by its deadline), then stop."""
        self._stop_requested.set()
        self._wake.set()
        try:
            await asyncio.wait_for(self._stopped.wait(), grace)
        except TimeoutError:
            log.warning("outbox.stop_timeout", grace_s=grace)

    async def run(self) -> None:
        backoff = INITIAL_BACKOFF_S
        try:
            while not self._stop_requested.is_set():
                self._wake.clear()
                try:
                    drained = await self._drain()
                except Exception:  # never let the worker die: log, back off, retry
                    log.exception("outbox.failed")
                    drained = False
                if self._stop_requested.is_set():
                    break
                if drained:
                    backoff, delay = INITIAL_BACKOFF_S, IDLE_POLL_S
                else:
                    delay = backoff * (0.5 + self._rng.random())
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                if self._retry_after is not None:  # the broker said when: wait that long, jittered, not less
                    delay = max(delay, self._retry_after * (1.0 + 0.25 * self._rng.random()))
                    self._retry_after = None
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                except TimeoutError:
                    pass
        finally:
            self._stopped.set()

    async def _drain(self) -> bool:
        """Build queued intents, then send every pending row once; False when something must wait.

        Rows that wait (a full queue, a proof to re-check) hold back the later rows to the same
        recipient, so each recipient still gets a sender's alerts in order; rows to other recipients go
        on. The held rows are retried on the next pass after a backoff."""
        await self._seal_intents()
        after, waiting = 0, False
        held: set[str] = set()  # recipients with a waiting row: later rows to them wait too (order)
        while not self._stop_requested.is_set():
            fetched = await self._store.outbox_rows("pending", BATCH, after)
            if not fetched:
                return not waiting
            after = fetched[-1].id
            rows = [r for r in fetched if r.recipient not in held]
            if not rows:
                continue
            try:
                responses = await self._client.send_batch([r.envelope or b"" for r in rows], SEND_DEADLINE_S)
            except TransportError as exc:
                self._retry_after = exc.retry_after_s
                await self._store.count_attempts([r.id for r in rows], exc.message)
                self._metrics.sends.labels(decision="retry").inc(len(rows))
                log.warning("outbox.retry", entries=len(rows), error=exc.message)
                return False
            held |= await self._record(rows, responses)
            waiting = bool(held)
        return not waiting

    async def _seal_intents(self) -> None:
        while rows := await self._store.outbox_rows("queued", BATCH):
            sealed: list[tuple[int, bytes]] = []
            failed: list[tuple[int, str]] = []
            for row in rows:
                try:
                    body = await self._build(row)
                    wire.validate(body)  # our own output must pass the checks we demand of others
                    sealed.append((row.id, envelope.seal(body, self._signer)))
                except OlievlekError as exc:
                    log.error("outbox.build_failed", outbox_id=row.id, kind=row.kind, error=exc.message)
                    failed.append((row.id, exc.message))
            await self._store.seal_outbox(sealed, failed)
            for outbox_id, _ in failed:
                self._finish_event(outbox_id)

    async def _build(self, row: OutboxRow) -> envelope_pb2.EnvelopeBody:
        builder = self._builders.get(row.kind)
        if builder is None:
            raise OlievlekError(f"no envelope builder for outbox kind {row.kind!r}")
        body = await builder(row)
        body.idempotency_key = row.idem_key  # fixed at intent time: a rebuilt envelope is the same message
        body.created_at_ms = now_ms()
        return body

    async def _reseal(self, row: OutboxRow) -> None:
        assert row.envelope is not None
        body = body_of(row.envelope)
        body.created_at_ms = now_ms()
        await self._store.replace_outbox_envelope(row.id, envelope.seal(body, self._signer))
        log.warning("outbox.resealed", outbox_id=row.id, reason="stale")

    async def _record(self, rows: list[OutboxRow], responses: list[broker_pb2.SendResponse]) -> set[str]:
        """Record the broker's answers; returns the recipients of rows that must wait (backoff)."""
        if len(responses) != len(rows):
            log.error("outbox.bad_batch_answer", sent=len(rows), answers=len(responses))
            return {r.recipient for r in rows}
        answers: list[Answer] = []
        waiting: set[str] = set()
        for row, response in zip(rows, responses, strict=True):
            answer = await self._answer(row, response)
            if answer is None:
                waiting.add(row.recipient)
            else:
                answers.append(answer)
        owners = await evidence.leaf_owners(self._store.db, [a.leaf for a in answers if a.leaf is not None])
        for a in [a for a in answers if a.leaf is not None and owners.get(a.leaf, a.outbox_id) != a.outbox_id]:
            self._audit.alarm("leaf_reused", outbox_id=a.outbox_id, leaf=a.leaf, proved=owners[a.leaf or 0])
            answers.remove(a)
            waiting.add(next(r.recipient for r in rows if r.id == a.outbox_id))
        await self._store.finish_outbox(answers, now_ms(), self._audit.quorum <= 0)
        for a in answers:
            self._metrics.sends.labels(decision=a.status).inc()
            self._finish_event(a.outbox_id)
        log.info("outbox.sent", answered=len(answers), waiting=len(rows) - len(answers))
        return waiting

    async def _answer(self, row: OutboxRow, response: broker_pb2.SendResponse) -> Answer | None:
        """What to record for a row, or None when it stays pending (sent again after a backoff)."""
        assert row.envelope is not None
        env = envelope.env_of(row.envelope)
        body = body_of(row.envelope)
        outcome = response.WhichOneof("outcome")
        if outcome == "receipt":
            expect: dict[str, object] = {
                "event": "send", "sender": body.sender, "decision": "accepted", "env": env.hex(), "kind": row.kind,
                "rule": body.rule_id, "recipients": list(body.recipients)}
            if not await self._proven(row, response.receipt.audit, expect):
                return None
            return Answer(row.id, OutboxStatus.ACCEPTED, wire.encode(response), "", env,
                          leaf=response.receipt.audit.leaf_index)
        refusal = response.refusal
        code = broker_pb2.RefusalCode.Name(refusal.code)
        if refusal.aggregated_interval_ms:
            if refusal.code in TRANSIENT or not refusal.aggregated_position:
                # Neither "not now" nor a place in a chain can be believed without a leaf: retry later.
                self._audit.alarm("aggregated_refusal_unplaced", outbox_id=row.id, code=code)
                return None
            log.warning("outbox.refused", outbox_id=row.id, rule=refusal.rule_id, code=code, field=refusal.field,
                        provisional=True, interval_ms=refusal.aggregated_interval_ms)
            return Answer(row.id, OutboxStatus.REFUSED, wire.encode(response), refusal.detail, env,
                          aggregated=(refusal.aggregated_interval_ms, refusal.aggregated_position))
        expect = {"event": "send", "sender": body.sender, "decision": "refused", "env": env.hex(),
                  "kind": row.kind, "rule": refusal.rule_id or body.rule_id, "field": refusal.field}
        if not await self._proven(row, refusal.audit, expect):
            return None
        if refusal.code == broker_pb2.REFUSAL_CODE_STALE:
            # The broker never accepted these bytes (a replay would have been answered from its
            # idempotency record first), so the same body under a fresh created-at is safe to send.
            await self._reseal(row)
            return None  # retried after a backoff, so a node with a wrong clock cannot spin
        if refusal.code in TRANSIENT:
            await self._store.count_attempts([row.id], refusal.detail)
            log.warning("outbox.deferred", outbox_id=row.id, code=code)
            return None
        log.warning("outbox.refused", outbox_id=row.id, rule=refusal.rule_id, code=code, field=refusal.field)
        return Answer(row.id, OutboxStatus.REFUSED, wire.encode(response), refusal.detail, env,
                      leaf=refusal.audit.leaf_index)

    async def _proven(self, row: OutboxRow, audit: broker_pb2.AuditProof, expect: dict[str, object]) -> bool:
        """The answer's leaf is in the log and says what ``expect`` says (that it proves no other row is
        checked for the whole batch in ``_record``)."""
        try:
            await self._audit.check(audit, expect)
        except (VerificationError, TransportError):
            return False  # alarmed (or logged) by the checker; keep the row and try again later
        return True

    def _finish_event(self, outbox_id: int) -> None:
        event = self._finished.get(outbox_id)  # only rows someone waits for
        if event is not None:
            event.set()

    async def wait(self, outbox_id: int, timeout: float) -> None:
        """Wait until a row has an answer from the broker, or the timeout passes."""
        event = self._finished.setdefault(outbox_id, asyncio.Event())  # before reading: no missed finish
        try:
            row = await self._store.outbox(outbox_id)
            if row is not None and not row.status.unanswered:
                return
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._finished.pop(outbox_id, None)
