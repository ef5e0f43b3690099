"""Closure, retention and erasure across the federation (issue 8 slice), with real in-process servers."""

from __future__ import annotations

import asyncio
import json

import pytest
from olievlek.broker.server import BrokerServer
from olievlek.node.server import NodeServer

from olievlek.errors import LocalApiError
from olievlek.v1 import local_pb2, summary_pb2

from .canary import scan
from .conftest import NodeFactory
from .envelopes import local, open_and_alert
from .test_delivery import eventually, inbox_rows

pytestmark = pytest.mark.timeout(90)
SHORT = {"retention_days": (("default", 0), ("long", 730))}  # closing makes a case due at once


async def _request(node: NodeServer, **kw: object) -> local_pb2.LocalResponse:
    return await local(node, local_pb2.LocalRequest(**kw))  # type: ignore[arg-type]


async def _close(node: NodeServer, case_id: int) -> None:
    await _request(node, case_close=local_pb2.CaseCloseRequest(case_id=case_id))


async def _pseudonym(node: NodeServer, case_id: int) -> bytes:
    assert node._store is not None
    row = await node._store.case(case_id)
    assert row is not None
    return row.pseudonym


async def _settled(node: NodeServer) -> bool:
    assert node._store is not None
    return not [r for r in await node._store.all_outbox() if r.status in ("queued", "pending")]


async def test_a_closed_case_past_retention_is_erased_at_the_holder_and_every_recipient(
        broker: BrokerServer, nodes: NodeFactory) -> None:
    gent = await nodes.start("gent", broker.port, **SHORT)
    antwerpen = await nodes.start("antwerpen", broker.port)
    sent = await open_and_alert(gent, "85.07.30-033.28")
    assert sent.status == local_pb2.OUTBOX_STATUS_ACCEPTED
    case_id = 1
    pseudonym = await _pseudonym(gent, case_id)
    await eventually(lambda: _count(antwerpen, 1))

    await _close(gent, case_id)
    due = await _request(gent, retention_due=local_pb2.RetentionDueRequest(within_days=0))
    assert [i.case_id for i in due.retention_due.items] == [case_id]
    run = await _request(gent, retention_run=local_pb2.RetentionRunRequest())
    assert [(e.case_id, list(e.notified)) for e in run.erasure.erased] == [(case_id, ["antwerpen"])]

    # The holder: the data key is gone, so the identity can never be opened again.
    with pytest.raises(LocalApiError) as erased:
        await _request(gent, case_show=local_pb2.CaseShowRequest(case_id=case_id,
                                                                 purpose=local_pb2.ACCESS_PURPOSE_FOLLOW_UP))
    assert erased.value.remote_code == "decryption" and "erased" in erased.value.message
    assert gent._store is not None
    assert await gent._store.db.fetchall("SELECT wrapped FROM data_keys") == [(None,)]
    # The recipient: the item is erased, only tombstones remain; it acknowledged the notice.
    await eventually(lambda: _count(antwerpen, 0))
    assert antwerpen._store is not None
    assert len(await antwerpen._store.db.fetchall("SELECT * FROM tombstones")) == 2  # the alert and the notice
    await eventually(lambda: _settled(gent))
    # The audit log holds the notice and Antwerpen's acknowledgement of it.
    assert broker.service is not None
    events = [json.loads(m) for _, _, m, _ in
                  await broker.service.committer.audit.visible_events(None, 0, 500)
              if m]
    assert any(e["event"] == "send" and e["kind"] == "erasure.notice" and e["decision"] == "accepted" for e in events)
    await eventually(lambda: _acked(broker, 2))
    # Nothing of the pseudonym is left in the holder's files (database, WAL) once the notice was accepted.
    await nodes.stop(gent)
    assert scan(gent.config.database.parent, {"pseudonym": pseudonym}) == []
    # Positive control: the same scan finds the pseudonym where it is.
    control = gent.config.database.parent / "control.bin"
    control.write_bytes(b"x" + pseudonym)
    assert scan(gent.config.database.parent, {"pseudonym": pseudonym}) == [(control, "pseudonym")]


async def _count(node: NodeServer, n: int) -> bool:
    return len(await inbox_rows(node)) == n


async def _acked(broker: BrokerServer, n: int) -> bool:
    assert broker.service is not None
    rows = await broker.service.store.db.fetchall("SELECT COUNT(*) FROM acks WHERE recipient = 'antwerpen'")
    return int(rows[0][0]) >= n


async def test_an_open_case_needs_confirmation_and_an_extended_case_is_kept(
        broker: BrokerServer, nodes: NodeFactory) -> None:
    gent = await nodes.start("gent", broker.port, **SHORT)
    await open_and_alert(gent, "85.07.30-033.28")
    await open_and_alert(gent, "93.05.18-223.61")
    with pytest.raises(LocalApiError) as refused:
        await _request(gent, subject_erase=local_pb2.EraseRequest(
            case_id=1, reason=summary_pb2.ERASURE_REASON_SUBJECT_REQUEST))
    assert refused.value.remote_code == "case_open" and "--confirm-open" in refused.value.message
    r = await _request(gent, subject_erase=local_pb2.EraseRequest(
        case_id=1, reason=summary_pb2.ERASURE_REASON_SUBJECT_REQUEST, confirm_open=True))
    assert [e.case_id for e in r.erasure.erased] == [1]

    await _close(gent, 2)
    kept = await _request(gent, retention_extend=local_pb2.RetentionExtendRequest(
        case_id=2, days=30, reason=local_pb2.RETENTION_REASON_STILL_FOLLOWED_UP))
    assert kept.retention_due.items[0].retain_until_ms > 0
    run = await _request(gent, retention_run=local_pb2.RetentionRunRequest())
    assert list(run.erasure.erased) == []  # kept: its retention was extended
    due = await _request(gent, retention_due=local_pb2.RetentionDueRequest(within_days=31))
    assert [i.case_id for i in due.retention_due.items] == [2]
    assert gent._store is not None
    assert await gent._store.db.fetchall("SELECT case_id, days, reason FROM retention_extensions") == [
        (2, 30, local_pb2.RETENTION_REASON_STILL_FOLLOWED_UP)]


async def test_a_recipient_offline_during_erasure_erases_after_it_reconnects(
        broker: BrokerServer, nodes: NodeFactory) -> None:
    gent = await nodes.start("gent", broker.port, **SHORT)
    antwerpen = await nodes.start("antwerpen", broker.port)
    await open_and_alert(gent, "85.07.30-033.28")
    await eventually(lambda: _count(antwerpen, 1))
    await nodes.stop(antwerpen)  # offline
    await _close(gent, 1)
    await _request(gent, retention_run=local_pb2.RetentionRunRequest())
    await eventually(lambda: _settled(gent))  # the notice waits at the broker
    await asyncio.sleep(0.2)
    antwerpen = await nodes.start("antwerpen", broker.port)
    await eventually(lambda: _count(antwerpen, 0))
    assert antwerpen._store is not None
    assert await antwerpen._store.db.fetchall("SELECT sender, items FROM received_erasures") == [("gent", 1)]
