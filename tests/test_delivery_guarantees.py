"""Delivery guarantees with real in-process servers (issue 7): idempotent retry, batches, per-recipient
sequence numbers, expiry told to the sender, queue limit, a failing commit, PRAGMA checks, restart with
a deep queue, tombstones."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import pytest
from olievlek.broker.seeding import seed
from olievlek.broker.server import BrokerServer
from olievlek.broker.storage.store import NEVER
from olievlek.node.broker_client import BrokerClient

from olievlek import faults, wire
from olievlek.envelope import body_of
from olievlek.errors import ConfigError, TransportError
from olievlek.storage.sqlite import Database
from olievlek.v1 import broker_pb2, envelope_pb2, local_pb2

from .conftest import NodeFactory, Pki, broker_config
from .envelopes import body, local, open_and_alert, seal_bytes, send_envelope, signer
from .test_delivery import eventually, inbox_rows

pytestmark = pytest.mark.timeout(90)


def _receipt_without_proof(r: broker_pb2.SendResponse) -> broker_pb2.Receipt:
    receipt = broker_pb2.Receipt()
    receipt.CopyFrom(r.receipt)
    receipt.ClearField("audit")
    return receipt


async def test_the_same_envelope_sent_three_times_is_delivered_once_with_three_identical_receipts(
        pki: Pki, broker: BrokerServer, nodes: NodeFactory) -> None:
    raw = seal_bytes(wire.encode(body(key="thrice")), signer(pki, "gent"))
    answers = [await send_envelope(pki, broker.port, raw) for _ in range(3)]
    assert all(a.WhichOneof("outcome") == "receipt" for a in answers)
    receipts = [_receipt_without_proof(a) for a in answers]
    assert receipts[0] == receipts[1] == receipts[2]
    assert {a.receipt.audit.leaf_index for a in answers} == {answers[0].receipt.audit.leaf_index}  # one decision
    antwerpen = await nodes.start("antwerpen", broker.port)
    await eventually(lambda: _rows(antwerpen, 1))
    await asyncio.sleep(0.3)
    assert len(await inbox_rows(antwerpen)) == 1
    assert broker.service is not None
    acks = await broker.service.store.db.fetchall("SELECT outcome FROM acks")
    assert acks == [("stored",)]


async def _rows(node: object, n: int) -> bool:
    return len(await inbox_rows(node)) >= n  # type: ignore[arg-type]


async def test_a_batch_is_answered_per_envelope_in_order_and_shares_one_commit(pki: Pki, broker: BrokerServer) -> None:
    s = signer(pki, "gent")
    good = [seal_bytes(wire.encode(body(key=f"batch{i}")), s) for i in range(3)]
    bad = seal_bytes(wire.encode(body(key="batchbad")), s, flip_signature=True)
    assert broker.service is not None
    before = broker.service.committer.batches
    client = BrokerClient(f"127.0.0.1:{broker.port}", pki.tls("gent"))
    try:
        answers = await client.send_batch([good[0], bad, good[1], good[2]])
    finally:
        await client.close()
    assert [a.WhichOneof("outcome") for a in answers] == ["receipt", "refusal", "receipt", "receipt"]
    assert answers[1].refusal.code == broker_pb2.REFUSAL_CODE_BAD_SIGNATURE
    assert answers[0].receipt.audit.head == answers[3].receipt.audit.head  # the accepted ones: one commit
    # Sequence numbers per recipient follow the batch's order: 1, 2, 3 for Antwerpen.
    queued = await broker.service.store.pending("antwerpen", 0, 10)
    assert [q.seq for q in queued] == [1, 2, 3]
    assert [q.payload for q in queued] == [good[0], good[1], good[2]]
    assert broker.service.committer.batches - before <= 2  # the accepts, and the refusal's own leaf


async def test_sequence_numbers_are_per_recipient(pki: Pki, broker: BrokerServer) -> None:
    s = signer(pki, "gent")
    for i, to in enumerate(["antwerpen", "leuven", "antwerpen", "leuven", "leuven"]):
        await send_envelope(pki, broker.port, seal_bytes(wire.encode(body(key=f"seq{i}", recipients=(to,))), s))
    assert broker.service is not None
    assert [q.seq for q in await broker.service.store.pending("antwerpen", 0, 10)] == [1, 2]
    assert [q.seq for q in await broker.service.store.pending("leuven", 0, 10)] == [1, 2, 3]


class Clock:
    """The broker's clock, moved forward by the test (delivery TTLs are hours)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms


