"""The broker's gRPC server: mTLS, authentication, thin servicers.

Every call starts by deriving the caller's identity from its verified client
certificate (exactly one olievlek:// SAN, not revoked); servicers then hand
``origin`` to ``BrokerService``. Health checking and reflection are on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import grpc
from cryptography.exceptions import InvalidSignature
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from olievlek import logs, transport, wire
from olievlek.audit.checkpoint import origin_for
from olievlek.audit.cosign import verify_cosignature
from olievlek.audit.log import AuditLog
from olievlek.clock import now_ms
from olievlek.config import write_ready_file
from olievlek.errors import ConfigError, Refused, VerificationError, WireError
from olievlek.identity import OrgIdentity
from olievlek.lifecycle import until_stopped
from olievlek.metrics import Metrics
from olievlek.policy import Bundle, bundle_name, digest_of
from olievlek.policy.archive import archive_of
from olievlek.policy.signing import load_roots, load_signing_key, verify_bundle
from olievlek.pseudonymiser_report import REPORT_CONTEXT
from olievlek.ratelimit import OncePerInterval
from olievlek.statuses import LoadOutcome
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2, broker_pb2_grpc, pseudonymiser_pb2

from . import access
from .committer import Committer
from .config import BrokerConfig
from .instances import InstanceWatch, instance_name
from .pusher import Pusher
from .readiness import Readiness
from .service import EXPIRY_BATCH, BrokerService
from .storage.operations import AppendLeaves, BindQueueLeaves, Leaf, LoadPolicy, Queued
from .storage.store import BrokerStore
from .streams import Notifier, StreamRegistry

log = logs.get("broker")

DELIVERY_BATCH = 100
# Unacknowledged deliveries in flight per stream: a slow node holds the broker back here
# (backpressure) instead of letting HTTP/2 buffers and memory grow.
WINDOW = 256
GAUGE_INTERVAL_S = 2.0
LOG_INTERVAL_S = 60.0  # a caller's refused calls are logged once per code per minute (and counted always)
REPORT, COSIGNATURE = "pseudonymiser.report", "cosignature"
MAX_BATCH = 128  # SendBatchRequest.envelopes' bound
HOLD_MAX_S = 1.0  # a rate-limited call is answered after at most this long (of the delay it is told)
DIRECTORY_REPORT_DAYS = 30  # the history an officer's directory report compares with, unless asked otherwise
HOLD_PER_IDENTITY = 64  # rate-limited calls of one identity held at once


class _Window:
    """The seqs delivered on one stream and not acknowledged yet."""

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self.inflight: set[int] = set()
        self.freed = asyncio.Event()

    def room(self) -> int:
        return self.size - len(self.inflight)

    def acked(self, seqs: list[int]) -> None:
        self.inflight.difference_update(seqs)
        self.freed.set()


def _raw(request: Any) -> bytes:
    """What a caller sent, as bytes: the input a refusal's digest covers."""
    return bytes(request.SerializeToString(deterministic=True))


