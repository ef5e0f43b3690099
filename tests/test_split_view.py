"""A broker that lies is caught (2/2): split views found, outcomes final only under the witnesses' quorum.

A real witness (tlog-witness over HTTPS) and a broker that pushes to it when the test says so; the broker
is the lying one of ``tests/lying_broker.py`` where a test needs it, holding the real log key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from olievlek.broker.server import BrokerServer
from olievlek.node import evidence
from olievlek.node.server import NodeServer
from olievlek.witness.witness import Witness

from olievlek import wire
from olievlek.audit.checkpoint import origin_for
from olievlek.envelope import env_of
from olievlek.statuses import Confirmation, OutboxStatus
from olievlek.v1 import broker_pb2, local_pb2

from .conftest import WITNESS, NodeFactory, Pki, broker_config
from .envelopes import body, open_and_alert, seal_bytes, send_envelope, signer, summary
from .lying_broker import Liar, private_branch
from .test_witness import witness_config

pytestmark = pytest.mark.timeout(90)
ORIGIN = origin_for("flanders")
QUIET = {"witness_check_interval_s": 3600.0}  # the tests check when they choose


@pytest.fixture
async def witness(pki: Pki, policy_dir: Path, tmp_path: Path) -> AsyncIterator[Witness]:
    w = await Witness.open(witness_config(pki, policy_dir, tmp_path / "witness.sqlite"))
    await w.start()
    yield w
    await w.close()


async def lying_pushing_broker(pki: Pki, tmp_path: Path, witness: Witness, liar: Liar) -> BrokerServer:
    cfg = dataclasses.replace(broker_config(pki, tmp_path),
                              witness_push=((f"witness/{WITNESS}", f"https://127.0.0.1:{witness.port}"),),
                              push_interval_s=3600)
    server = liar.start(BrokerServer(cfg, servicer=liar.servicer()))
    await server.start()
    return server


async def push(broker: BrokerServer) -> None:
    assert broker.pusher is not None
    assert await broker.pusher.push_once() == {f"witness/{WITNESS}": 200}


async def confirmation(node: NodeServer, outbox_id: int) -> Confirmation | None:
    assert node._store is not None
    return await evidence.confirmation(node._store.db, evidence.Item.OUTBOX, outbox_id)


async def answered(node: NodeServer, nrn: str) -> int:
    """Open a case and alert Antwerpen; the outbox id once the broker answered."""
    sent = await open_and_alert(node, nrn, no_wait=True)
    assert node._store is not None
    for _ in range(200):
        row = await node._store.outbox(sent.outbox_id)
        assert row is not None
        if not row.status.unanswered:
            return sent.outbox_id
        await asyncio.sleep(0.05)
    raise AssertionError("the broker did not answer")


def counted(node: NodeServer, name: str) -> float:
    return node.metrics.registry.get_sample_value(f"olievlek_node_{name}", {}) or 0.0


async def outbox_as_the_regisseur_sees_it(node: NodeServer) -> str:
    """``olievlek outbox`` in a thread (the node under test serves on this event loop)."""
    r = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "olievlek", "outbox", "--socket", str(node.config.socket)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "OLIEVLEK_LANG": "en", "COLUMNS": "400"})
    assert r.returncode == 0, r.stderr
    return " ".join(r.stdout.split())


async def forge_expiry(liar: Liar, tmp_path: Path, policy_dir: Path, gent: NodeServer, outbox_id: int) -> int:
    """Show Gent alone a private branch whose one new leaf says its alert expired, and queue that notice on
    Gent's stream (proven in the branch); returns the notice's sequence number."""
    assert gent._store is not None
    row = await gent._store.outbox(outbox_id)
    assert row is not None and row.envelope is not None
    meta: dict[str, object] = {"event": "delivery.expired", "sender": "gent", "recipient": "antwerpen",
                               "rule": "move-alert", "key": row.idem_key, "env": env_of(row.envelope).hex(), "seq": 1}
    private, [index] = await private_branch(liar, tmp_path, policy_dir / "log.key", ORIGIN,
                                            [(meta, ("municipality/gent",))])
    head = await private.head(private.size)
    assert head is not None
    salt, data = await private.event(index)
    notice = broker_pb2.DeliveryNotice(
        idempotency_key=row.idem_key, recipient="antwerpen", rule_id="move-alert",
        reason=broker_pb2.NOTICE_REASON_EXPIRED,
        audit=broker_pb2.AuditProof(leaf_index=index, salt=salt, metadata=data or b"", head=head,
                                    inclusion=await private.inclusion(index, head.size)))
    liar.private = private
    notice.seq = await liar.next_seq("gent")
    liar.replace[notice.seq] = broker_pb2.SubscribeDown(notice=notice)  # what the stream sends for that number
    seq = await liar.queue("gent", "expiry", notice.SerializeToString(), -1, key=row.idem_key)
    assert seq == notice.seq
    for _ in range(200):
        if (await gent._store.outbox(outbox_id)).status == OutboxStatus.EXPIRED:  # type: ignore[union-attr]
            return seq
        await asyncio.sleep(0.05)
    raise AssertionError("Gent did not take the forged notice")


async def test_a_private_branch_with_a_forged_notice_raises_the_fork_alarm_and_never_becomes_final(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory, witness: Witness) -> None:
    """Finding: Gent took a forged "expired" notice from a private branch as final while the broker served an
    older cosigned head. Now the notice stays provisional; the witnesses' next head, which the broker hands
    to everyone, does not extend Gent's branch: the fork alarm; after the bound the entry is unconfirmed."""
    liar = Liar()
    broker = await lying_pushing_broker(pki, tmp_path, witness, liar)
    try:
        gent = await nodes.start("gent", broker.port, **QUIET, fork_after_s=1.0, confirm_within_s=30.0)
        assert gent.witness_watch is not None
        alert = await answered(gent, "85.07.30-033.28")
        await push(broker)
        first = await gent.witness_watch.check()
        assert first.fork == "" and not first.lagging
        assert await confirmation(gent, alert) == Confirmation.FINAL  # the positive control: covered, final
        await forge_expiry(liar, tmp_path, policy_dir, gent, alert)
        assert await confirmation(gent, alert) == Confirmation.PROVISIONAL  # expired, but only provisionally
        # The real log goes on (Leuven alerts Antwerpen) and the witnesses cosign it: not Gent's branch.
        liar.private = None
        other = await send_envelope(pki, broker.port, seal_bytes(wire.encode(body(sender="leuven", summary_msg=summary(
            contact_id="leuven-livc"))), signer(pki, "leuven")), org="leuven")
        assert other.WhichOneof("outcome") == "receipt"
        await push(broker)
        found = await gent.witness_watch.check()
        assert "different signed roots" in found.fork, found
        assert counted(gent, "audit_forks_total") == 1
        assert await confirmation(gent, alert) == Confirmation.PROVISIONAL  # never final
        later = await gent.witness_watch.check(int(time.time() * 1000) + 31_000)
        assert later.unconfirmed >= 1 and await confirmation(gent, alert) == Confirmation.UNCONFIRMED
        shown = await outbox_as_the_regisseur_sees_it(gent)
        # (the table wraps the cell over two lines)
        assert "unconfirmed: perhaps it never arrived —" in shown and "contact the recipient" in shown, shown
        assert "expired" not in shown and "time-to-live" not in shown, shown  # never a final outcome's words
    finally:
        await broker.stop(0)


