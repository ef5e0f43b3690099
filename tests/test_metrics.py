"""The broker's Prometheus endpoint counts what a user would watch: sends, acks, queue depth, oldest age."""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.request
from pathlib import Path

import pytest
from olievlek.broker import server as broker_server
from olievlek.broker.server import BrokerServer

from olievlek import wire
from olievlek.v1 import summary_pb2

from .conftest import NodeFactory, Pki, broker_config
from .envelopes import body, seal_bytes, send_envelope, signer, summary

pytestmark = pytest.mark.timeout(60)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


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
