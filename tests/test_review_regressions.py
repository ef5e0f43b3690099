"""Regressions found by review: revocation on open streams, cancelled transactions, long outages,
number-like tokens, top-level unknown fields, our own expiry check, denies with mixed recipients."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from olievlek.broker.server import BrokerServer
from olievlek.node.broker_client import BrokerClient

from olievlek import wire
from olievlek.envelope import body_of
from olievlek.errors import IdentityError
from olievlek.identity import OrgId, OrgIdentity, OrgKind
from olievlek.policy import Bundle, Request
from olievlek.storage.sqlite import Database
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2

from .conftest import FLANDERS, NodeFactory, Pki
from .envelopes import body, seal_bytes, send_envelope, signer, summary

pytestmark = pytest.mark.timeout(60)


async def test_revocation_ends_an_open_stream_before_the_next_delivery(pki: Pki, broker: BrokerServer) -> None:
    client = BrokerClient(f"127.0.0.1:{broker.port}", pki.tls("antwerpen"))
    try:
        stream = client.subscribe()
        await stream.wait_for_connection()
        await asyncio.sleep(0.2)
        for serial in pki.ca.serials_of("municipality/antwerpen"):
            pki.ca.revoke(serial)
        resp = await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        assert resp.WhichOneof("outcome") == "receipt"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(stream.read(), 5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and "revoked" in str(info.value.details())
        assert broker.service is not None
        assert len(await broker.service.store.pending("antwerpen", 0, 10)) == 1  # kept, not delivered
    finally:
        await client.close()


async def test_a_cancelled_transaction_leaves_the_connection_usable(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.sqlite", ["CREATE TABLE t (n INTEGER)"])

    async def slow() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (1)")
            await asyncio.sleep(10)

    for delay in (0, 0.001, 0.05):  # cancel at BEGIN, around the insert, and while sleeping
        task = asyncio.create_task(slow())
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (2)")
    assert await db.fetchall("SELECT n FROM t") == [(2,), (2,), (2,)]  # nothing of the cancelled ones
    await db.close()


async def test_an_alert_written_before_a_long_outage_is_resent_not_lost(
    pki: Pki, broker: BrokerServer, nodes: NodeFactory
) -> None:
    gent = await nodes.start("gent", broker.port)
    assert gent._store is not None
    old = body(created_at_ms=int(time.time() * 1000) - 20 * 60 * 1000)  # sealed 20 minutes ago
    raw = seal_bytes(wire.encode(old), signer(pki, "gent"))
    store = gent._store

    async def intent(tx: Any) -> int:
        return await store.add_intent_txn(tx, old.idempotency_key, "alert.move", "antwerpen", "move-alert", {}, 0)

    outbox_id = await store.writer.write(intent)
    await store.seal_outbox([(outbox_id, raw)], [])  # as if built before the outage
    assert gent.outbox is not None
    gent.outbox.kick()
    deadline = asyncio.get_running_loop().time() + 20
    gent_outbox = gent._store
    while (row := await gent_outbox.outbox(outbox_id)) is not None and row.status == "pending":
        assert asyncio.get_running_loop().time() < deadline, "never accepted"
        await asyncio.sleep(0.1)
        assert not any(task.done() for task in gent._tasks)  # the workers stay alive
    assert row is not None and row.status == "accepted"
    resent = body_of(row.envelope)
    assert resent.idempotency_key == old.idempotency_key and resent.created_at_ms > old.created_at_ms
    assert resent.move_alert == old.move_alert


def _future() -> bytes:
    return wire.encode(body(created_at_ms=int(time.time() * 1000) + 6 * 60 * 1000))


def _top_level_unknown_envelope(pki: Pki) -> bytes:
    return seal_bytes(wire.encode(body()), signer(pki, "gent")) + b"\x78\x01"


@pytest.mark.parametrize(("make", "code"), [
    (lambda pki: seal_bytes(_future(), signer(pki, "gent")), "REFUSAL_CODE_STALE"),
    (_top_level_unknown_envelope, "REFUSAL_CODE_UNKNOWN_FIELD"),
    (lambda pki: seal_bytes(wire.encode(body(summary_msg=summary(subject_pseudonym=bytes(31)))),
                            signer(pki, "gent")), "REFUSAL_CODE_INVALID_FIELD"),
    (lambda pki: seal_bytes(wire.encode(body(rule_id="85073003328")), signer(pki, "gent")),
     "REFUSAL_CODE_INVALID_FIELD"),
    (lambda pki: seal_bytes(wire.encode(body(key="85.07.30-033.28")), signer(pki, "gent")),
     "REFUSAL_CODE_INVALID_FIELD"),
], ids=["created-in-the-future", "unknown-field-in-envelope", "pseudonym-31-bytes", "rule-id-is-a-number",
        "key-is-a-formatted-number"])
async def test_more_refusals(pki: Pki, broker: BrokerServer, make, code: str) -> None:
    resp = await send_envelope(pki, broker.port, make(pki))
    assert broker_pb2.RefusalCode.Name(resp.refusal.code) == code, resp
    assert "85073003328" not in resp.refusal.detail and "033.28" not in resp.refusal.detail
    assert broker.service is not None
    assert all("0730" not in d.rule_id for d in await broker.service.store.decisions())


async def test_unknown_field_in_send_request_is_refused(pki: Pki, broker: BrokerServer) -> None:
    from olievlek import transport
    from olievlek.v1 import broker_pb2_grpc

    req = broker_pb2.SendRequest()
    req.ParseFromString(broker_pb2.SendRequest(envelope=b"x").SerializeToString() + b"\x78\x01")
    async with transport.secure_channel(f"127.0.0.1:{broker.port}", pki.tls("gent")) as channel:
        resp = await broker_pb2_grpc.BrokerStub(channel).Send(req, timeout=5)
    assert resp.refusal.code == broker_pb2.REFUSAL_CODE_UNKNOWN_FIELD


def test_our_own_check_refuses_an_expired_certificate(pki: Pki) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    creds = pki.ca.issue_org(OrgIdentity(OrgKind.MUNICIPALITY, OrgId("lapsed")), not_before=past,
                             not_after=past + dt.timedelta(days=1))
    trust = TrustAnchor.load(pki.root / "ca.pem", pki.root / "crl.pem")
    with pytest.raises(IdentityError, match="expired"):
        trust.verify_tls_peer(creds.tls_cert.read_bytes())


def test_a_deny_applies_when_any_recipient_matches() -> None:
    bundle = Bundle.load(FLANDERS)
    # move-alert cannot reach the federal liaison, even alongside a municipality.
    d = bundle.decide(Request(kind="alert.move", sender=OrgId("gent"),
                              recipients=(OrgId("antwerpen"), OrgId("fed-liaison")), rule_id="move-alert",
                              phase="follow_up"))
    assert not d.allowed
    assert d.reason == "denied_by_rule", d.message