async def test_an_old_cosigned_head_is_lag_and_refreshing_it_is_a_fork(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory, witness: Witness) -> None:
    """The original attack: after the private branch, the broker serves Gent the old cosigned head. Its age,
    read from the witnesses' own timestamps, is a lag warning (not a fork: a stopped witness looks the
    same), and nothing becomes final. To hide the lag the broker must get fresh cosignatures - only for
    heads the witness accepts, which do not cover Gent's branch: the fork alarm, once the bound has passed."""
    liar = Liar()
    broker = await lying_pushing_broker(pki, tmp_path, witness, liar)
    try:
        gent = await nodes.start("gent", broker.port, **QUIET, fork_after_s=1.0, witness_lag_s=60.0)
        assert gent.witness_watch is not None and gent._client is not None
        alert = await answered(gent, "85.07.30-033.28")
        await push(broker)
        liar.cosigned = await gent._client.head(cosigned=True)  # from now on, this one only
        await gent.witness_watch.check()
        await forge_expiry(liar, tmp_path, policy_dir, gent, alert)
        stale = await gent.witness_watch.check(int(time.time() * 1000) + 61_000)
        assert stale.lagging and stale.fork == "" and counted(gent, "audit_forks_total") == 0
        assert counted(gent, "witness_lagging") == 1
        assert await confirmation(gent, alert) == Confirmation.PROVISIONAL
        # Fresh cosignatures of the same (real) head, more than the bound later (they count whole seconds).
        await asyncio.sleep(2.1)
        await push(broker)
        liar.cosigned = None
        refreshed = await gent.witness_watch.check()
        assert refreshed.fork and not refreshed.lagging, refreshed
        assert counted(gent, "audit_forks_total") == 1
        assert await confirmation(gent, alert) == Confirmation.PROVISIONAL
    finally:
        await broker.stop(0)


