"""An operator's gRPC server (mTLS) and its periodic signed count report to the broker."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc

from olievlek import logs, transport, wire
from olievlek.clock import now_ms
from olievlek.config import write_ready_file
from olievlek.envelope import Signer
from olievlek.errors import WireError
from olievlek.lifecycle import until_stopped
from olievlek.policy import rollback
from olievlek.policy.signing import load_roots, verify_bundle
from olievlek.pseudonymiser_report import REPORT_CONTEXT
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2, broker_pb2_grpc, pseudonymiser_pb2, pseudonymiser_pb2_grpc

from .config import PseudonymiserConfig
from .service import PseudonymiserService
from .storage.store import PseudonymiserStore

log = logs.get("pseudonymiser")


class PseudonymiserServicer(pseudonymiser_pb2_grpc.PseudonymiserServicer):
    def __init__(self, service: PseudonymiserService, trust: TrustAnchor) -> None:
        self._service = service
        self._trust = trust

    async def Evaluate(
        self, request: pseudonymiser_pb2.EvaluateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pseudonymiser_pb2.EvaluateResponse:
        origin = await transport.authenticate(context, self._trust)
        try:
            wire.validate(request)
        except WireError as exc:
            return pseudonymiser_pb2.EvaluateResponse(refused=pseudonymiser_pb2.EvaluateRefused(
                code=pseudonymiser_pb2.EVALUATE_REFUSAL_MALFORMED, detail=exc.message))
        return await self._service.evaluate(origin, request)


class PseudonymiserServer:
    def __init__(self, config: PseudonymiserConfig) -> None:
        self.config = config
        self.port = 0
        self.service: PseudonymiserService | None = None
        self._server: grpc.aio.Server | None = None
        self._store: PseudonymiserStore | None = None
        self._reporter: asyncio.Task[None] | None = None

    async def start(self) -> int:
        cfg = self.config
        trust = TrustAnchor.load(cfg.server_tls.ca, cfg.crl, cfg.database.parent / "crl-number")
        root = load_roots(cfg.roots)
        bundle = verify_bundle(cfg.bundle, root)
        signer = Signer.from_pem(cfg.sign_key.read_bytes(), cfg.sign_cert.read_bytes())
        self._store = await PseudonymiserStore.open(cfg.database)
        try:
            floor = rollback.accept(rollback.Accepted(*await self._store.accepted_versions()), bundle.version,
                                    root.version, bundle_name=bundle.name)
        except rollback.RollbackError:
            await self._store.close()
            self._store = None
            raise
        await self._store.keep_accepted_versions(floor.bundle, floor.root)
        self.service = PseudonymiserService(cfg.share, self._store, bundle, signer)
        server = grpc.aio.server(options=transport.SERVER_OPTIONS,
                                 interceptors=[transport.ErrorBoundary("pseudonymiser")])
        pseudonymiser_pb2_grpc.add_PseudonymiserServicer_to_server(PseudonymiserServicer(self.service, trust), server)
        self.port = server.add_secure_port(cfg.listen, transport.server_credentials(cfg.server_tls))
        await server.start()
        self._server = server
        if cfg.broker:
            self._reporter = asyncio.create_task(self._report_loop())
        log.info("pseudonymiser.started", share=cfg.share, port=self.port, bundle_digest=bundle.digest)
        if cfg.ready_file is not None:
            write_ready_file(cfg.ready_file, self.port)
        return self.port

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.report_interval_s)
            try:
                await self.push_report()
            except Exception as exc:  # a failed report is retried next period; counts stay unreported
                log.warning("report.failed", error=str(exc))

    async def push_report(self) -> bool:
        """Send the signed counts since the last report to the broker; True when stored."""
        assert self._store is not None and self.service is not None and self.config.broker
        since, rows = await self._store.unreported()
        until = now_ms()
        counts = pseudonymiser_pb2.EvaluationCounts(share=self.config.share, period_start_ms=since,
                                                    period_end_ms=until)
        for org, kind, domain, requests, evaluations in rows:
            counts.counts.add(org_id=org, org_kind=kind, domain=domain, requests=requests,
                              evaluations=evaluations)
        body = wire.encode(counts)
        signer = self.service.signer
        report = broker_pb2.EvaluationReport(body=body, signature=signer.key.sign(REPORT_CONTEXT + body),
                                             signer_certificate=signer.cert_der)
        ack = await self._report_to_an_instance(report)
        if ack.stored:
            await self._store.mark_reported(rows, until)
        log.info("report.sent", stored=ack.stored, organisations=len(rows))
        return bool(ack.stored)

    async def _report_to_an_instance(self, report: broker_pb2.EvaluationReport) -> broker_pb2.ReportAck:
        """The report to the first broker instance that answers (an unreachable one: the next)."""
        for i, target in enumerate(self.config.broker):
            try:
                async with transport.secure_channel(target, self.config.client_tls) as channel:
                    ack: broker_pb2.ReportAck = await broker_pb2_grpc.BrokerStub(channel).ReportEvaluations(
                        report, timeout=10)
                    return ack
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or i == len(self.config.broker) - 1:
                    raise
                log.warning("report.instance_unavailable", broker=target)
        raise AssertionError("no broker configured")  # push_report runs only with one

    async def stop(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporter
        if self._server is not None:
            await self._server.stop(1)
        if self._store is not None:
            await self._store.close()


async def serve(config: PseudonymiserConfig) -> None:
    server = PseudonymiserServer(config)
    await server.start()
    await until_stopped()
    await server.stop()
