"""The broker's Prometheus endpoint counts what a user would watch: sends, acks, queue depth, oldest age."""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from olievlek.broker import server as broker_server
from olievlek.broker.seeding import seed
from olievlek.broker.server import BrokerServer

from olievlek import wire
from olievlek.v1 import local_pb2, summary_pb2

from .conftest import NodeFactory, Pki, broker_config
from .envelopes import body, seal_bytes, send_envelope, signer, summary

pytestmark = pytest.mark.timeout(60)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def ready_status(port: int) -> int:
    """The status of ``GET /ready`` (what a load balancer's health check sees)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_metrics_endpoint(pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_server, "GAUGE_INTERVAL_S", 0.1)
    broker = BrokerServer(dataclasses.replace(broker_config(pki, tmp_path), metrics_listen="127.0.0.1:0"))
    await broker.start()
    try:
        assert broker.metrics is not None and broker.metrics.port > 0
        await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        s = summary()
        s.agencies.append(summary_pb2.AGENCY_ROLE_POLICE)
        await send_envelope(pki, broker.port, seal_bytes(wire.encode(body(summary_msg=s)), signer(pki, "gent")))
        await asyncio.sleep(0.3)
        text = await asyncio.to_thread(scrape, broker.metrics.port)
        assert 'olievlek_broker_sends_total{decision="accepted"} 1.0' in text
        assert 'olievlek_broker_sends_total{decision="refused"} 1.0' in text
        assert 'olievlek_broker_queue_depth{recipient="antwerpen"} 1.0' in text
        assert 'olievlek_broker_oldest_undelivered_seconds{recipient="antwerpen"}' in text
        await nodes.start("antwerpen", broker.port)  # it connects, takes the delivery and acks it
        for _ in range(50):
            text = await asyncio.to_thread(scrape, broker.metrics.port)
            if 'olievlek_broker_queue_depth{recipient="antwerpen"} 0.0' in text:
                break
            await asyncio.sleep(0.1)
        assert 'olievlek_broker_queue_depth{recipient="antwerpen"} 0.0' in text
        assert 'olievlek_broker_acks_total{outcome="stored"} 1.0' in text
        assert "olievlek_broker_deliveries_total 1.0" in text
    finally:
        for n in list(nodes.running):
            await nodes.stop(n)
        await broker.stop(0)


async def test_node_metrics_endpoint(pki: Pki, broker: BrokerServer, nodes: NodeFactory,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender's outbox and a recipient's deliveries and duplicates, as Prometheus shows them."""
    from olievlek.broker.storage.store import NEVER
    from olievlek.node import server as node_server

    from .envelopes import open_and_alert

    monkeypatch.setattr(node_server, "GAUGE_INTERVAL_S", 0.1)
    gent = await nodes.start("gent", broker.port, metrics_listen="127.0.0.1:0")
    antwerpen = await nodes.start("antwerpen", broker.port, metrics_listen="127.0.0.1:0")
    assert (await open_and_alert(gent, "85.07.30-033.28")).status == local_pb2.OUTBOX_STATUS_ACCEPTED
    raw = seal_bytes(wire.encode(body(key="twice")), signer(pki, "gent"))
    await send_envelope(pki, broker.port, raw)
    assert broker.service is not None
    await seed(broker.service, "antwerpen", "gent", [("twice", raw)], 0, NEVER)
    broker.service.notifier.notify("antwerpen")
    for _ in range(50):
        text = await asyncio.to_thread(scrape, antwerpen.metrics.port)
        if "olievlek_node_duplicates_total 1.0" in text:
            break
        await asyncio.sleep(0.1)
    assert "olievlek_node_deliveries_total 2.0" in text and "olievlek_node_duplicates_total 1.0" in text
    sender = await asyncio.to_thread(scrape, gent.metrics.port)
    assert 'olievlek_node_sends_total{decision="accepted"} 1.0' in sender
    assert "olievlek_node_outbox_pending 0.0" in sender and "olievlek_node_outbox_oldest_seconds 0.0" in sender


async def test_ready_says_200_while_the_broker_serves_and_its_database_answers(pki: Pki, tmp_path: Path,
                                                                               policy_dir: Path) -> None:
    """``GET /ready`` for a load balancer (docs/high-availability.md), on SQLite here (the PostgreSQL side - 503
    while the database is cut off - is in tests/test_failover.py); a draining broker is not ready."""
    config = dataclasses.replace(broker_config(pki, tmp_path), ready_listen="127.0.0.1:0",
                                 metrics_listen="127.0.0.1:0")
    server = BrokerServer(config)
    await server.start()
    try:
        for _ in range(50):
            if await asyncio.to_thread(ready_status, server.ready_port) == 200:
                break
            await asyncio.sleep(0.1)
        assert await asyncio.to_thread(ready_status, server.ready_port) == 200
        assert server.metrics is not None
        assert "olievlek_broker_database_up 1.0" in scrape(server.metrics.port)
        assert server.readiness is not None
        server.readiness.serving = False  # what stop() does first, before the server drains
        assert await asyncio.to_thread(ready_status, server.ready_port) == 503
    finally:
        await server.stop(0)