async def test_an_undelivered_alert_expires_and_the_sender_node_shows_it(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory) -> None:
    clock = Clock()
    broker = BrokerServer(broker_config(pki, tmp_path), clock=clock)
    await broker.start()
    try:
        gent = await nodes.start("gent", broker.port)
        sent = await open_and_alert(gent, "85.07.30-033.28")  # Antwerpen is offline
        assert sent.status == local_pb2.OUTBOX_STATUS_ACCEPTED
        assert broker.service is not None
        assert await broker.service.expire_due() == 0  # not yet
        clock.offset_ms = 720 * 3_600_000 + 60_000  # past move-alert's 720 hours, inside the 2 minutes' grace
        assert await broker.service.store.pending("antwerpen", 0, 10, clock()) == []  # no longer delivered
        assert await broker.service.expire_due() == 0  # but not expired while an ack may be on its way
        clock.offset_ms = 721 * 3_600_000
        assert await broker.service.expire_due() == 1

        async def shown_expired() -> bool:
            items = (await local(gent, local_pb2.LocalRequest(outbox_list=local_pb2.OutboxListRequest()))
                     ).outbox_list.items
            return [i.status for i in items] == [local_pb2.OUTBOX_STATUS_EXPIRED]

        await eventually(shown_expired)
        [item] = (await local(gent, local_pb2.LocalRequest(outbox_list=local_pb2.OutboxListRequest()))
                  ).outbox_list.items
        assert item.recipient == "antwerpen" and "move-alert" in item.detail
        # Antwerpen connects later: nothing comes back from the dead.
        antwerpen = await nodes.start("antwerpen", broker.port)
        await asyncio.sleep(0.5)
        assert await inbox_rows(antwerpen) == []
        events = [json.loads(m) for _, _, m, _ in
                  await broker.service.committer.audit.visible_events(None, 0, 100)
                  if m]
        assert [e["recipient"] for e in events if e["event"] == "delivery.expired"] == ["antwerpen"]
    finally:
        for n in list(nodes.running):
            await nodes.stop(n)
        await broker.stop(0)


async def test_a_full_queue_is_refused_clearly_and_nothing_is_dropped(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory) -> None:
    cfg = broker_config(pki, tmp_path)
    broker = BrokerServer(type(cfg)(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__},
                                       "max_queue_per_recipient": 2}))
    await broker.start()
    try:
        s = signer(pki, "gent")
        raws = [seal_bytes(wire.encode(body(key=f"full{i}")), s) for i in range(3)]
        answers = [await send_envelope(pki, broker.port, raw) for raw in raws]
        assert [a.WhichOneof("outcome") for a in answers] == ["receipt", "receipt", "refusal"]
        refusal = answers[2].refusal
        assert refusal.code == broker_pb2.REFUSAL_CODE_QUEUE_FULL and refusal.field == "recipients"
        assert "antwerpen" in refusal.detail and "limit is 2" in refusal.detail
        assert json.loads(refusal.audit.metadata)["reason"] == "queue_full"  # in the audit log too
        antwerpen = await nodes.start("antwerpen", broker.port)  # drains the queue
        await eventually(lambda: _rows(antwerpen, 2))
        again = await send_envelope(pki, broker.port, raws[2])  # the sender's retry now goes through
        assert again.WhichOneof("outcome") == "receipt"
        await eventually(lambda: _rows(antwerpen, 3))
    finally:
        for n in list(nodes.running):
            await nodes.stop(n)
        await broker.stop(0)


