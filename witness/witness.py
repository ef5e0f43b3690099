"""A witness: dials out like a node, polls the broker's signed tree heads, and cosigns a head only
after checking it is consistent with the last head it cosigned. Any organisation can run one.

A head that is not signed by the log key, or that forks from what this witness cosigned
before, is refused and raised as an alarm (``witness.alarm`` in the log); the witness
never cosigns it. Its state is one row: the last head it cosigned.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import grpc

from olievlek import logs, transport
from olievlek.audit.cosign import cosign
from olievlek.audit.receipts import check_extends, verify_head
from olievlek.config import load_yaml, need, path_settings, reading, tls_setting
from olievlek.envelope import Signer
from olievlek.errors import TransportError, VerificationError
from olievlek.lifecycle import until_stopped
from olievlek.policy.signing import load_public_key
from olievlek.store import Database
from olievlek.v1 import broker_pb2, broker_pb2_grpc

log = logs.get("witness")

SCHEMA = ["CREATE TABLE IF NOT EXISTS cosigned (id INTEGER PRIMARY KEY CHECK (id = 1), head BLOB NOT NULL)"]


@dataclass(frozen=True, slots=True)
class WitnessConfig:
    org_id: str
    broker: str
    tls: transport.TlsFiles
    sign_cert: Path
    sign_key: Path
    log_public_key: Path
    database: Path
    poll_interval_s: float = 5.0

    @classmethod
    def load(cls, path: Path) -> WitnessConfig:
        with reading(path):
            doc = load_yaml(path)
            return cls(org_id=str(need(doc, "org_id", path)), broker=str(need(doc, "broker", path)),
                       tls=tls_setting(doc, path),
                       **path_settings(doc, path, "sign_cert", "sign_key", "log_public_key", "database"),
                       poll_interval_s=float(doc.get("poll_interval_s", 5)))


class Witness:
    def __init__(self, config: WitnessConfig, db: Database) -> None:
        self.config = config
        self._db = db
        self._signer = Signer.from_pem(config.sign_key.read_bytes(), config.sign_cert.read_bytes())
        self._log_key = load_public_key(config.log_public_key)
        self._channel = transport.secure_channel(config.broker, config.tls)
        self._stub = broker_pb2_grpc.BrokerStub(self._channel)

    @classmethod
    async def open(cls, config: WitnessConfig) -> Witness:
        return cls(config, await Database.open(config.database, SCHEMA))

    async def _last(self) -> broker_pb2.TreeHead | None:
        row = await self._db.fetchone("SELECT head FROM cosigned WHERE id = 1")
        return broker_pb2.TreeHead.FromString(bytes(row[0])) if row else None

    async def poll_once(self) -> broker_pb2.TreeHead | None:
        """Check the broker's latest head; cosign and post it when consistent. Returns what was cosigned.

        Raises:
            VerificationError: the head is unsigned or forks from what this witness cosigned (an alarm).
            TransportError: the broker is unreachable.
        """
        try:
            current: broker_pb2.TreeHead = (await self._stub.GetHead(broker_pb2.GetHeadRequest(), timeout=10)).head
            verify_head(current, self._log_key)
            last = await self._last()
            if last is not None and last.SerializeToString() != current.SerializeToString():
                await self._check_consistent(last, current)
        except grpc.aio.AioRpcError as exc:
            raise TransportError(f"broker {self.config.broker}: {exc.code().name}: {exc.details()}") from exc
        except VerificationError as exc:
            log.error("witness.alarm", reason=exc.message, size=current.size if "current" in locals() else 0)
            raise
        if last is not None and last.SerializeToString() == current.SerializeToString():
            return current  # already cosigned and posted
        if last is None or current.size >= last.size:
            async with self._db.transaction() as tx:
                await tx.execute("INSERT OR REPLACE INTO cosigned (id, head) VALUES (1, ?)",
                                 (current.SerializeToString(),))
        c = cosign(current, self.config.org_id, self._signer.key, self._signer.cert_der)
        ack = await self._stub.PostCosignature(c, timeout=10)
        if not ack.stored:
            log.error("witness.cosignature_refused", size=current.size, reason=ack.detail)
        log.info("witness.cosigned", size=current.size, stored=ack.stored)
        return current

    async def _check_consistent(self, last: broker_pb2.TreeHead, current: broker_pb2.TreeHead) -> None:
        if current.size == last.size:
            raise VerificationError(f"two different signed heads of size {current.size}: the log forked",
                                    field="audit")
        old, new = (last, current) if current.size > last.size else (current, last)
        proof = await self._stub.GetConsistency(broker_pb2.ConsistencyRequest(from_size=old.size, to_size=new.size),
                                                timeout=10)
        verify_head(proof.head, self._log_key)
        if proof.head.root != new.root:
            raise VerificationError(f"the broker's head of size {new.size} is not the one seen", field="audit")
        check_extends(old, new, list(proof.proof))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TransportError, VerificationError):  # logged; keep watching
                await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.poll_interval_s)

    async def close(self) -> None:
        await self._channel.close()
        await self._db.close()


async def serve(config: WitnessConfig) -> None:
    witness = await Witness.open(config)
    stop = asyncio.Event()
    watching = asyncio.create_task(witness.run(stop))
    try:
        await until_stopped()
        stop.set()
        await watching
    finally:
        await witness.close()


__all__ = ["Witness", "WitnessConfig", "serve"]
