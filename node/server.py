"""A running node: store, broker connection, outbox worker, delivery stream, local API."""

from __future__ import annotations

import asyncio
import contextlib

from olievlek import logs
from olievlek.audit.checkpoint import origin_for
from olievlek.audit.cosign import effective_witnesses
from olievlek.clock import now_ms
from olievlek.config import write_ready_file
from olievlek.envelope import Signer
from olievlek.errors import ConfigError
from olievlek.fieldcrypt import KeyEncryptionKey
from olievlek.identity import OrgKind
from olievlek.kinds import MessageKind
from olievlek.lifecycle import until_stopped
from olievlek.metrics import Metrics
from olievlek.policy import rollback
from olievlek.policy.signing import load_public_key, load_roots, verify_bundle
from olievlek.trust import TrustAnchor

from .access import parse_user
from .audit_check import AuditChecker
from .broker_client import BrokerClient
from .bundles import BundleKeeper
from .casefile import CaseFile
from .config import NodeConfig
from .directory import DirectoryHolder
from .disclosure import Disclosures
from .handlers import NodeHandlers
from .inbox import Inbox
from .intake import Intake
from .liaison import Liaison
from .local_api import LocalApi
from .log_watch import LogWatch
from .monitoring import Monitoring, cooperation
from .outbox import OutboxSender
from .pseudonym_client import PseudonymClient
from .report_gate import ReportGate
from .retention import Retention
from .session import BrokerSession
from .store import NodeStore
from .witness_watch import Bounds, WitnessWatch

log = logs.get("node")

GAUGE_INTERVAL_S = 2.0
ACCEPTED_VERSIONS = "accepted_versions"  # node_meta: the highest bundle and root versions (rollback.Accepted)


