"""Service plumbing: health and reflection on the broker, SO_PEERCRED on the node's socket."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from olievlek.broker.server import BrokerServer
from olievlek.cli.local_client import call
from olievlek.node import handlers

from olievlek import transport
from olievlek.errors import LocalApiError
from olievlek.v1 import local_pb2, summary_pb2

from .conftest import NodeFactory, Pki, broker_config

pytestmark = pytest.mark.timeout(60)


async def test_health_and_reflection_over_mtls(pki: Pki, broker: BrokerServer) -> None:
    async with transport.secure_channel(f"127.0.0.1:{broker.port}", pki.tls("gent")) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name async for r in responses for s in r.list_services_response.service}
    assert "olievlek.v1.Broker" in names and "grpc.health.v1.Health" in names


async def test_local_socket_records_the_callers_uid(broker: BrokerServer, nodes: NodeFactory) -> None:
    node = await nodes.start("gent", broker.port)
    identity = local_pb2.Identity(national_number="85.07.30-033.28", given_names="A", family_name="B")
    req = local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(identity=identity,
                                                                     phase=summary_pb2.PHASE_SIGNAL))
    resp = await asyncio.to_thread(call, node.config.socket, req)
    assert resp.case_open.case_id == 1
    bad = local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
        identity=local_pb2.Identity(national_number="12345", family_name="B"), phase=summary_pb2.PHASE_SIGNAL))
    with pytest.raises(LocalApiError) as info:
        await asyncio.to_thread(call, node.config.socket, bad)
    assert info.value.remote_code == "invalid_identifier" and "12345" not in info.value.message
    assert node._store is not None
    rows = await node._store.db.fetchall("SELECT uid, request, outcome FROM local_requests ORDER BY id")
    assert rows == [(os.getuid(), "case_open", "ok"), (os.getuid(), "case_open", "invalid_identifier")]
    assert oct(node.config.socket.stat().st_mode & 0o777) == "0o660"


async def test_unreachable_broker_keeps_the_alert_pending_and_resends(
    pki: Pki, nodes: NodeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Broker down: the signed bytes wait in the outbox; once it is up they are sent unchanged."""
    broker = BrokerServer(broker_config(pki, tmp_path))
    port = await broker.start()
    await broker.stop(0)  # the port is now free; the node will dial it
    gent = await nodes.start("gent", port)
    identity = local_pb2.Identity(national_number="93.05.18-223.61", given_names="A", family_name="B")
    opened = await asyncio.to_thread(call, gent.config.socket, local_pb2.LocalRequest(
        case_open=local_pb2.CaseOpenRequest(identity=identity, phase=summary_pb2.PHASE_FOLLOW_UP)))
    monkeypatch.setattr(handlers, "ALERT_WAIT_S", 0.5)
    r = await asyncio.to_thread(call, gent.config.socket, local_pb2.LocalRequest(alert_move=local_pb2.AlertMoveRequest(
        case_id=opened.case_open.case_id, destination_nis=11002)))
    assert r.alert_move.status == local_pb2.OUTBOX_STATUS_PENDING
    assert gent._store is not None
    [row] = [r for r in await gent._store.outbox_rows("pending") if r.kind == "alert.move"]
    restarted = BrokerServer(broker_config(pki, tmp_path, listen=f"127.0.0.1:{port}"))
    await restarted.start()
    try:
        for _ in range(200):
            done = await gent._store.outbox(row.id)
            if done is not None and done.status != "pending":
                break
            await asyncio.sleep(0.05)
        assert done is not None and done.status == "accepted"
        assert done.envelope == row.envelope  # the same bytes, not a rebuilt envelope
        assert restarted.service is not None
        assert [q.payload for q in await restarted.service.store.pending("antwerpen", 0, 10)] == [row.envelope]
    finally:
        await nodes.stop(gent)
        await restarted.stop(0)
