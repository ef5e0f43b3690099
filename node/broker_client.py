"""The node's connection to the broker: one mTLS channel, dialled out, to one of the broker's instances.

This is where grpc errors become ``TransportError`` for the node's logic. A call that finds its instance
unreachable (UNAVAILABLE) or without an answer in time (DEADLINE_EXCEEDED) makes the next configured instance
current; the callers' jittered backoff spaces
the attempts. Every instance serves the same log: receipts and proofs verify the same whichever answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import grpc

from olievlek import logs, transport
from olievlek.errors import ConfigError, TransportError
from olievlek.v1 import broker_pb2, broker_pb2_grpc

log = logs.get("node.broker_client")
RETIRED_FOR_S = 120.0
_MOVE_ON = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class BrokerClient:
    """Send envelopes and open the delivery stream."""

    def __init__(self, targets: str | Sequence[str], tls: transport.TlsFiles,
                 keepalive_s: float = transport.KEEPALIVE_S,
                 keepalive_timeout_s: float = transport.KEEPALIVE_TIMEOUT_S) -> None:
        self.targets = (targets,) if isinstance(targets, str) else tuple(targets)
        if not self.targets:
            raise ConfigError("no broker address")
        self._tls, self._keepalive = tls, (keepalive_s, keepalive_timeout_s)
        # Channels of instances left behind, with when: closed only once no call can still be running on them
        # (closing a channel cancels its calls, and a cancelled await would end the task that made it).
        self._retired: list[tuple[float, grpc.aio.Channel]] = []
        self.generation = 0  # counts switches between instances
        self._open(0)

    @property
    def target(self) -> str:
        return self.targets[self._at]

    def _open(self, at: int) -> None:
        self._at = at
        self._channel = transport.secure_channel(self.targets[at], self._tls, *self._keepalive)
        self._stub = broker_pb2_grpc.BrokerStub(self._channel)

    def failed(self, code: grpc.StatusCode, generation: int) -> None:
        """A call made in ``generation`` failed with ``code``: an unreachable instance - or one that did not answer
        in time (cut off from its database, say) - makes the next one current (once per generation, however many
        calls failed on it at once)."""
        if code not in _MOVE_ON or len(self.targets) == 1 or generation != self.generation:
            return
        was = self.target
        self._retired.append((time.monotonic(), self._channel))
        self.generation += 1
        self._open((self._at + 1) % len(self.targets))
        log.warning("broker.next_instance", unreachable=was, now=self.target)
        self._reap(time.monotonic() - RETIRED_FOR_S)

    def _reap(self, before: float) -> None:
        """Close the channels retired before ``before`` (every unary call has a deadline well under
        ``RETIRED_FOR_S``; the delivery stream moves to the current instance within a second)."""
        for retired in [r for r in self._retired if r[0] < before]:
            self._retired.remove(retired)
            asyncio.ensure_future(retired[1].close())  # noqa: RUF006 - closing an unused channel, nothing to await

    async def send(self, envelope: bytes, timeout: float = 10.0) -> broker_pb2.SendResponse:
        """Submit one envelope.

        Raises:
            TransportError: the broker could not be reached or refused the connection.
        """
        response: broker_pb2.SendResponse = await self._unary("Send", broker_pb2.SendRequest(envelope=envelope),
                                                              timeout)
        return response

    async def send_batch(self, envelopes: list[bytes], timeout: float = 15.0) -> list[broker_pb2.SendResponse]:
        """Submit envelopes in one call; one answer each, in order.

        Raises:
            TransportError: the broker could not be reached, or the deadline passed.
        """
        response: broker_pb2.SendBatchResponse = await self._unary(
            "SendBatch", broker_pb2.SendBatchRequest(envelopes=envelopes), timeout)
        return list(response.responses)

    async def _unary(self, method: str, request: Any, timeout: float = 30.0) -> Any:
        """Call a unary RPC; the one place where grpc errors become TransportError."""
        generation = self.generation
        try:
            return await getattr(self._stub, method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            self.failed(exc.code(), generation)
            code = transport.refusal_code_of(exc)
            raise TransportError(f"broker {self.target}: {exc.code().name}{f' [{code}]' if code else ''}: "
                                 f"{exc.details()}", retry_after_s=transport.retry_after_of(exc),
                                 refusal_code=code or "") from exc

    async def consistency(self, from_size: int, to_size: int) -> broker_pb2.ConsistencyProof:
        proof: broker_pb2.ConsistencyProof = await self._unary(
            "GetConsistency", broker_pb2.ConsistencyRequest(from_size=from_size, to_size=to_size))
        return proof

    async def inclusion(self, index: int, size: int) -> broker_pb2.InclusionProof:
        proof: broker_pb2.InclusionProof = await self._unary(
            "GetInclusion", broker_pb2.InclusionRequest(index=index, size=size))
        return proof

    async def head(self, cosigned: bool = False) -> broker_pb2.WitnessedHead:
        head: broker_pb2.WitnessedHead = await self._unary("GetHead", broker_pb2.GetHeadRequest(cosigned=cosigned))
        return head

    async def audit_leaves(self, start: int, limit: int) -> broker_pb2.AuditLeavesResponse:
        resp: broker_pb2.AuditLeavesResponse = await self._unary(
            "AuditLeaves", broker_pb2.AuditRange(from_index=start, limit=limit))
        return resp

    async def get_bundle(self, digest: bytes) -> broker_pb2.BundleArchive:
        resp: broker_pb2.BundleArchive = await self._unary("GetBundle", broker_pb2.GetBundleRequest(digest=digest))
        return resp

    async def audit_events(self, start: int, limit: int) -> broker_pb2.AuditEventsResponse:
        resp: broker_pb2.AuditEventsResponse = await self._unary(
            "AuditEvents", broker_pb2.AuditRange(from_index=start, limit=limit))
        return resp

    async def query(self, envelope: bytes, timeout: float = 30.0) -> broker_pb2.QueryResponse:
        resp: broker_pb2.QueryResponse = await self._unary("Query", broker_pb2.QueryRequest(envelope=envelope),
                                                           timeout)
        return resp

    async def directory_report(self, days: int) -> broker_pb2.DirectoryReportResponse:
        resp: broker_pb2.DirectoryReportResponse = await self._unary(
            "DirectoryReport", broker_pb2.DirectoryReportRequest(days=days))
        return resp

    async def directory_entries(self, after: bytes, limit: int) -> broker_pb2.DirectoryEntriesResponse:
        resp: broker_pb2.DirectoryEntriesResponse = await self._unary(
            "DirectoryEntries", broker_pb2.DirectoryEntriesRequest(after=after, limit=limit))
        return resp

    def subscribe(self) -> Any:
        """Open the bidirectional delivery stream (grpc StreamStreamCall) to the current instance."""
        return self._stub.Subscribe()

    async def close(self) -> None:
        await self._channel.close()
        for _, retired in self._retired:
            await retired.close()
        self._retired.clear()
