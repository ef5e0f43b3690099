"""Store and forward: deliveries reach nodes that connect later, across a broker restart,
and a node refuses what is not addressed to it or not validly signed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest
from olievlek.broker.seeding import seed
from olievlek.broker.server import BrokerServer
from olievlek.broker.storage.store import NEVER
from olievlek.node.broker_client import BrokerClient
from olievlek.node.server import NodeServer

from olievlek import transport, wire
from olievlek.v1 import broker_pb2, broker_pb2_grpc

from .conftest import NodeFactory, Pki, broker_config
from .envelopes import body, seal_bytes, send_envelope, signer

pytestmark = pytest.mark.timeout(60)


async def eventually(check: Callable[[], Coroutine[Any, Any, bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def inbox_rows(node: NodeServer) -> list[Any]:
    assert node._store is not None
    return await node._store.inbox()


async def refusals(node: NodeServer) -> list[tuple[Any, ...]]:
    assert node._store is not None
    return await node._store.db.fetchall("SELECT reason, detail FROM delivery_refusals")


async def send_as(pki: Pki, port: int, org: str, raw: bytes) -> broker_pb2.SendResponse:
    return await send_envelope(pki, port, raw, org)


async def test_offline_recipient_receives_after_broker_restart(pki: Pki, tmp_path: Path, nodes: NodeFactory) -> None:
    broker = BrokerServer(broker_config(pki, tmp_path))
    port = await broker.start()
    resp = await send_as(pki, port, "gent", seal_bytes(wire.encode(body()), signer(pki, "gent")))
    assert resp.WhichOneof("outcome") == "receipt"
    await broker.stop(0)

    broker = BrokerServer(broker_config(pki, tmp_path))  # same database file, new process state
    port = await broker.start()
    try:
        antwerpen = await nodes.start("antwerpen", port)
        await eventually(lambda: _has_rows(antwerpen, 1))
        [row] = await inbox_rows(antwerpen)
        assert row.sender == "gent" and row.status == "pending_identification"
        assert broker.service is not None
        await eventually(lambda: _queue_empty(broker, "antwerpen"))
    finally:
        for n in list(nodes.running):
            await nodes.stop(n)
        await broker.stop(0)


async def _has_rows(node: NodeServer, n: int) -> bool:
    return len(await inbox_rows(node)) == n


async def _queue_empty(broker: BrokerServer, org: str) -> bool:
    assert broker.service is not None
    return await broker.service.store.pending(org, 0, 10) == []


async def test_redelivery_is_not_applied_twice(pki: Pki, broker: BrokerServer, nodes: NodeFactory) -> None:
    antwerpen = await nodes.start("antwerpen", broker.port)
    raw = seal_bytes(wire.encode(body(key="once")), signer(pki, "gent"))
    await send_as(pki, broker.port, "gent", raw)
    await eventually(lambda: _has_rows(antwerpen, 1))
    # The broker loses the ack (as after a crash) and redelivers the same envelope.
    assert broker.service is not None
    store: Any = broker.service.store
    await seed(broker.service, "antwerpen", "gent", [("once", raw)], 0, NEVER)
    broker.service.notifier.notify("antwerpen")
    await eventually(lambda: _queue_empty(broker, "antwerpen"))
    assert len(await inbox_rows(antwerpen)) == 1
    acks = await store.db.fetchall("SELECT outcome FROM acks ORDER BY rowid")
    assert [a[0] for a in acks] == ["stored", "duplicate"]


async def test_revoked_signer_is_refused_by_the_recipient(pki: Pki, broker: BrokerServer, nodes: NodeFactory) -> None:
    resp = await send_as(pki, broker.port, "gent", seal_bytes(wire.encode(body()), signer(pki, "gent")))
    assert resp.WhichOneof("outcome") == "receipt"
    pki.ca.revoke(pki.ca.serials_of("municipality/gent")[1])  # after acceptance, before delivery
    antwerpen = await nodes.start("antwerpen", broker.port)
    await eventually(lambda: _queue_empty(broker, "antwerpen"))
    assert await inbox_rows(antwerpen) == []
    [(reason, detail)] = await refusals(antwerpen)
    assert reason == "bad_signer_certificate" and "revoked" in detail


class RogueBroker(broker_pb2_grpc.BrokerServicer):
    """A broker that misroutes: it streams Leuven's mail to whoever connects."""

    def __init__(self, envelope: bytes) -> None:
        self.envelope = envelope
        self.acks: list[broker_pb2.Ack] = []

    async def Subscribe(self, request_iterator: Any, context: Any) -> Any:
        yield broker_pb2.SubscribeDown(delivery=broker_pb2.Delivery(seq=7, envelope=self.envelope))
        async for up in request_iterator:
            self.acks.extend([up.ack] if up.WhichOneof("msg") == "ack" else up.acks.acks)
            return


async def test_node_refuses_envelope_not_addressed_to_it(pki: Pki, nodes: NodeFactory) -> None:
    raw = seal_bytes(wire.encode(body(recipients=("leuven",))), signer(pki, "gent"))
    rogue = RogueBroker(raw)
    server = grpc.aio.server()
    broker_pb2_grpc.add_BrokerServicer_to_server(rogue, server)
    tls = transport.TlsFiles(pki.root / "ca.pem", pki.root / "servers/broker/tls.pem",
                             pki.root / "servers/broker/tls.key")
    port = server.add_secure_port("127.0.0.1:0", transport.server_credentials(tls))
    await server.start()
    try:
        antwerpen = await nodes.start("antwerpen", port)

        async def acked() -> bool:
            return bool(rogue.acks)

        await eventually(acked)
        assert rogue.acks[0].outcome == broker_pb2.ACK_OUTCOME_REJECTED
        assert rogue.acks[0].reason_code == "not_a_recipient"
        assert await inbox_rows(antwerpen) == []
        [(reason, detail)] = await refusals(antwerpen)
        assert reason == "not_a_recipient" and "leuven" in detail
    finally:
        for n in list(nodes.running):
            await nodes.stop(n)
        await server.stop(0)


async def test_new_stream_supersedes_the_old(pki: Pki, broker: BrokerServer) -> None:
    first = BrokerClient(f"127.0.0.1:{broker.port}", pki.tls("antwerpen"))
    second = BrokerClient(f"127.0.0.1:{broker.port}", pki.tls("antwerpen"))
    try:
        old = first.subscribe()
        await old.wait_for_connection()
        await asyncio.sleep(0.2)
        new = second.subscribe()
        await new.wait_for_connection()
        assert await asyncio.wait_for(old.read(), 5) is grpc.aio.EOF  # the old stream ends
        await send_as(pki, broker.port, "gent", seal_bytes(wire.encode(body()), signer(pki, "gent")))
        down = await asyncio.wait_for(new.read(), 5)
        assert down.delivery.seq > 0  # the new one gets the mail
        new.cancel()
    finally:
        await first.close()
        await second.close()