class NodeServer:
    """Everything a node runs, started and stopped together."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._tasks: list[asyncio.Task[None]] = []
        self._store: NodeStore | None = None
        self._client: BrokerClient | None = None
        self._local: LocalApi | None = None
        self._pseudonymiser: PseudonymClient | None = None
        self.session: BrokerSession | None = None
        self.audit: AuditChecker | None = None
        self.log_watch: LogWatch | None = None
        self.witness_watch: WitnessWatch | None = None
        self.outbox: OutboxSender | None = None
        self.casefile: CaseFile | None = None
        self.metrics = Metrics("node")

    async def start(self) -> None:
        cfg = self.config
        trust = TrustAnchor.load(cfg.tls.ca, cfg.crl, cfg.database.parent / "crl-number")
        root = load_roots(cfg.roots)
        bundle = verify_bundle(cfg.bundle, root)
        signer = Signer.from_pem(cfg.sign_key.read_bytes(), cfg.sign_cert.read_bytes())
        kek = KeyEncryptionKey.load(cfg.kek_file, cfg.kek_env)
        self._store = await NodeStore.open(cfg.database)
        try:
            floor = rollback.accept(rollback.Accepted.decode(await self._store.meta(ACCEPTED_VERSIONS)),
                                    bundle.version, root.version, bundle_name=bundle.name)
        except rollback.RollbackError:
            await self._store.close()
            self._store = None
            raise
        await self._store.put_meta(ACCEPTED_VERSIONS, floor.encode())
        casefile = CaseFile(self._store, kek)
        self.casefile = casefile
        try:
            await casefile.check_key()
        except ConfigError:
            await self._store.close()
            self._store = None
            raise
        for uid, role, agency in cfg.users:  # provisioned from the configuration
            user = parse_user(uid, role, agency)
            await self._store.set_user(user.uid, user.role, user.agency, True, now_ms())
        pseudonymiser = PseudonymClient(cfg.pseudonymisers, cfg.tls, trust, self._store, bundle.pseudonymisation)
        self._pseudonymiser = pseudonymiser
        self._client = BrokerClient(cfg.broker, cfg.tls, cfg.keepalive_s, cfg.keepalive_timeout_s)
        witnesses, quorum, diagnostic = effective_witnesses(bundle.witnesses, cfg.witnesses, cfg.witness_quorum)
        if diagnostic:
            log.warning("audit.witnesses", diagnostic=diagnostic)
        origin = origin_for(bundle.name, cfg.log_shard)
        self.audit = AuditChecker(self._store, self._client, load_public_key(cfg.log_public_key), witnesses, quorum,
                                  origin, bundle.digest, self.metrics)
        await pseudonymiser.check_pinned(self.audit.alarm)
        bundles = BundleKeeper(cfg.database.parent / "bundles", cfg.roots, bundle, self._client, floor.root)
        bundles.keep_current()
        self.log_watch = LogWatch(cfg.org_id, self._store, self._client, self.audit, origin, self.metrics)
        self.witness_watch = WitnessWatch(self._store, self.audit, self.metrics,
                                          Bounds(cfg.witness_lag_s, cfg.fork_after_s, cfg.fork_after_entries,
                                                 cfg.confirm_within_s))
        outbox = OutboxSender(self._store, self._client, signer, self.audit, self.metrics)
        self.outbox = outbox
        reports = ReportGate(self._store, bundle) if cfg.kind == OrgKind.MONITOR else None
        self.session = BrokerSession(self._client, Inbox(cfg.org_id, self._store, trust, self.audit,
                                                         kek.pseudonym_tag, bundles, self.metrics, reports))
        bases = dict(cfg.retention_days)
        directory = DirectoryHolder(cfg.org_id, cfg.kind, self._store, bundle, signer, outbox, self._client)
        expiry_s = cfg.disclosure_expiry_s or bundle.directory_policy.disclosure_expiry_hours * 3600
        disclosures = Disclosures(cfg.org_id, self._store, bundle, outbox, int(expiry_s * 1000), directory)
        handlers = NodeHandlers(cfg.org_id, cfg.kind, self._store, bundle, signer, pseudonymiser, outbox, casefile,
                                directory, disclosures, frozenset(bases), self.witness_watch)
        retention = Retention(cfg.org_id, self._store, bundle, outbox, bases, directory, disclosures)
        await directory.refresh_all()
        queries = any(
            r.allows and MessageKind.QUERY_HIT in r.kinds and cfg.org_id in r.senders for r in bundle.rules.values())
        liaison = Liaison(cfg.org_id, cfg.kind, self._store, bundle, signer, pseudonymiser, self._client, self.audit,
                          outbox, frozenset(bases)) if queries else None
        if cfg.metrics_listen:
            log.info("metrics.serving", port=self.metrics.serve(cfg.metrics_listen))
        intake = Intake(cfg.org_id, self._store, bundle, outbox, casefile, directory)
        monitors = [o.id for o in bundle.orgs.values() if o.kind == OrgKind.MONITOR
                    and bundle.rules_for(MessageKind.REPORT_AGGREGATE, cfg.org_id, o.kind)]
        rules = bundle.rules_for(MessageKind.REPORT_AGGREGATE, cfg.org_id, OrgKind.MONITOR)
        regions = {str(k): v for k, v in bundle.regions.items()} | {g: g for g in set(bundle.regions.values())}
        monitoring = Monitoring(cfg.org_id, self._store, outbox, monitors[0] if monitors else "",
                                rules[0].id if rules else "", regions, cooperation(bundle, cfg.org_id),
                                {g: str(a) for g, a in set(bundle.combined.values())})
        self._local = LocalApi(handlers, retention, intake, cfg.socket, cfg.administrators, cfg.socket_group,
                               liaison, monitoring, cfg.language, cfg.single_administrator, cfg.role_request_ttl_s)
        await self._local.start()
        self._tasks = [asyncio.create_task(outbox.run()), asyncio.create_task(self.session.run()),
                       asyncio.create_task(self._update_gauges()),
                       asyncio.create_task(self.log_watch.run(cfg.log_watch_interval_s)),
                       asyncio.create_task(self._housekeeping(disclosures, liaison, min(60.0, expiry_s)))]
        if quorum > 0:
            self._tasks.append(asyncio.create_task(self.witness_watch.run(cfg.witness_check_interval_s)))
        else:
            log.warning("audit.final_at_once", reason="no witness quorum: outcomes are final without witnesses")
        log.info("node.started", org=cfg.org_id, broker=list(cfg.broker), bundle_digest=bundle.digest)
        if cfg.ready_file is not None:
            write_ready_file(cfg.ready_file, 0)

    async def _update_gauges(self) -> None:
        """Outbox depth and oldest unanswered age (collectors may not touch the database)."""
        assert self._store is not None
        while True:
            pending, oldest = await self._store.outbox_stats()
            self.metrics.outbox_pending.set(pending)
            self.metrics.outbox_oldest.set(max(0, now_ms() - oldest) / 1000 if oldest else 0)
            await asyncio.sleep(GAUGE_INTERVAL_S)

    @staticmethod
    async def _housekeeping(disclosures: Disclosures, liaison: Liaison | None, interval_s: float) -> None:
        """Deny undecided disclosure requests past their expiry (also done before every listing); drop
        a querying organisation's hits past the rule's retention."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await disclosures.expire_due()
                if liaison is not None:
                    await liaison.forget_old_hits()
            except Exception:  # never let the sweep die; the next round retries
                log.exception("housekeeping.failed")

    async def stop(self) -> None:
        """Drain (SIGTERM): stop taking local requests, finish the send and the ack batch in
        flight, flush the store's writes, close."""
        grace = self.config.drain_grace_s
        log.info("node.draining", grace_s=grace)
        if self._local is not None:
            await self._local.stop()
        if self.outbox is not None:
            await self.outbox.stop(grace)
        if self.session is not None:
            await self.session.stop(grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.close()
        if self._pseudonymiser is not None:
            await self._pseudonymiser.close()
        self.metrics.close()
        if self._store is not None:
            await self._store.close()
        log.info("node.stopped", org=self.config.org_id)


async def serve(config: NodeConfig) -> None:
    """Run until SIGINT or SIGTERM."""
    node = NodeServer(config)
    await node.start()
    await until_stopped()
    await node.stop()
