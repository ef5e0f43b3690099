"""Receiving a move alert or a handover: pending identification -> match -> accept (a case opens), or
return to sender with a suggestion; the sender sees the outcome. Real in-process servers."""

from __future__ import annotations

import pytest
from olievlek.broker.server import BrokerServer
from olievlek.node.server import NodeServer

from olievlek.envelope import body_of
from olievlek.errors import LocalApiError
from olievlek.identity import OrgKind
from olievlek.v1 import local_pb2, summary_pb2

from .conftest import NodeFactory
from .envelopes import local, open_and_alert
from .test_delivery import eventually, inbox_rows

pytestmark = pytest.mark.timeout(90)
NRN = "85.07.30-033.28"


async def _outcome(node: NodeServer, outcome: str) -> bool:
    items = (await local(node, local_pb2.LocalRequest(outbox_list=local_pb2.OutboxListRequest()))).outbox_list.items
    return bool(items) and items[-1].outcome == outcome


async def _arrived(node: NodeServer, n: int = 1) -> bool:
    return len(await inbox_rows(node)) == n


async def _identify(node: NodeServer) -> local_pb2.IdentifyResponse:
    return (await local(node, local_pb2.LocalRequest(identify=local_pb2.IdentifyRequest(
        identity=local_pb2.Identity(national_number=NRN, given_names="A", family_name="B"))))).identify


async def _decide(node: NodeServer, item_id: int, **kw: object) -> local_pb2.InboxDecisionResponse:
    return (await local(node, local_pb2.LocalRequest(inbox_decide=local_pb2.InboxDecisionRequest(
        item_id=item_id, **kw)))).inbox_decide  # type: ignore[arg-type]


async def test_a_handover_is_identified_accepted_and_the_justice_house_sees_it(
        broker: BrokerServer, nodes: NodeFactory) -> None:
    jh = await nodes.start("jh-antwerpen", broker.port, kind=OrgKind.JUSTICE_HOUSE)
    antwerpen = await nodes.start("antwerpen", broker.port)
    case = await local(jh, local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
        identity=local_pb2.Identity(national_number=NRN, given_names="A", family_name="B"),
        phase=summary_pb2.PHASE_FOLLOW_UP, concerns=[summary_pb2.CONCERN_CATEGORY_ISLAMIST],
        agencies=[summary_pb2.AGENCY_ROLE_JUSTICE_HOUSE])))
    sent = (await local(jh, local_pb2.LocalRequest(handover=local_pb2.HandoverRequest(
        case_id=case.case_open.case_id, destination_nis=11002, expected_year=2027, expected_month=3,
        needs=[summary_pb2.FOLLOW_UP_NEED_HOUSING])))).alert_move
    assert sent.status == local_pb2.OUTBOX_STATUS_ACCEPTED and sent.rule_id == "handover-release", sent
    await eventually(lambda: _arrived(antwerpen))
    [item] = await inbox_rows(antwerpen)
    assert item.kind == "handover" and item.status == "pending_identification"
    with pytest.raises(LocalApiError) as early:
        await _decide(antwerpen, item.id)
    assert early.value.remote_code == "not_identified"
    assert (await _identify(antwerpen)).matched_item_ids == [item.id]
    decided = await _decide(antwerpen, item.id)
    assert decided.status == "accepted" and decided.case_id > 0
    cases = (await local(antwerpen, local_pb2.LocalRequest(case_list=local_pb2.CaseListRequest()))).case_list.cases
    [opened] = [c for c in cases if c.case_id == decided.case_id]
    assert opened.phase == summary_pb2.PHASE_PRE_ANALYSIS and list(opened.concerns) == [
        summary_pb2.CONCERN_CATEGORY_ISLAMIST]
    await eventually(lambda: _outcome(jh, "accepted"))


async def test_a_move_alert_is_returned_with_a_suggestion_and_nothing_of_it_stays(
        broker: BrokerServer, nodes: NodeFactory) -> None:
    gent = await nodes.start("gent", broker.port)
    antwerpen = await nodes.start("antwerpen", broker.port)
    assert (await open_and_alert(gent, NRN)).status == local_pb2.OUTBOX_STATUS_ACCEPTED
    await eventually(lambda: _arrived(antwerpen))
    [item] = await inbox_rows(antwerpen)
    decided = await _decide(antwerpen, item.id, return_it=True, suggested_nis=24062)
    assert decided.status == "returned" and decided.case_id == 0
    assert await inbox_rows(antwerpen) == []  # not ours: only the tombstone stays
    await eventually(lambda: _outcome(gent, "returned"))
    items = (await local(gent, local_pb2.LocalRequest(outbox_list=local_pb2.OutboxListRequest()))).outbox_list.items
    assert "antwerpen suggests NIS 24062" in items[-1].detail


