"""Partition: a TCP proxy between Antwerpen and the broker silently drops traffic (no reset, as a real
partition does) while Gent and Leuven keep sending to Antwerpen. gRPC keepalive finds the dead stream;
after the partition heals everything arrives, in order per sender, with no duplicates.

``make test`` partitions for about 10 s with a 2 s client keepalive (and the broker's ping permit to
match, or it would answer frequent pings with GOAWAY too_many_pings); ``make chaos`` sets
PARTITION_SECONDS=30 and PARTITION_KEEPALIVE=production (15 s + 10 s timeout).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections import defaultdict
from pathlib import Path

import pytest
from olievlek.broker.server import BrokerServer
from olievlek.node.server import NodeServer

from olievlek.envelope import body_of
from olievlek.v1 import local_pb2, summary_pb2

from .conftest import NodeFactory, Pki, broker_config
from .envelopes import local
from .proxy import PartitionProxy
from .test_delivery import inbox_rows

PARTITION_S = float(os.environ.get("PARTITION_SECONDS", "10"))
PRODUCTION = os.environ.get("PARTITION_KEEPALIVE") == "production"
KEEPALIVE = {} if PRODUCTION else {"keepalive_s": 2.0, "keepalive_timeout_s": 2.0}
ALERTS_PER_SENDER = 60

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90 + 3 * PARTITION_S)]


async def _case(node: NodeServer, nrn: str) -> int:
    ident = local_pb2.Identity(national_number=nrn, given_names="A", family_name="B")
    r = await local(node, local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
        identity=ident, phase=summary_pb2.PHASE_FOLLOW_UP)))
    return int(r.case_open.case_id)


async def _alert(node: NodeServer, case_id: int) -> None:
    r = await local(node, local_pb2.LocalRequest(alert_move=local_pb2.AlertMoveRequest(
        case_id=case_id, destination_nis=11002, no_wait=True)))
    assert r.WhichOneof("response") == "alert_move", r


async def _keys_sent(node: NodeServer) -> list[str]:
    assert node._store is not None
    return [r.idem_key for r in await node._store.all_outbox() if r.kind == "alert.move"]


async def test_everything_arrives_in_order_after_a_silent_partition(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory) -> None:
    cfg = dataclasses.replace(broker_config(pki, tmp_path), min_ping_interval_s=1.0)
    broker = BrokerServer(cfg)
    await broker.start()
    proxy = PartitionProxy("127.0.0.1", broker.port)
    proxy_port = await proxy.start()
    try:
        antwerpen = await nodes.start("antwerpen", proxy_port, **KEEPALIVE)
        gent = await nodes.start("gent", broker.port)
        leuven = await nodes.start("leuven", broker.port)
        senders = {"gent": gent, "leuven": leuven}
        cases = {"gent": await _case(gent, "85.07.30-033.28"), "leuven": await _case(leuven, "93.05.18-223.61")}
        assert antwerpen.session is not None
        await asyncio.wait_for(antwerpen.session.connected.wait(), 10)
        for org, node in senders.items():  # some before the partition
            for _ in range(5):
                await _alert(node, cases[org])
        deadline = time.monotonic() + 10
        while len(await inbox_rows(antwerpen)) < 10:
            assert time.monotonic() < deadline, "the alerts before the partition did not arrive"
            await asyncio.sleep(0.05)

        proxy.partition()
        started = time.monotonic()
        per_tick = ALERTS_PER_SENDER - 5
        for i in range(per_tick):  # the others keep sending to Antwerpen throughout
            for org, node in senders.items():
                await _alert(node, cases[org])
            await asyncio.sleep(max(0.0, started + PARTITION_S * (i + 1) / per_tick - time.monotonic()))
        assert proxy.partitioned
        # Keepalive (not the heal) found the dead stream: Antwerpen is not connected any more.
        assert not antwerpen.session.connected.is_set(), "the dead stream went unnoticed for the whole partition"
        broker_log_before_heal = len(await inbox_rows(antwerpen))
        proxy.heal()
        print(f"partition: {time.monotonic() - started:.1f} s, keepalive {'production' if PRODUCTION else '2 s'}, "
              f"{broker_log_before_heal} items at Antwerpen when it healed")

        total = 2 * ALERTS_PER_SENDER
        deadline = time.monotonic() + 30 + (25 if PRODUCTION else 0)
        while len(await inbox_rows(antwerpen)) < total:
            assert time.monotonic() < deadline, f"only {len(await inbox_rows(antwerpen))} of {total} arrived"
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # nothing more may come
        rows = await inbox_rows(antwerpen)
        assert len(rows) == total  # no duplicates (and none lost)
        received: dict[str, list[str]] = defaultdict(list)
        for row in rows:  # inbox order is the order Antwerpen stored them in
            body = body_of(row.envelope)
            received[row.sender].append(body.idempotency_key)
        for org, node in senders.items():
            assert received[org] == await _keys_sent(node), f"{org}'s alerts arrived out of order"
        assert proxy.connections >= 2  # Antwerpen really reconnected through the healed link
    finally:
        for n in list(nodes.running):
            await nodes.stop(n)
        await proxy.close()
        await broker.stop(0)