class BrokerServicer(broker_pb2_grpc.BrokerServicer):
    """gRPC face of the broker: every call passes ``_gate`` (authentication, rate limit, and the authorisation
    matrix of ``access.py``) before its handler; every input ends in a recorded decision or a status with a
    stable refusal code, never an unhandled exception."""

    def __init__(self, service: BrokerService, registry: StreamRegistry) -> None:
        self._service = service
        self._registry = registry
        self.watch: InstanceWatch | None = None  # with several instances over one database
        # Highest seq delivered per recipient since start: a lower or equal one is a redelivery.
        self._delivered: dict[str, int] = {}
        self._log_gate = OncePerInterval(LOG_INTERVAL_S, time.monotonic)
        self._held: dict[str, int] = {}  # calls over their limit, per identity, held before their answer

    async def _gate(self, rpc: str, context: grpc.aio.ServicerContext[Any, Any], cost: int = 1) -> OrgIdentity:
        """The caller, once authenticated, within its rate limits and (for read calls) authorised."""
        found = transport.peer_or_refusal(context, self._service.trust)
        if not isinstance(found, OrgIdentity):
            await self._end(rpc, None, context, grpc.StatusCode.UNAUTHENTICATED, found.message, found.code)
        origin = found
        wait = self._service.limits.admit(str(origin), cost, time.monotonic(), write=access.MATRIX[rpc].recorded)
        if wait:
            await self._hold_back(str(origin), wait)
            await self._end(rpc, origin, context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"too many calls or refusals from {origin}; retry in {wait:.1f} s", "RATE_LIMITED",
                            retry_after_s=wait)
        if not access.MATRIX[rpc].recorded:
            try:
                access.check(rpc, origin, self._service.bundle)
            except access.Denied as denied:
                await self._end(rpc, origin, context, grpc.StatusCode.PERMISSION_DENIED, denied.message,
                                denied.code_name)
        return origin

    async def _hold_back(self, identity: str, wait: float) -> None:
        """Answer a caller over its limit only after (part of) the delay it is told to wait: a client that
        ignores RetryInfo then makes a few calls a second, not thousands, and costs the broker - and the
        organisations that wait behind it - next to nothing. At most ``HOLD_PER_IDENTITY`` of its calls are
        held at once; beyond that they are answered at once."""
        if self._held.get(identity, 0) >= HOLD_PER_IDENTITY:
            return
        self._held[identity] = self._held.get(identity, 0) + 1
        try:
            await asyncio.sleep(min(wait, HOLD_MAX_S))
        finally:
            self._held[identity] -= 1
            if not self._held[identity]:
                del self._held[identity]

    async def _end(self, rpc: str, origin: OrgIdentity | None, context: grpc.aio.ServicerContext[Any, Any],
                   status: grpc.StatusCode, message: str, code: str, retry_after_s: float | None = None) -> NoReturn:
        """A call that ends in a status: counted always, logged once per caller and code per interval."""
        self._service.metrics.refused_calls.labels(rpc=rpc, code=code).inc()
        who = str(origin) if origin is not None else "unauthenticated"
        if self._log_gate.allow(f"{who}|{code}"):
            log.warning("call.refused", rpc=rpc, caller=who, code=code, reason=message,
                        since_last=self._log_gate.take_suppressed(f"{who}|{code}"))
        await transport.abort(context, status, message, code, retry_after_s)

    async def _still_admitted(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        found = transport.peer_or_refusal(context, self._service.trust)
        if not isinstance(found, OrgIdentity):
            await self._end("Subscribe", None, context, grpc.StatusCode.UNAUTHENTICATED, found.message, found.code)
        try:
            access.check("Subscribe", found, self._service.bundle)
        except access.Denied as denied:
            await self._end("Subscribe", found, context, grpc.StatusCode.PERMISSION_DENIED, denied.message,
                            denied.code_name)

    async def _validated(self, rpc: str, origin: OrgIdentity, request: Any,
                         context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """A read call's arguments follow the wire contract, or the call ends INVALID_ARGUMENT."""
        try:
            wire.validate(request)
        except WireError as exc:
            code = broker_pb2.RefusalCode.Name(exc.refusal_code).removeprefix("REFUSAL_CODE_")
            await self._end(rpc, origin, context, grpc.StatusCode.INVALID_ARGUMENT, exc.message, code)

    async def _recorded_denial(self, rpc: str, origin: OrgIdentity, kind_name: str, raw: bytes) -> Refused | None:
        """For a recorded call: the authorisation matrix's refusal, as a refusal to record (or None)."""
        try:
            access.check(rpc, origin, self._service.bundle)
        except access.Denied as denied:
            return Refused(denied.message, refusal_code=denied.code, field="caller")
        return None

    async def Send(
        self, request: broker_pb2.SendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.SendResponse:
        origin = await self._gate("Send", context)
        try:
            wire.validate(request)
        except WireError as exc:
            return await self._service.refuse_input(origin, "envelope", exc, _raw(request))
        return await self._service.send(origin, request.envelope)

    async def SendBatch(
        self, request: broker_pb2.SendBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.SendBatchResponse:
        origin = await self._gate("SendBatch", context, cost=max(1, len(request.envelopes)))
        try:
            shape = broker_pb2.SendBatchRequest()
            shape.CopyFrom(request)  # everything but the items (unknown fields too); each item is checked alone
            del shape.envelopes[:]
            wire.validate(shape)
            if len(request.envelopes) > MAX_BATCH:
                raise WireError(f"a batch holds at most {MAX_BATCH} envelopes, this one {len(request.envelopes)}",
                                refusal_code=broker_pb2.REFUSAL_CODE_BOUND_EXCEEDED, field="envelopes")
        except WireError as exc:  # the batch as a whole is out of bounds: one recorded refusal answers each item
            refused = await self._service.refuse_input(origin, "envelope", exc, _raw(request))
            return broker_pb2.SendBatchResponse(responses=[refused] * max(1, len(request.envelopes)))
        return broker_pb2.SendBatchResponse(responses=await self._service.send_batch(origin, list(request.envelopes)))

    async def Query(
        self, request: broker_pb2.QueryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.QueryResponse:
        origin = await self._gate("Query", context)
        try:
            wire.validate(request)
        except WireError as exc:
            return await self._service.directory.refuse_malformed(origin, exc, _raw(request))
        return await self._service.directory.query(origin, request.envelope)

    async def DirectoryEntries(
        self, request: broker_pb2.DirectoryEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.DirectoryEntriesResponse:
        origin = await self._gate("DirectoryEntries", context)
        await self._validated("DirectoryEntries", origin, request, context)
        limit = min(request.limit or access.MAX_DIRECTORY_ENTRIES, access.MAX_DIRECTORY_ENTRIES)
        return await self._service.directory.own_entries(origin, request.after, limit)

    async def DirectoryReport(
        self, request: broker_pb2.DirectoryReportRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.DirectoryReportResponse:
        origin = await self._gate("DirectoryReport", context)
        await self._validated("DirectoryReport", origin, request, context)
        return await self._service.directory.report(request.days or DIRECTORY_REPORT_DAYS)

    # grpc.aio lets a streaming handler return None and use context.read()/write() (backpressure per write);
    # the generated stub only knows the iterator form, so this one override is declared, not inferred.
    async def Subscribe(  # type: ignore[override]
        self, request_iterator: AsyncIterator[broker_pb2.SubscribeUp], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        origin = await self._gate("Subscribe", context)
        org = str(origin.org_id)
        owner = asyncio.Event()
        epoch = await self.watch.claim(org, owner) if self.watch is not None else 0
        superseded = self._registry.claim(org, owner)
        log.info("stream.open", org=str(origin), epoch=epoch)
        window = _Window()
        reader = asyncio.ensure_future(self._read_acks(origin, context, window))
        try:
            await self._deliver(org, context, superseded, reader, window)
        finally:
            reader.cancel()
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                log.warning("stream.ack_reader_failed", org=str(origin), error=type(reader.exception()).__name__)
            self._registry.release(org, superseded)
            if self.watch is not None:
                try:
                    await self.watch.release(org, epoch)
                except Exception as exc:  # the database away: the next claim supersedes this one anyway
                    log.warning("stream.release_failed", org=str(origin), error=type(exc).__name__)
            log.info("stream.closed", org=str(origin), superseded=superseded.is_set())

    async def ReportEvaluations(
        self, request: broker_pb2.EvaluationReport, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.ReportAck:
        """A pseudonymiser operator's signed counts (never inputs) for the audit trail."""
        origin = await self._gate("ReportEvaluations", context)
        raw = _raw(request)
        try:
            denied = await self._recorded_denial("ReportEvaluations", origin, REPORT, raw)
            if denied is not None:
                raise denied
            counts = self._report_counts(origin, request)
        except (Refused, InvalidSignature) as exc:
            refusal = exc if isinstance(exc, Refused) else VerificationError(
                "report signature does not verify", refusal_code=broker_pb2.REFUSAL_CODE_BAD_SIGNATURE,
                field="signature")
            refused = await self._service.refuse_input(origin, REPORT, refusal, raw)
            return broker_pb2.ReportAck(stored=False, detail=refused.refusal.detail, refusal=refused.refusal)
        await self._service.store.store_evaluation_counts(str(origin.org_id), counts, now_ms())
        at = now_ms()
        leaves = []
        for c in counts.counts:  # one leaf per organisation counted, visible to it and to the operator
            meta: dict[str, object] = {
                "event": "pseudonymiser.counts", "operator": str(origin.org_id), "share": counts.share,
                "org": c.org_id, "domain": int(c.domain), "requests": c.requests, "evaluations": c.evaluations,
                "period_start_ms": counts.period_start_ms, "period_end_ms": counts.period_end_ms}
            counted = f"{c.org_kind}/{c.org_id}"  # the identity the operator saw evaluate
            leaves.append(Leaf(meta, (str(origin), counted), at))
        await self._service.committer.submit(AppendLeaves(tuple(leaves)))  # one commit for all
        log.info("report.stored", operator=str(origin), share=counts.share, organisations=len(counts.counts))
        return broker_pb2.ReportAck(stored=True)

    def _report_counts(self, origin: OrgIdentity,
                       request: broker_pb2.EvaluationReport) -> pseudonymiser_pb2.EvaluationCounts:
        wire.validate(request)
        signer, key = self._service.trust.verify_signer(request.signer_certificate)
        if signer != origin:
            raise VerificationError("report signer is not the calling operator", field="signer_certificate")
        key.verify(request.signature, REPORT_CONTEXT + request.body)
        return wire.parse_strict(pseudonymiser_pb2.EvaluationCounts, request.body)

    async def GetConsistency(
        self, request: broker_pb2.ConsistencyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.ConsistencyProof:
        """A proof that the log at ``to_size`` extends the log at ``from_size``, with the signed head."""
        origin = await self._gate("GetConsistency", context)
        await self._validated("GetConsistency", origin, request, context)
        audit = self._service.committer.audit
        head = await audit.head(request.to_size)
        if head is None or not 0 < request.from_size <= request.to_size:
            await self._end("GetConsistency", origin, context, grpc.StatusCode.INVALID_ARGUMENT,
                            f"no signed head of size {request.to_size} after {request.from_size}", "INVALID_FIELD")
        return broker_pb2.ConsistencyProof(head=head, proof=await audit.consistency(request.from_size,
                                                                                   request.to_size))

    async def GetInclusion(
        self, request: broker_pb2.InclusionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.InclusionProof:
        origin = await self._gate("GetInclusion", context)
        await self._validated("GetInclusion", origin, request, context)
        audit = self._service.committer.audit
        head = await audit.head(request.size)
        if head is None or request.index >= request.size:
            await self._end("GetInclusion", origin, context, grpc.StatusCode.INVALID_ARGUMENT,
                            f"no leaf {request.index} in a signed head of size {request.size}", "INVALID_FIELD")
        return broker_pb2.InclusionProof(head=head, proof=await audit.inclusion(request.index, request.size))

    async def GetHead(
        self, request: broker_pb2.GetHeadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.WitnessedHead:
        origin = await self._gate("GetHead", context)
        await self._validated("GetHead", origin, request, context)
        size = await self._service.store.latest_cosigned_size() if request.cosigned else None
        head = await self._service.committer.audit.head(size)
        if head is None:
            await self._end("GetHead", origin, context, grpc.StatusCode.UNAVAILABLE, "the log has no signed head yet",
                            "UNAVAILABLE")
        cosigs = [broker_pb2.Cosignature.FromString(c) for c in await self._service.store.cosignatures(head.size)]
        return broker_pb2.WitnessedHead(head=head, cosignatures=cosigs)

    async def PostCosignature(
        self, request: broker_pb2.Cosignature, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.CosignatureAck:
        """Keep a witness's cosignature of one of our heads: only a witness the bundle names, signed with the
        key the bundle names for it, and only of a head we signed. A refusal is a leaf; an accepted
        cosignature is kept with the heads (a leaf per cosignature would make a new head per cosignature)."""
        origin = await self._gate("PostCosignature", context)
        raw = _raw(request)
        try:
            denied = await self._recorded_denial("PostCosignature", origin, COSIGNATURE, raw)
            if denied is not None:
                raise denied
            wire.validate(request)
            witness, _at = verify_cosignature(request, self._service.bundle.witnesses)
            if witness != str(origin):
                raise VerificationError(f"the cosignature is {witness}'s, not the caller's ({origin})",
                                        field="witness")
            ours = await self._service.committer.audit.head(request.head.size)
            if ours is None or ours.SerializeToString() != request.head.SerializeToString():
                raise VerificationError(f"not a head this log signed (size {request.head.size})", field="head")
        except Refused as refusal:
            refused = await self._service.refuse_input(origin, COSIGNATURE, refusal, raw)
            return broker_pb2.CosignatureAck(stored=False, detail=refused.refusal.detail, refusal=refused.refusal)
        await self._service.store.store_cosignature(request.head.size, request.witness, request.SerializeToString())
        log.info("cosignature.stored", witness=witness, size=request.head.size)
        return broker_pb2.CosignatureAck(stored=True)

    async def GetBundle(
        self, request: broker_pb2.GetBundleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.BundleArchive:
        origin = await self._gate("GetBundle", context)
        await self._validated("GetBundle", origin, request, context)
        archive = await self._service.store.bundle_archive(request.digest.hex())
        if archive is None:
            await self._end("GetBundle", origin, context, grpc.StatusCode.NOT_FOUND,
                            f"this broker never enforced a bundle with digest {request.digest.hex()[:16]}…",
                            "UNKNOWN_BUNDLE")
        return broker_pb2.BundleArchive.FromString(archive)

    async def AuditLeaves(
        self, request: broker_pb2.AuditRange, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.AuditLeavesResponse:
        origin = await self._gate("AuditLeaves", context)
        await self._validated("AuditLeaves", origin, request, context)
        audit = self._service.committer.audit
        head = await audit.head()
        if head is None:
            return broker_pb2.AuditLeavesResponse()
        end = min(head.size, request.from_index + min(request.limit or access.MAX_AUDIT_LEAVES,
                                                      access.MAX_AUDIT_LEAVES))
        return broker_pb2.AuditLeavesResponse(leaf_hashes=await audit.leaf_hashes(request.from_index, end), head=head,
                                              next_index=end if end < head.size else 0)

    async def AuditEvents(
        self, request: broker_pb2.AuditRange, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.AuditEventsResponse:
        """The events the caller is party to, by its exact identity; every event for a data-protection officer
        of the enforced bundle (also by exact identity). Paged: at most ``MAX_AUDIT_EVENTS`` per call."""
        origin = await self._gate("AuditEvents", context)
        await self._validated("AuditEvents", origin, request, context)
        audit = self._service.committer.audit
        limit = min(request.limit or access.MAX_AUDIT_EVENTS, access.MAX_AUDIT_EVENTS)
        everything = self._service.bundle.is_officer(origin)
        rows = await audit.visible_events(None if everything else str(origin), request.from_index, limit)
        log.info("audit.read", org=str(origin), everything=everything, events=len(rows))
        return broker_pb2.AuditEventsResponse(
            events=[broker_pb2.AuditEvent(index=i, salt=salt, metadata=meta or b"", at_ms=at)
                    for i, salt, meta, at in rows],
            head=await audit.head(), next_index=rows[-1][0] + 1 if len(rows) == limit else 0)

    async def _read_acks(self, origin: OrgIdentity, context: grpc.aio.ServicerContext[Any, Any],
                         window: _Window) -> None:
        while True:
            up = await context.read()
            if up is grpc.aio.EOF:
                return
            try:
                wire.validate(up)
            except WireError as exc:
                log.warning("delivery.bad_ack", org=str(origin), reason=exc.reason, field=exc.field)
                continue
            which = up.WhichOneof("msg")
            acks = [up.ack] if which == "ack" else list(up.acks.acks) if which == "acks" else []
            if acks:
                await self._service.ack(origin, acks)
                window.acked([a.seq for a in acks])

    def _down(self, item: Queued, proof: broker_pb2.AuditProof | None) -> broker_pb2.SubscribeDown:
        """One item with the proof of the leaf that queued it (an envelope's decision, a notice's expiry or
        rejection)."""
        if item.item == "envelope":
            return broker_pb2.SubscribeDown(delivery=broker_pb2.Delivery(seq=item.seq, envelope=item.payload,
                                                                         audit=proof))
        notice = broker_pb2.DeliveryNotice.FromString(item.payload)
        notice.seq = item.seq
        if proof is not None:
            notice.audit.CopyFrom(proof)
        return broker_pb2.SubscribeDown(notice=notice)

    async def _deliver(
        self,
        org: str,
        context: grpc.aio.ServicerContext[Any, Any],
        superseded: asyncio.Event,
        reader: asyncio.Future[None],
        window: _Window,
    ) -> None:
        wake = self._service.notifier.event(org)
        last = 0
        metrics = self._service.metrics
        while not superseded.is_set() and not reader.done():
            wake.clear()
            window.freed.clear()
            room = window.room()
            batch = (await self._service.store.pending(org, last, min(DELIVERY_BATCH, room), self._service.now())
                     if room > 0 else [])
            if batch:
                # Revocation (and a bundle that drops the organisation) takes effect on open streams too:
                # re-check before every batch.
                await self._still_admitted(context)
            head = await self._service.committer.audit.head() if batch else None
            proofs = await self._service.audit_proofs([i.leaf_index for i in batch if i.leaf_index >= 0],
                                                      head) if head is not None else {}
            for item in batch:
                await context.write(self._down(item, proofs.get(item.leaf_index)))  # awaits HTTP/2 flow control too
                window.inflight.add(item.seq)
                metrics.deliveries.inc()
                if item.seq <= self._delivered.get(org, 0):
                    metrics.redeliveries.inc()
                self._delivered[org] = max(item.seq, self._delivered.get(org, 0))
                last = item.seq
            if batch:
                continue
            events = (wake, superseded, window.freed)
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(e.wait()) for e in events]
            try:
                await asyncio.wait([*waits, reader], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()


def digest_or_none(directory: Path) -> str:
    try:
        return digest_of(directory)
    except OSError:
        return ""


class BrokerServer:
    """A running broker: store, service and gRPC server."""

    def __init__(self, config: BrokerConfig, clock: Callable[[], int] = now_ms,
                 servicer: type[BrokerServicer] = BrokerServicer) -> None:
        """``servicer``: the gRPC face; tests give a subclass that lies as a compromised broker would."""
        self.config = config
        self._clock = clock
        self._servicer = servicer
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._store: BrokerStore | None = None
        self._committer: Committer | None = None
        self._retention: asyncio.Task[None] | None = None
        self._gauges: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._push: asyncio.Task[None] | None = None
        self.pusher: Pusher | None = None
        self.watch: InstanceWatch | None = None
        self._watching: asyncio.Task[None] | None = None
        self.readiness: Readiness | None = None
        self._probing: asyncio.Task[None] | None = None
        self.ready_port = 0
        self.metrics: Metrics | None = None
        self._registry = StreamRegistry()
        self.service: BrokerService | None = None
        self._health: health.aio.HealthServicer | None = None

    async def start(self) -> int:
        cfg = self.config
        cfg.database.parent.mkdir(parents=True, exist_ok=True)  # its state folder, on PostgreSQL too
        trust = TrustAnchor.load(cfg.tls.ca, cfg.crl, cfg.database.parent / "crl-number")
        self._store = await BrokerStore.for_engine(cfg.database, cfg.postgres_dsn, cfg.postgres_call_timeout_s)
        audit = AuditLog(self._store.db, load_signing_key(cfg.log_key), origin_for(bundle_name(cfg.bundle),
                                                                                   cfg.log_shard))
        await audit.load()
        self._retention = asyncio.create_task(self._retain_metadata(audit))
        self._committer = Committer(self._store, audit, self._bundle_digest)
        self._committer.start()
        bundle = await self._verified_bundle()
        if bundle is None:
            await self._committer.stop()
            await self._store.close()
            raise ConfigError(f"no valid signed policy bundle at {cfg.bundle}; the broker will not start without one")
        legacy = await self._store.resolve_legacy_viewers(
            {str(o.id): f"{o.kind.value}/{o.id}" for o in bundle.orgs.values()})
        if legacy:
            log.info("audit.legacy_viewers_resolved", rows=legacy)
        store = self._store
        if await store.has_unbound_queue_rows():
            bound, _head = await self._committer.submit(BindQueueLeaves(
                lambda sender, recipients: [v for v in map(bundle.identity_of, [sender, *recipients]) if v],
                now_ms()))
            log.info("audit.queue_leaves_bound", rows=bound)
        self.metrics = Metrics("broker")
        self.service = BrokerService(
            self._store, self._committer, bundle, trust, Notifier(), max_skew_ms=cfg.max_clock_skew_s * 1000,
            metrics=self.metrics, queue_limit=cfg.max_queue_per_recipient, clock=self._clock,
            share_limit=cfg.max_queue_per_sender, limits=cfg.limits,
        )
        if cfg.metrics_listen:
            log.info("metrics.serving", port=self.metrics.serve(cfg.metrics_listen))
        self._gauges = asyncio.create_task(self._update_gauges(self.metrics))
        self.readiness = Readiness(self._store, self.metrics, self._committer)
        self._probing = asyncio.create_task(self.readiness.run())
        if cfg.ready_listen:
            self.ready_port = self.readiness.serve_http(cfg.ready_listen)
            log.info("readiness.serving", port=self.ready_port)
        self._expiry = asyncio.create_task(self._expire())
        if self._store.db.engine != "sqlite":  # possibly one of several instances over this database
            self.watch = InstanceWatch(self._store, self.service.notifier, cfg.instance_name or instance_name(),
                                       cfg.instance_poll_ms / 1000, self.metrics)
            self._watching = asyncio.create_task(self.watch.run())
            log.info("broker.instance", name=self.watch.name, poll_ms=cfg.instance_poll_ms)
        if cfg.witness_push:
            service = self.service
            self.pusher = Pusher(audit, cfg.witness_push, lambda: service.bundle.witnesses,
                                 self._store.store_cosignature, cfg.witness_ca or cfg.tls.ca,
                                 may_push=self._pusher_lease(cfg.push_interval_s))
            self._push = asyncio.create_task(self.pusher.run(cfg.push_interval_s))
        server = grpc.aio.server(options=transport.server_options(cfg.min_ping_interval_s),
                                 interceptors=[transport.ErrorBoundary("broker")])
        servicer = self._servicer(self.service, self._registry)
        servicer.watch = self.watch
        broker_pb2_grpc.add_BrokerServicer_to_server(servicer, server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = (
            broker_pb2.DESCRIPTOR.services_by_name["Broker"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
        self.port = server.add_secure_port(cfg.listen, transport.server_credentials(cfg.tls))
        if self.port == 0:
            raise ConfigError(f"cannot bind {cfg.listen}")
        await server.start()
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        self.readiness.serving = True
        self._health = health_servicer
        self._server = server
        log.info("broker.started", port=self.port, bundle_digest=bundle.digest, bundle_version=bundle.version)
        if cfg.ready_file is not None:
            write_ready_file(cfg.ready_file, self.port)
        return self.port

    def _pusher_lease(self, interval_s: float) -> Callable[[], Awaitable[bool]] | None:
        """With several instances, one pushes at a time: the one holding the "pusher" lease, renewed every push
        and lost three intervals after its holder stops renewing it."""
        watch, store = self.watch, self._store
        if watch is None or store is None:
            return None
        ttl_ms = int(interval_s * 3000)
        return lambda: store.take_lease("pusher", watch.name, now_ms(), ttl_ms)

    async def _update_gauges(self, metrics: Metrics) -> None:
        """Queue depth and oldest undelivered age per recipient (collectors may not touch the database)."""
        assert self._store is not None
        seen: set[str] = set()
        while True:
            try:
                stats = await self._store.queue_stats()
            except Exception as exc:  # a database restart must not end the gauges (nor, at stop, the broker)
                log.warning("gauges.unavailable", error=type(exc).__name__)
                await asyncio.sleep(GAUGE_INTERVAL_S)
                continue
            now = now_ms()
            for recipient in seen - {r for r, _, _ in stats}:
                metrics.queue_depth.labels(recipient=recipient).set(0)
                metrics.oldest_age.labels(recipient=recipient).set(0)
            for recipient, depth, oldest in stats:
                metrics.queue_depth.labels(recipient=recipient).set(depth)
                metrics.oldest_age.labels(recipient=recipient).set(max(0, now - oldest) / 1000)
            seen = {r for r, _, _ in stats} | seen
            await asyncio.sleep(GAUGE_INTERVAL_S)

    async def _expire(self) -> None:
        """Expire deliveries past their rule's time-to-live; never let the task die."""
        assert self.service is not None
        while True:
            try:
                while await self.service.expire_due() >= EXPIRY_BATCH:
                    pass
            except Exception:
                log.exception("expiry.failed")
            await asyncio.sleep(self.config.expiry_interval_s)

    async def _retain_metadata(self, audit: AuditLog) -> None:
        """Daily: erase audit metadata past its retention (the tree keeps verifying)."""
        while True:
            cutoff = now_ms() - self.config.audit_metadata_retention_days * 86_400_000
            try:
                erased = await audit.erase_metadata_before(cutoff)
            except Exception:  # tried again at the next round; the task never dies
                log.exception("audit.retention_failed")
                await asyncio.sleep(60)
                continue
            if erased:
                log.info("audit.metadata_erased", events=erased,
                         retention_days=self.config.audit_metadata_retention_days)
            await asyncio.sleep(86_400)

    def _bundle_digest(self) -> str:
        return self.service.bundle.digest if self.service is not None else ""

    async def _record_load(self, now: int, name: str, version: int, digest: str, outcome: LoadOutcome,
                           reason: str) -> None:
        assert self._store is not None and self._committer is not None
        await self._committer.submit(LoadPolicy(now, name, version, digest, outcome, reason))

    async def _verified_bundle(self) -> Bundle | None:
        """Verify the configured bundle; record (as a log leaf too) and log the outcome. None when refused."""
        assert self._store is not None
        cfg, now = self.config, now_ms()
        try:
            bundle = verify_bundle(cfg.bundle, load_roots(cfg.roots))
        except Exception as exc:  # any reason at all (a malformed signatures.json too) is a recorded refusal
            reason = exc.message if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            await self._record_load(now, cfg.bundle.name, 0, digest_or_none(cfg.bundle), LoadOutcome.REFUSED,
                                    reason)
            log.error("policy.refused", bundle=str(cfg.bundle), reason=reason)
            return None
        floor = await self._store.enforced_policy_version()
        if bundle.version < floor:
            reason = f"version {bundle.version} is lower than version {floor} enforced before"
            await self._record_load(now, bundle.name, bundle.version, bundle.digest, LoadOutcome.REFUSED, reason)
            log.error("policy.refused", bundle=bundle.name, version=bundle.version, reason=reason)
            return None
        await self._record_load(now, bundle.name, bundle.version, bundle.digest, LoadOutcome.ENFORCED, "")
        await self._store.keep_bundle(bundle.digest, archive_of(cfg.bundle).SerializeToString())
        log.info("policy.enforced", bundle=bundle.name, version=bundle.version, digest=bundle.digest)
        return bundle

    async def reload_policy(self) -> bool:
        """Re-read the bundle (SIGHUP). A refused bundle leaves the last good one enforced."""
        bundle = await self._verified_bundle()
        if bundle is None or self.service is None:
            return False
        self.service.bundle = bundle
        return True

    async def stop(self, grace: float = 5.0) -> None:
        """Drain: stop accepting, let in-flight calls finish, commit what was decided, close.

        Open streams end first (what they delivered unacknowledged is redelivered on the
        next stream); Send calls in flight get ``grace`` seconds and their commits are flushed.
        """
        log.info("broker.draining", grace_s=grace)
        if self.readiness is not None:
            self.readiness.serving = False  # the load balancer stops sending here first
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        self._registry.close_all()
        if self._server is not None:
            await self._server.stop(grace)
        for task in (self._retention, self._gauges, self._expiry, self._push, self._watching, self._probing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.readiness is not None:
            self.readiness.close()
        if self.metrics is not None:
            self.metrics.close()
        if self._committer is not None:
            await self._committer.stop()
        if self._store is not None:
            await self._store.close()
        log.info("broker.stopped")


async def serve(config: BrokerConfig) -> None:
    """Run until SIGINT or SIGTERM."""
    server = BrokerServer(config)
    await server.start()
    await until_stopped(on_reload=server.reload_policy)
    await server.stop()