@pytest.mark.parametrize("nis", [23077, 23088, 23027])
async def test_an_intermunicipal_livc_receives_alerts_for_each_municipality_it_serves(
        broker: BrokerServer, nodes: NodeFactory, nis: int) -> None:
    gent = await nodes.start("gent", broker.port)
    zennevallei = await nodes.start("livc-zennevallei", broker.port)
    sent = await open_and_alert(gent, NRN, nis=nis)
    assert sent.status == local_pb2.OUTBOX_STATUS_ACCEPTED and sent.recipient == "livc-zennevallei", sent
    await eventually(lambda: _arrived(zennevallei))


async def test_a_move_alert_is_accepted_and_a_handover_returned(broker: BrokerServer, nodes: NodeFactory) -> None:
    """The other two of the four paths: accept for a move alert, return for a handover."""
    gent = await nodes.start("gent", broker.port)
    jh = await nodes.start("jh-antwerpen", broker.port, kind=OrgKind.JUSTICE_HOUSE)
    antwerpen = await nodes.start("antwerpen", broker.port)
    await open_and_alert(gent, NRN)
    case = await local(jh, local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
        identity=local_pb2.Identity(national_number="93.05.18-223.61", given_names="C", family_name="D"),
        phase=summary_pb2.PHASE_FOLLOW_UP)))
    await local(jh, local_pb2.LocalRequest(handover=local_pb2.HandoverRequest(
        case_id=case.case_open.case_id, destination_nis=11002, expected_year=2027, expected_month=1)))
    await eventually(lambda: _arrived(antwerpen, 2))
    by_kind = {r.kind: r for r in await inbox_rows(antwerpen)}
    assert (await _identify(antwerpen)).matched_item_ids == [by_kind["alert.move"].id]
    accepted = await _decide(antwerpen, by_kind["alert.move"].id)
    assert accepted.case_id > 0
    returned = await _decide(antwerpen, by_kind["handover"].id, return_it=True)
    assert returned.status == "returned"
    await eventually(lambda: _outcome(gent, "accepted"))
    await eventually(lambda: _outcome(jh, "returned"))


async def _subjects(node: NodeServer) -> list[tuple[object, ...]]:
    assert node._store is not None
    return await node._store.db.fetchall("SELECT id FROM subjects")


async def test_what_the_recipient_entered_to_match_goes_with_a_returned_item(
        broker: BrokerServer, nodes: NodeFactory) -> None:
    from .canary import scan

    gent = await nodes.start("gent", broker.port)
    antwerpen = await nodes.start("antwerpen", broker.port)
    await open_and_alert(gent, NRN)
    await eventually(lambda: _arrived(antwerpen))
    [item] = await inbox_rows(antwerpen)
    assert (await _identify(antwerpen)).matched_item_ids == [item.id]
    assert len(await _subjects(antwerpen)) == 1
    pseudonym = (await inbox_rows(antwerpen))[0].envelope
    await _decide(antwerpen, item.id, return_it=True)
    assert await _subjects(antwerpen) == []  # the matching subject is shredded with the item
    assert antwerpen._store is not None
    assert await antwerpen._store.db.fetchall("SELECT wrapped FROM data_keys") == [(None,)]
    await nodes.stop(antwerpen)
    summary_pseudonym = await _summary_pseudonym(pseudonym)
    assert scan(antwerpen.config.database.parent, {"pseudonym": summary_pseudonym}) == []


async def _summary_pseudonym(envelope: bytes) -> bytes:
    return bytes(body_of(envelope).move_alert.summary.subject_pseudonym)


async def test_each_accepted_case_has_its_own_subject_and_erasing_it_leaves_nothing(
        broker: BrokerServer, nodes: NodeFactory) -> None:
    gent = await nodes.start("gent", broker.port)
    antwerpen = await nodes.start("antwerpen", broker.port)
    await open_and_alert(gent, NRN)
    await open_and_alert(gent, NRN)  # two alerts about the same person
    await eventually(lambda: _arrived(antwerpen, 2))
    first, second = await inbox_rows(antwerpen)
    assert sorted((await _identify(antwerpen)).matched_item_ids) == [first.id, second.id]
    one, two = (await _decide(antwerpen, first.id)).case_id, (await _decide(antwerpen, second.id)).case_id
    erased = await local(antwerpen, local_pb2.LocalRequest(subject_erase=local_pb2.EraseRequest(
        case_id=one, reason=summary_pb2.ERASURE_REASON_SUBJECT_REQUEST, confirm_open=True)))
    assert [e.case_id for e in erased.erasure.erased] == [one]
    shown = await local(antwerpen, local_pb2.LocalRequest(case_show=local_pb2.CaseShowRequest(
        case_id=two, purpose=local_pb2.ACCESS_PURPOSE_FOLLOW_UP)))
    assert shown.case_show.identity.national_number == "85073003328"  # the other case is untouched
    assert [r.id for r in await inbox_rows(antwerpen)] == [second.id]  # the erased case's item went with it
