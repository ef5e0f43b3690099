"""Witnesses and the split view: a broker that shows two organisations two histories is caught."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from olievlek.broker.server import BrokerServer
from olievlek.node.server import NodeServer
from olievlek.witness.witness import Witness, WitnessConfig

from olievlek import wire
from olievlek.errors import VerificationError

from .conftest import WITNESS, NodeFactory, Pki, broker_config
from .envelopes import body, seal_bytes, send_envelope, signer

pytestmark = pytest.mark.timeout(90)


def witness_config(pki: Pki, policy_dir: Path, port: int, db: Path, org: str = WITNESS) -> WitnessConfig:
    c = pki.org(org)
    return WitnessConfig(org_id=org, broker=f"127.0.0.1:{port}", tls=pki.tls(org), sign_cert=c.sign_cert,
                         sign_key=c.sign_key, log_public_key=policy_dir / "log.pub", database=db)


async def with_quorum(nodes: NodeFactory, org: str, port: int) -> NodeServer:
    """A node that demands one cosignature of the bundle's witness (its configuration raises the quorum)."""
    node = await nodes.start(org, port, witness_quorum=1)
    assert node.audit is not None
    return node


async def test_witness_cosigns_consistent_heads_and_nodes_see_the_quorum(
    pki: Pki, broker: BrokerServer, policy_dir: Path, nodes: NodeFactory, tmp_path: Path
) -> None:
    witness = await Witness.open(witness_config(pki, policy_dir, broker.port, tmp_path / "w.sqlite"))
    try:
        first = await witness.poll_once()
        await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        second = await witness.poll_once()
        assert first is not None and second is not None and second.size > first.size
        gent = await with_quorum(nodes, "gent", broker.port)
        assert gent.audit is not None
        assert await gent.audit.check_witnessed() == [f"witness/{WITNESS}"]
        # Witness lag is no alarm: nodes check the latest *cosigned* head against their own.
        await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        assert await gent.audit.check_witnessed() == [f"witness/{WITNESS}"]
        third = await witness.poll_once()
        assert third is not None and third.size > second.size
        assert await gent.audit.check_witnessed() == [f"witness/{WITNESS}"]
    finally:
        await witness.close()


async def test_split_view_is_refused_by_the_witness_and_alarms_the_node(
    pki: Pki, broker: BrokerServer, policy_dir: Path, nodes: NodeFactory, tmp_path: Path, log_file: Path
) -> None:
    # Fork B: the same log key, another history (its own first leaves), served to Antwerpen only.
    fork_cfg = dataclasses.replace(broker_config(pki, tmp_path), database=tmp_path / "fork" / "broker.sqlite")
    fork = BrokerServer(fork_cfg)
    await fork.start()
    witness = await Witness.open(witness_config(pki, policy_dir, broker.port, tmp_path / "w.sqlite"))
    try:
        await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        await witness.poll_once()  # cosigns the real history
        await send_envelope(pki, fork.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        await send_envelope(pki, fork.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        # The same witness (same state) is shown the fork: it refuses to cosign.
        shown_fork = Witness(dataclasses.replace(witness.config, broker=f"127.0.0.1:{fork.port}"), witness._db)
        with pytest.raises(VerificationError, match=r"not append-only|forked"):
            await shown_fork.poll_once()
        await shown_fork._channel.close()
        assert fork.service is not None
        assert await fork.service.store.cosignatures((await fork.service.committer.audit.head()).size) == []
        # Gent on the real log is fine; Antwerpen on the fork raises the alarm.
        gent = await with_quorum(nodes, "gent", broker.port)
        antwerpen = await with_quorum(nodes, "antwerpen", fork.port)
        assert gent.audit is not None and antwerpen.audit is not None
        assert await gent.audit.check_witnessed() == [f"witness/{WITNESS}"]
        with pytest.raises(VerificationError, match="private view"):
            await antwerpen.audit.check_witnessed()
    finally:
        await witness.close()
        await fork.stop(0)
    logged = log_file.read_text()
    assert "witness.alarm" in logged and "audit.witness_alarm" in logged