async def test_a_failing_commit_returns_no_receipt_and_the_node_retries(
        pki: Pki, broker: BrokerServer, nodes: NodeFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    gent = await nodes.start("gent", broker.port)
    faults.reset()
    monkeypatch.setenv("OLIEVLEK_FAULT", "broker.before_commit")
    monkeypatch.setenv("OLIEVLEK_FAULT_MODE", "raise")
    monkeypatch.setenv("OLIEVLEK_FAULT_TIMES", "2")
    raw = seal_bytes(wire.encode(body(key="failing")), signer(pki, "gent"))
    with pytest.raises(TransportError):  # the commit failed: no receipt
        await send_envelope(pki, broker.port, raw)
    assert broker.service is not None
    assert await broker.service.store.idempotency("gent", "failing") is None
    # Through the node: the first attempt fails too; the outbox retries and gets its receipt.
    r = await open_and_alert(gent, "85.07.30-033.28")
    assert r.status == local_pb2.OUTBOX_STATUS_ACCEPTED
    row = await gent._store.outbox(r.outbox_id) if gent._store else None
    assert row is not None and row.attempts >= 2
    faults.reset()


async def test_pragma_checks_refuse_a_database_without_wal(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected WAL and synchronous=FULL"):
        await Database.open(Path(":memory:"), [])  # an in-memory database cannot be WAL


async def test_a_broker_restarts_serving_a_queue_of_100000_and_delivers_in_order(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory) -> None:
    s = signer(pki, "gent")
    first = [seal_bytes(wire.encode(body(key=f"deep{i}")), s) for i in range(20)]
    template = seal_bytes(wire.encode(body(key="template")), s)
    broker = BrokerServer(broker_config(pki, tmp_path))
    await broker.start()
    assert broker.service is not None
    items = [(f"deep{i}", raw) for i, raw in enumerate(first)] + [("template", template)] * (100_000 - len(first))
    await seed(broker.service, "antwerpen", "gent", items, int(time.time() * 1000), NEVER)
    await broker.stop(0)
    broker = BrokerServer(broker_config(pki, tmp_path, listen=f"127.0.0.1:{broker.port}"))
    await broker.start()
    try:
        antwerpen = await nodes.start("antwerpen", broker.port)
        await eventually(lambda: _rows(antwerpen, 21), timeout=30)
        rows = await inbox_rows(antwerpen)
        keys = [body_of(r.envelope).idempotency_key for r in rows]
        assert keys[:21] == [f"deep{i}" for i in range(20)] + ["template"]  # in sequence order
    finally:
        for n in list(nodes.running):
            await nodes.stop(n)
        await broker.stop(0)


async def test_an_erased_item_is_not_brought_back_by_a_redelivery(
        pki: Pki, broker: BrokerServer, nodes: NodeFactory) -> None:
    antwerpen = await nodes.start("antwerpen", broker.port)
    raw = seal_bytes(wire.encode(body(key="erased")), signer(pki, "gent"))
    await send_envelope(pki, broker.port, raw)
    await eventually(lambda: _rows(antwerpen, 1))
    assert antwerpen._store is not None
    [row] = await inbox_rows(antwerpen)
    assert await antwerpen._store.erase_inbox_item(row.id, int(time.time() * 1000))
    assert broker.service is not None
    store = broker.service.store
    await seed(broker.service, "antwerpen", "gent", [("erased", raw)], 0, NEVER)
    broker.service.notifier.notify("antwerpen")
    await eventually(lambda: _queue_empty(broker))
    assert await inbox_rows(antwerpen) == []
    acks = await store.db.fetchall("SELECT outcome FROM acks ORDER BY rowid")
    assert [a[0] for a in acks] == ["stored", "duplicate"]


async def _queue_empty(broker: BrokerServer) -> bool:
    assert broker.service is not None
    return await broker.service.store.pending("antwerpen", 0, 1) == []


async def test_an_erasure_notice_never_overtakes_or_lets_in_the_alert_it_erases(
        pki: Pki, broker: BrokerServer, nodes: NodeFactory) -> None:
    """Alert then notice in one delivery batch: the alert is stored, then erased. An older alert about the
    erased pseudonym that arrives after the notice (a late retry) is not stored."""
    from olievlek.v1 import summary_pb2

    from .envelopes import PSEUDONYM, summary

    s = signer(pki, "gent")
    now = int(time.time() * 1000)
    late = seal_bytes(wire.encode(body(key="late", created_at_ms=now - 60_000)), s)
    alert = seal_bytes(wire.encode(body(key="alert", created_at_ms=now - 30_000)), s)
    notice = seal_bytes(wire.encode(envelope_pb2.EnvelopeBody(
        idempotency_key="notice", kind=envelope_pb2.MESSAGE_KIND_ERASURE_NOTICE, sender="gent",
        recipients=["antwerpen"], purpose=envelope_pb2.PURPOSE_ERASURE_PROPAGATION, rule_id="erasure-notice",
        created_at_ms=now, erasure_notice=summary_pb2.ErasureNotice(
            subject_pseudonym=PSEUDONYM, reason=summary_pb2.ERASURE_REASON_RETENTION_ENDED))), s)
    assert summary().subject_pseudonym == PSEUDONYM
    assert broker.service is not None
    store = broker.service.store
    await seed(broker.service, "antwerpen", "gent", [("alert", alert), ("notice", notice), ("late", late)], now,
               NEVER)  # queued while Antwerpen is offline: one batch on reconnect
    antwerpen = await nodes.start("antwerpen", broker.port)
    await eventually(lambda: _queue_drained(broker))
    assert await inbox_rows(antwerpen) == []
    assert antwerpen._store is not None
    acks = await store.db.fetchall("SELECT seq, outcome FROM acks WHERE recipient = 'antwerpen' ORDER BY seq")
    assert acks == [(1, "stored"), (2, "stored"), (3, "duplicate")]  # the late one is refused as erased


async def _queue_drained(broker: BrokerServer) -> bool:
    assert broker.service is not None
    return await broker.service.store.pending("antwerpen", 0, 1) == []


async def test_a_database_of_another_schema_version_is_refused_clearly(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "v.sqlite", ["CREATE TABLE t (n INTEGER)"], version=3)
    await db.close()
    with pytest.raises(ConfigError, match="schema version 3, this build uses version 4"):
        await Database.open(tmp_path / "v.sqlite", [], version=4)
    reopened = await Database.open(tmp_path / "v.sqlite", [], version=3)  # the same version opens
    await reopened.close()


async def test_one_sender_cannot_fill_a_recipients_queue_alone(pki: Pki, tmp_path: Path, policy_dir: Path) -> None:
    cfg = dataclasses.replace(broker_config(pki, tmp_path), max_queue_per_recipient=10, max_queue_per_sender=2)
    broker = BrokerServer(cfg)
    await broker.start()
    try:
        gent, leuven = signer(pki, "gent"), signer(pki, "leuven")
        answers = [await send_envelope(pki, broker.port, seal_bytes(wire.encode(body(key=f"share{i}")), gent))
                   for i in range(3)]
        assert [a.WhichOneof("outcome") for a in answers] == ["receipt", "receipt", "refusal"]
        assert "from you for antwerpen" in answers[2].refusal.detail and "limit is 2" in answers[2].refusal.detail
        from .envelopes import summary

        other_body = body(sender="leuven", key="other", summary_msg=summary(contact_id="leuven-livc"))
        other = await send_envelope(pki, broker.port, seal_bytes(wire.encode(other_body), leuven), "leuven")
        assert other.WhichOneof("outcome") == "receipt"  # another sender still gets through
    finally:
        await broker.stop(0)


async def test_a_full_queue_delays_but_never_reorders_a_senders_alerts(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    from olievlek.node import outbox as outbox_module

    monkeypatch.setattr(outbox_module, "MAX_BACKOFF_S", 0.5)
    cfg = dataclasses.replace(broker_config(pki, tmp_path), max_queue_per_recipient=2)
    broker = BrokerServer(cfg)
    await broker.start()
    try:
        gent = await nodes.start("gent", broker.port)
        for _ in range(5):  # Antwerpen is offline: its queue fills after two
            await open_and_alert(gent, "85.07.30-033.28", no_wait=True)
        assert gent._store is not None

        async def two_accepted() -> bool:
            assert gent._store is not None
            return [r.status for r in await gent._store.all_outbox() if r.kind == "alert.move"].count("accepted") == 2

        await eventually(two_accepted)
        await asyncio.sleep(1.0)  # retries meanwhile are refused QUEUE_FULL, in order
        statuses = [r.status for r in await gent._store.all_outbox() if r.kind == "alert.move"]
        assert statuses == ["accepted"] * 2 + ["pending"] * 3
        antwerpen = await nodes.start("antwerpen", broker.port)
        await eventually(lambda: _rows(antwerpen, 5), timeout=20)
        sent = [r.idem_key for r in await gent._store.all_outbox() if r.kind == "alert.move"]
        got = [body_of(r.envelope).idempotency_key for r in await inbox_rows(antwerpen)]
        assert got == sent
    finally:
        for n in list(nodes.running):
            await nodes.stop(n)
        await broker.stop(0)


async def test_a_sender_learns_when_the_recipient_refuses_its_alert(
        pki: Pki, broker: BrokerServer, nodes: NodeFactory) -> None:
    gent = await nodes.start("gent", broker.port)
    sent = await open_and_alert(gent, "85.07.30-033.28")  # Antwerpen is offline
    assert sent.status == local_pb2.OUTBOX_STATUS_ACCEPTED
    pki.ca.revoke(pki.ca.serials_of("municipality/gent")[1])  # Gent's signing certificate, while in the queue
    await nodes.start("antwerpen", broker.port)

    async def rejected() -> bool:
        items = (await local(gent, local_pb2.LocalRequest(outbox_list=local_pb2.OutboxListRequest()))
                 ).outbox_list.items
        return [i.status for i in items] == [local_pb2.OUTBOX_STATUS_REJECTED]

    await eventually(rejected)
    [item] = (await local(gent, local_pb2.LocalRequest(outbox_list=local_pb2.OutboxListRequest()))).outbox_list.items
    assert item.detail == "antwerpen refused it: bad_signer_certificate"