async def test_a_stopped_witness_is_only_lag_and_outcomes_wait_for_it(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory) -> None:
    """An honest broker whose witness stops: a lag warning and no fork alarm; what was answered meanwhile
    waits, and becomes final once the witness is back and cosigns."""
    witness = await Witness.open(witness_config(pki, policy_dir, tmp_path / "witness.sqlite"))
    await witness.start()
    liar = Liar()  # lies about nothing here
    broker = await lying_pushing_broker(pki, tmp_path, witness, liar)
    try:
        gent = await nodes.start("gent", broker.port, **QUIET, fork_after_s=1.0, witness_lag_s=60.0)
        assert gent.witness_watch is not None
        before = await answered(gent, "85.07.30-033.28")
        await push(broker)
        await gent.witness_watch.check()
        assert await confirmation(gent, before) == Confirmation.FINAL
        port = witness.port
        await witness.close()
        during = await answered(gent, "93.05.18-223.61")
        assert broker.pusher is not None
        assert await broker.pusher.push_once() == {f"witness/{WITNESS}": 0}  # unreachable
        await asyncio.sleep(1.1)
        lag = await gent.witness_watch.check(int(time.time() * 1000) + 61_000)
        assert lag.lagging and lag.fork == "" and counted(gent, "audit_forks_total") == 0
        assert await confirmation(gent, during) == Confirmation.PROVISIONAL
        shown = await outbox_as_the_regisseur_sees_it(gent)
        assert "awaiting witnesses" in shown
        # The witness comes back (same state, same port): the next push is cosigned, the outcome final.
        back = await Witness.open(dataclasses.replace(witness_config(pki, policy_dir, tmp_path / "witness.sqlite"),
                                                      listen=f"127.0.0.1:{port}"))
        await back.start()
        try:
            await push(broker)
            again = await gent.witness_watch.check()
            assert not again.lagging and again.fork == ""
            assert await confirmation(gent, during) == Confirmation.FINAL
        finally:
            await back.close()
    finally:
        await broker.stop(0)


async def test_through_the_real_broker_and_witness_outcomes_become_final_once_covered(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory, witness: Witness) -> None:
    """A receipt at the sender and the delivery at the recipient: awaiting witnesses, then final."""
    liar = Liar()
    broker = await lying_pushing_broker(pki, tmp_path, witness, liar)
    try:
        gent = await nodes.start("gent", broker.port, **QUIET)
        antwerpen = await nodes.start("antwerpen", broker.port, **QUIET)
        assert gent.witness_watch is not None and antwerpen.witness_watch is not None and antwerpen._store
        alert = await answered(gent, "85.07.30-033.28")
        assert await confirmation(gent, alert) == Confirmation.PROVISIONAL
        for _ in range(200):
            if await evidence.confirmations(antwerpen._store.db, evidence.Item.INBOX):
                break
            await asyncio.sleep(0.05)
        [(item, state)] = (await evidence.confirmations(antwerpen._store.db, evidence.Item.INBOX)).items()
        assert state == Confirmation.PROVISIONAL
        assert [i.id for i in await antwerpen._store.inbox()] == [item]
        await push(broker)
        assert (await gent.witness_watch.check()).finalised >= 1
        assert (await antwerpen.witness_watch.check()).finalised >= 1
        assert await confirmation(gent, alert) == Confirmation.FINAL
        assert (await evidence.confirmations(antwerpen._store.db, evidence.Item.INBOX))[item] == Confirmation.FINAL
        assert [i.confirmation for i in (await _outbox(gent)).items] == [local_pb2.CONFIRMATION_FINAL]
    finally:
        await broker.stop(0)


async def _outbox(node: NodeServer) -> local_pb2.OutboxListResponse:
    from .envelopes import local

    return (await local(node, local_pb2.LocalRequest(outbox_list=local_pb2.OutboxListRequest()))).outbox_list
