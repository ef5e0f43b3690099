"""A witness of the federation's audit log, speaking C2SP ``tlog-witness`` over HTTPS.

The log's pusher (at the broker) sends the witness its latest checkpoint with a consistency proof from the
size the witness cosigned last (``POST <prefix>/add-checkpoint``); the witness checks the log's signature
and the proof, keeps the new checkpoint and answers with its cosignature/v1. A checkpoint that does not
extend the last one - a fork - is refused and raised as an alarm (``witness.alarm``), never cosigned. Any
organisation can run one; so can an existing witness (transparency-dev's witness, OmniWitness, an
ArmoredWitness) that knows the log's origin and key: ``docs/audit-log.md`` says how to add one.

For one release the witness can still dial out instead (``broker:`` in its configuration): it then reads
the broker's latest head and a consistency proof over gRPC, runs the same checks, and posts its
cosignature with ``PostCosignature``. That direction is removed in the release after this one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from olievlek import logs, transport
from olievlek.audit.checkpoint import origin_for
from olievlek.config import load_yaml, need, path_setting, reading, write_ready_file
from olievlek.errors import ConfigError, TransportError
from olievlek.lifecycle import until_stopped
from olievlek.policy.signing import load_public_key, load_signing_key
from olievlek.storage.sqlite import Database
from olievlek.v1 import broker_pb2, broker_pb2_grpc

from .http import WitnessHttpServer
from .protocol import WitnessCore
from .storage.store import MIGRATIONS, WitnessStore

log = logs.get("witness")


@dataclass(frozen=True, slots=True)
class WitnessConfig:
    org_id: str  # its identity is witness/<org_id>, as the bundle names it
    key_name: str  # its C2SP key name, e.g. witness.vvsg.be/olievlek
    sign_key: Path  # its Ed25519 cosigning key (PEM), whose public key the bundle names
    logs: tuple[tuple[str, Path], ...]  # (origin, the log's public key file): the logs it witnesses
    database: Path
    listen: str = "127.0.0.1:0"  # the HTTPS tlog-witness endpoint
    server_cert: Path | None = None
    server_key: Path | None = None
    prefix: str = ""  # the submission prefix: POST <prefix>/add-checkpoint
    ready_file: Path | None = None
    # The previous direction, for one release: poll the broker (a client certificate from the federation CA).
    broker: str = ""
    tls: transport.TlsFiles | None = None
    poll_interval_s: float = 5.0

    @classmethod
    def load(cls, path: Path) -> WitnessConfig:
        with reading(path):
            doc = load_yaml(path)
            logs_known = tuple((str(entry["origin"]), path_setting(entry, "key", path))
                               for entry in doc.get("logs", []))
            if not logs_known:
                raise ConfigError(f"{path}: logs must name at least one log (origin and key)")
            return cls(
                org_id=str(need(doc, "org_id", path)), key_name=str(need(doc, "key_name", path)),
                sign_key=path_setting(doc, "sign_key", path), logs=logs_known,
                database=path_setting(doc, "database", path), listen=str(doc.get("listen", "127.0.0.1:0")),
                server_cert=path_setting(doc, "server_cert", path) if "server_cert" in doc else None,
                server_key=path_setting(doc, "server_key", path) if "server_key" in doc else None,
                prefix=str(doc.get("prefix", "")),
                ready_file=path_setting(doc, "ready_file", path) if "ready_file" in doc else None,
                broker=str(doc.get("broker", "")),
                tls=transport.TlsFiles(path_setting(doc, "ca", path), path_setting(doc, "tls_cert", path),
                                       path_setting(doc, "tls_key", path)) if doc.get("broker") else None,
                poll_interval_s=float(doc.get("poll_interval_s", 5)))


@dataclass
class Witness:
    """The witness service: its store, the protocol core, the HTTPS endpoint and (for one release) the poller."""

    config: WitnessConfig
    db: Database
    core: WitnessCore
    port: int = 0
    _http: WitnessHttpServer | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def open(cls, config: WitnessConfig) -> Witness:
        db = await Database.open(config.database, MIGRATIONS)
        known = {origin: load_public_key(key) for origin, key in config.logs}
        return cls(config, db, WitnessCore(WitnessStore(db), known, config.key_name, load_signing_key(config.sign_key)))

    async def start(self) -> int:
        cfg = self.config
        if cfg.server_cert is not None and cfg.server_key is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            tls.load_cert_chain(cfg.server_cert, cfg.server_key)
            host, _, port = cfg.listen.rpartition(":")
            self._http = WitnessHttpServer(self.core.add_checkpoint, cfg.prefix)
            self.port = await self._http.start(host or "127.0.0.1", int(port), tls)
            log.info("witness.serving", port=self.port, key_name=cfg.key_name, vkey=self.core.verifier.vkey)
        if cfg.broker:
            self._tasks.append(asyncio.create_task(self._poll_loop()))
        if cfg.ready_file is not None:
            write_ready_file(cfg.ready_file, self.port)
        return self.port

    async def poll_once(self) -> int:
        """The previous direction: read the broker's latest head, and cosign it through the same checks.
        Returns the HTTP-equivalent status the core gave."""
        assert self.config.tls is not None
        async with transport.secure_channel(self.config.broker, self.config.tls) as channel:
            stub = broker_pb2_grpc.BrokerStub(channel)
            try:
                head = (await stub.GetHead(broker_pb2.GetHeadRequest(), timeout=10)).head
                origin = next(iter(self.core._logs))  # a poller witnesses the one log it polls
                latest = await self.core.latest(origin)
                old = latest[0] if latest else 0
                proof: list[bytes] = []
                if 0 < old < head.size:
                    proof = list((await stub.GetConsistency(broker_pb2.ConsistencyRequest(
                        from_size=old, to_size=head.size), timeout=10)).proof)
                body = f"old {old}\n".encode() + b"".join(base64.b64encode(p) + b"\n" for p in proof) + b"\n" + \
                    head.checkpoint
                answer = await self.core.add_checkpoint(body)
                if answer.status == 200:
                    ack = await stub.PostCosignature(broker_pb2.Cosignature(
                        witness=self.config.org_id, head=head, line=answer.body), timeout=10)
                    if not ack.stored:
                        log.error("witness.cosignature_refused", size=head.size, reason=ack.detail)
                return answer.status
            except grpc.aio.AioRpcError as exc:
                raise TransportError(f"broker {self.config.broker}: {exc.code().name}: {exc.details()}") from exc

    async def _poll_loop(self) -> None:
        while True:
            with contextlib.suppress(TransportError):  # logged by the core or the channel; keep watching
                await self.poll_once()
            await asyncio.sleep(self.config.poll_interval_s)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.stop()
        await self.db.close()


def default_logs(bundle_name: str, log_key: Path) -> tuple[tuple[str, Path], ...]:
    """The one log of a federation, shard 1."""
    return ((origin_for(bundle_name), log_key),)


async def serve(config: WitnessConfig) -> None:
    witness = await Witness.open(config)
    try:
        await witness.start()
        await until_stopped()
    finally:
        await witness.close()


__all__ = ["Witness", "WitnessConfig", "default_logs", "serve"]
