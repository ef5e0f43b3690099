"""The federal liaison: hit/no-hit from the broker's directory, holder-approved disclosure, misuse limits.

Real broker, two pseudonymiser operators and nodes (holders gent and antwerpen,
the liaison fed-liaison) on loopback with mTLS; everything through the nodes'
local API as the CLI sends it, or the broker's gRPC API where a test plays a
misbehaving organisation.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
from pathlib import Path

import pytest
from olievlek.node.broker_client import BrokerClient
from olievlek.node.server import NodeServer

from olievlek import envelope, wire
from olievlek.directory import NO_HIT, ROW_BYTES, covered, needle, sign_statement
from olievlek.errors import LocalApiError, WireError
from olievlek.identity import OrgKind
from olievlek.normalise import nrn_input
from olievlek.v1 import broker_pb2, envelope_pb2, local_pb2, summary_pb2

from .canary import forms, scan
from .conftest import NodeFactory, Pki
from .envelopes import local, signer, valid_nrn

pytestmark = pytest.mark.timeout(120)

BASIS = "law-30-07-2018-art5"
FILE_REF = "fed-2026-42"
YEAR_MS = 365 * 86_400_000


def nrn(yymmdd: str, serial: str) -> str:
    """A valid national register number (born before 2000: 97 - first nine digits mod 97)."""
    return valid_nrn(yymmdd + serial)


KNOWN_COVERED = nrn("850730", "033")
KNOWN_UNCOVERED = nrn("900101", "123")
UNKNOWN = nrn("770412", "456")
BAD_CHECK = KNOWN_COVERED[:9] + f"{(int(KNOWN_COVERED[9:]) + 1) % 100:02d}"


async def _settle(*nodes: NodeServer, timeout: float = 20.0) -> None:
    """Until every node's outbox has an answer for everything (directory changes included)."""
    deadline = time.monotonic() + timeout
    for node in nodes:
        assert node._store is not None
        while (await node._store.outbox_stats())[0]:
            assert time.monotonic() < deadline, f"{node.config.org_id}: outbox not settled"
            await asyncio.sleep(0.05)


async def _ok(node: NodeServer, **request: object) -> local_pb2.LocalResponse:
    return await local(node, local_pb2.LocalRequest(**request))  # type: ignore[arg-type]


async def _error(node: NodeServer, **request: object) -> LocalApiError:
    with pytest.raises(LocalApiError) as caught:
        await local(node, local_pb2.LocalRequest(**request))  # type: ignore[arg-type]
    return caught.value


async def _open(node: NodeServer, number: str, phase: int = summary_pb2.PHASE_FOLLOW_UP) -> int:
    ident = local_pb2.Identity(national_number=number, given_names="Canary", family_name="Bird")
    r = await _ok(node, case_open=local_pb2.CaseOpenRequest(
        identity=ident, phase=phase, concerns=[summary_pb2.CONCERN_CATEGORY_RIGHT_WING],
        risk_level=summary_pb2.RISK_LEVEL_HIGH, agencies=[summary_pb2.AGENCY_ROLE_POLICE]))
    return r.case_open.case_id


async def _agree(node: NodeServer, case_id: int) -> int:
    r = await _ok(node, agreement=local_pb2.AgreementRequest(agreement=local_pb2.Agreement(
        case_id=case_id, recipient_kinds=["federal_liaison"], purposes=["hit_no_hit_check", "disclosure_on_request"],
        valid_until_ms=int(time.time() * 1000) + YEAR_MS, evidence_ref="gent-2026-0042")))
    return r.agreement.agreements[-1].agreement_id


async def _query(liaison: NodeServer, *numbers: str) -> list[local_pb2.LiaisonRow]:
    r = await _ok(liaison, liaison_query=local_pb2.LiaisonQueryRequest(
        identities=[local_pb2.Identity(national_number=n) for n in numbers], purpose="hit_no_hit_check",
        legal_basis=BASIS, file_ref=FILE_REF))
    return list(r.liaison_query.rows)


async def _events(pki: Pki, port: int, org: str) -> list[dict[str, object]]:
    client = BrokerClient(f"127.0.0.1:{port}", pki.tls(org))
    try:
        resp = await client.audit_events(0, 10_000)
    finally:
        await client.close()
    return [json.loads(e.metadata) for e in resp.events if e.metadata]


async def _liaison(nodes: NodeFactory, port: int, **settings: object) -> NodeServer:
    return await nodes.start("fed-liaison", port, kind=OrgKind.FEDERAL_LIAISON, retention_days=((BASIS, 90),),
                             **settings)


@pytest.fixture
async def federation(broker, nodes: NodeFactory) -> tuple[NodeServer, NodeServer, int]:  # type: ignore[no-untyped-def]
    """Gent holds one person with an agreement and one without; both registered; the liaison is up."""
    gent = await nodes.start("gent", broker.port, disclosure_expiry_s=30.0)
    covered_case = await _open(gent, KNOWN_COVERED)
    await _agree(gent, covered_case)
    await _open(gent, KNOWN_UNCOVERED)
    await _open(gent, nrn("010203", "004"), phase=summary_pb2.PHASE_SIGNAL)  # a signal is not registered
    await _settle(gent)
    liaison = await _liaison(nodes, broker.port)
    return gent, liaison, broker.port


async def test_three_outcomes_from_the_directory_alone_with_every_holder_offline(
        federation: tuple[NodeServer, NodeServer, int], nodes: NodeFactory, pki: Pki) -> None:
    gent, liaison, port = federation
    await nodes.stop(gent)  # no holder is running: the answers cannot come from a round trip to one
    rows = await _query(liaison, KNOWN_COVERED, KNOWN_UNCOVERED, UNKNOWN, BAD_CHECK)
    assert [r.outcome for r in rows] == [local_pb2.QUERY_OUTCOME_HIT, local_pb2.QUERY_OUTCOME_NO_HIT,
                                         local_pb2.QUERY_OUTCOME_NO_HIT, local_pb2.QUERY_OUTCOME_INVALID]
    assert list(rows[0].contacts) == ["gent-livc"] and rows[0].hit_id
    assert not rows[1].contacts and not rows[2].contacts
    assert "check" in rows[3].error and BAD_CHECK not in rows[3].error  # says why, never what
    # The holder's side sees the decision about the known-but-not-covered person; the liaison does not.
    holder = [e for e in await _events(pki, port, "gent") if e.get("event") == "query.holder"]
    # Who asked, why and on which basis; never the querier's file reference (a planted entry learns less).
    assert holder == [{"event": "query.holder", "holder": "gent", "sender": "fed-liaison", "rule": "hit-query",
                       "purpose": "hit_no_hit_check", "legal_basis": BASIS, "hits": 1, "not_covered": 1}]
    mine = await _events(pki, port, "fed-liaison")
    assert not [e for e in mine if e.get("event") == "query.holder"]
    [query] = [e for e in mine if e.get("event") == "query"]
    assert (query["rows"], query["hits"], query["legal_basis"], query["file_ref"]) == (3, 1, BASIS, FILE_REF)
    officer = [e for e in await _events(pki, port, "vvsg") if e.get("event") in ("query", "query.holder")]
    assert {e["event"]: e.get("file_ref") for e in officer} == {"query": FILE_REF, "query.holder": None}


async def test_answers_have_the_same_size_whatever_they_say(
        federation: tuple[NodeServer, NodeServer, int], pki: Pki) -> None:
    _gent, liaison, port = federation
    assert liaison._pseudonymiser is not None
    pseudonyms = (await liaison._pseudonymiser.pseudonymise(
        [nrn_input(n) for n in (KNOWN_COVERED, KNOWN_UNCOVERED, UNKNOWN)])).pseudonyms
    me = signer(pki, "fed-liaison")
    client = BrokerClient(f"127.0.0.1:{port}", pki.tls("fed-liaison"))
    try:
        sizes, rows = [], []
        for p in pseudonyms:  # hit, known but not covered, unknown: one query each
            answer = (await client.query(_hit_query(me, [bytes(p)]))).answer
            sizes.append(len(wire.encode(answer.result)))
            rows.append(answer.result.rows[0])
    finally:
        await client.close()
    assert [r[0] for r in rows] == [1, 0, 0]
    assert {len(r) for r in rows} == {ROW_BYTES}
    assert len(set(sizes)) == 1, sizes


def _hit_query(me: envelope.Signer, pseudonyms: list[bytes], sender: str = "fed-liaison",
               rule: str = "hit-query") -> bytes:
    return envelope.seal(envelope_pb2.EnvelopeBody(
        idempotency_key=wire.new_token(), kind=envelope_pb2.MESSAGE_KIND_QUERY_HIT, sender=sender,
        purpose=envelope_pb2.PURPOSE_HIT_NO_HIT_CHECK, rule_id=rule, created_at_ms=int(time.time() * 1000),
        hit_query=summary_pb2.HitQuery(subject_pseudonyms=pseudonyms, file_ref=FILE_REF, legal_basis=BASIS)), me)


async def _wait_inbox(node: NodeServer, kind: str, count: int = 1) -> list[local_pb2.InboxItem]:
    deadline = time.monotonic() + 20
    while True:
        items = [i for i in (await _ok(node, inbox_list=local_pb2.InboxListRequest())).inbox_list.items
                 if i.kind == kind]
        if len(items) >= count:
            return items
        assert time.monotonic() < deadline, f"{node.config.org_id}: no {kind}"
        await asyncio.sleep(0.1)


async def _ask(liaison: NodeServer, hit_id: int, *fields: int) -> local_pb2.AlertMoveResponse:
    r = await _ok(liaison, disclosure_ask=local_pb2.DisclosureAskRequest(
        hit_id=hit_id, fields=list(fields), purpose="disclosure_on_request", legal_basis=BASIS, file_ref=FILE_REF))
    return r.alert_move


F = summary_pb2


async def test_disclosure_approved_with_fewer_fields_denied_and_expired(
        federation: tuple[NodeServer, NodeServer, int], nodes: NodeFactory, broker) -> None:  # type: ignore[no-untyped-def]
    gent, liaison, port = federation
    [hit, *_] = await _query(liaison, KNOWN_COVERED)
    asked = await _ask(liaison, hit.hit_id, F.DISCLOSABLE_FIELD_PHASE, F.DISCLOSABLE_FIELD_CONCERNS,
                       F.DISCLOSABLE_FIELD_RISK_LEVEL)
    assert asked.status == local_pb2.OUTBOX_STATUS_ACCEPTED, asked
    [request] = await _wait_inbox(gent, "disclosure.request")
    assert request.status == "pending_decision" and request.file_ref == FILE_REF and request.legal_basis == BASIS
    assert list(request.fields) == [F.DISCLOSABLE_FIELD_PHASE, F.DISCLOSABLE_FIELD_CONCERNS,
                                    F.DISCLOSABLE_FIELD_RISK_LEVEL]
    # Never more than asked, never a field the rule keeps from federal kinds.
    err = await _error(gent, disclosure_decide=local_pb2.DisclosureDecideRequest(
        item_id=request.item_id, approve=True, fields=[F.DISCLOSABLE_FIELD_AGENCIES]))
    assert err.remote_code == "not_requested" and "agencies" in str(err)
    sent = await _ok(gent, disclosure_decide=local_pb2.DisclosureDecideRequest(
        item_id=request.item_id, approve=True, fields=[F.DISCLOSABLE_FIELD_PHASE]))
    assert sent.alert_move.status == local_pb2.OUTBOX_STATUS_ACCEPTED, sent.alert_move
    [answer] = await _wait_inbox(liaison, "disclosure.response")
    assert answer.decision == F.DISCLOSURE_DECISION_APPROVED and list(answer.fields) == [F.DISCLOSABLE_FIELD_PHASE]
    assert answer.summary.phase == F.PHASE_FOLLOW_UP and answer.summary.contact_id == "gent-livc"
    assert not answer.summary.concerns and not answer.summary.risk_level and not answer.summary.agencies

    # Denied: a reason code and nothing else.
    await _ask(liaison, hit.hit_id, F.DISCLOSABLE_FIELD_CONCERNS)
    pending = [i for i in await _wait_inbox(gent, "disclosure.request", 2) if i.status == "pending_decision"]
    await _ok(gent, disclosure_decide=local_pb2.DisclosureDecideRequest(
        item_id=pending[0].item_id, reason=F.DENIAL_REASON_DISPROPORTIONATE))
    denied = (await _wait_inbox(liaison, "disclosure.response", 2))[1]
    assert denied.decision == F.DISCLOSURE_DECISION_DENIED and denied.reason == F.DENIAL_REASON_DISPROPORTIONATE
    assert not denied.fields and not denied.summary.phase and not denied.summary.concerns

    # Expired: the holder's node denies it itself and nobody can approve it any more.
    await nodes.stop(gent)
    gent = await nodes.start("gent", port, disclosure_expiry_s=0.5)
    await _ask(liaison, hit.hit_id, F.DISCLOSABLE_FIELD_PHASE)
    deadline = time.monotonic() + 20
    while not (late := [i for i in (await _ok(gent, inbox_list=local_pb2.InboxListRequest())).inbox_list.items
                        if i.kind == "disclosure.request" and i.status not in ("approved", "denied")]):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.6)
    err = await _error(gent, disclosure_decide=local_pb2.DisclosureDecideRequest(item_id=late[0].item_id,
                                                                                 approve=True))
    assert err.remote_code == "not_pending" and "expired" in str(err)
    expired = (await _wait_inbox(liaison, "disclosure.response", 3))[2]
    assert expired.decision == F.DISCLOSURE_DECISION_DENIED and expired.reason == F.DENIAL_REASON_EXPIRED


async def test_withdrawn_agreement_means_no_hit_and_erasure_of_what_was_disclosed(
        federation: tuple[NodeServer, NodeServer, int]) -> None:
    gent, liaison, _port = federation
    [hit] = await _query(liaison, KNOWN_COVERED)
    await _ask(liaison, hit.hit_id, F.DISCLOSABLE_FIELD_PHASE)
    [request] = await _wait_inbox(gent, "disclosure.request")
    await _ok(gent, disclosure_decide=local_pb2.DisclosureDecideRequest(item_id=request.item_id, approve=True))
    await _wait_inbox(liaison, "disclosure.response")
    case_id = (await _ok(gent, case_list=local_pb2.CaseListRequest())).case_list.cases[0].case_id
    [agreement] = (await _ok(gent, agreement=local_pb2.AgreementRequest(
        list=True, agreement=local_pb2.Agreement(case_id=case_id)))).agreement.agreements
    await _ok(gent, agreement=local_pb2.AgreementRequest(
        withdraw=True, agreement=local_pb2.Agreement(agreement_id=agreement.agreement_id)))
    await _settle(gent)
    assert [r.outcome for r in await _query(liaison, KNOWN_COVERED)] == [local_pb2.QUERY_OUTCOME_NO_HIT]
    deadline = time.monotonic() + 20
    while [i for i in (await _ok(liaison, inbox_list=local_pb2.InboxListRequest())).inbox_list.items
           if i.kind == "disclosure.response"]:
        assert time.monotonic() < deadline, "the disclosed data was not erased at the liaison"
        await asyncio.sleep(0.1)
    err = await _error(liaison, disclosure_ask=local_pb2.DisclosureAskRequest(
        hit_id=hit.hit_id, fields=[F.DISCLOSABLE_FIELD_PHASE], purpose="disclosure_on_request",
        legal_basis=BASIS, file_ref=FILE_REF))
    assert err.remote_code == "unknown_hit"  # the hit went with the erasure


async def test_closing_a_case_withdraws_its_entry(federation: tuple[NodeServer, NodeServer, int]) -> None:
    gent, liaison, _port = federation
    case_id = (await _ok(gent, case_list=local_pb2.CaseListRequest())).case_list.cases[0].case_id
    await _ok(gent, case_close=local_pb2.CaseCloseRequest(case_id=case_id))
    await _settle(gent)
    assert [r.outcome for r in await _query(liaison, KNOWN_COVERED)] == [local_pb2.QUERY_OUTCOME_NO_HIT]


async def test_who_may_ask_and_what_nobody_can_list(
        federation: tuple[NodeServer, NodeServer, int], nodes: NodeFactory, pki: Pki) -> None:
    gent, _liaison_node, port = federation
    antwerpen = await nodes.start("antwerpen", port)
    err = await _error(antwerpen, liaison_query=local_pb2.LiaisonQueryRequest(
        identities=[local_pb2.Identity(national_number=KNOWN_COVERED)], purpose="hit_no_hit_check",
        legal_basis="default", file_ref=FILE_REF))
    assert err.remote_code == "not_a_querier"
    # A municipality's own certificate and signature cannot query the directory as a liaison.
    client = BrokerClient(f"127.0.0.1:{port}", pki.tls("antwerpen"))
    try:
        refused = (await client.query(_hit_query(signer(pki, "antwerpen"), [bytes(32)], sender="antwerpen"))).refusal
        assert refused.code == broker_pb2.REFUSAL_CODE_POLICY_DENIED and refused.rule_id == "hit-query"
        assert "municipality" in refused.detail or "antwerpen" in refused.detail
    finally:
        await client.close()
    # Only a holder lists its own entries; the liaison gets nothing, whoever's pseudonyms it asks about.
    for org, expected in (("gent", 2), ("fed-liaison", 0), ("antwerpen", 0)):
        c = BrokerClient(f"127.0.0.1:{port}", pki.tls(org))
        try:
            assert len((await c.directory_entries(b"", 1000)).entries) == expected, org
        finally:
            await c.close()
    # The holder re-verifies what the broker keeps against what it registered.
    verified = (await _ok(gent, directory_verify=local_pb2.DirectoryVerifyRequest())).directory_verify
    assert (verified.entries, verified.expected, list(verified.problems)) == (2, 2, [])
    assert verified.statements >= 4  # lawful-basis flags for both entries, agreement flags for one


async def test_a_coverage_flag_with_a_bad_signature_is_ignored_and_logged(
        federation: tuple[NodeServer, NodeServer, int], pki: Pki) -> None:
    _gent, _liaison_node, port = federation
    me = signer(pki, "gent")
    pseudonym = bytes([1]) + bytes(range(31))
    statement = summary_pb2.CoverageStatement(
        subject_pseudonym=pseudonym, holder="gent", recipient_kind="federal_liaison", purpose="hit_no_hit_check",
        rule_id="hit-query", expires_at_ms=int(time.time() * 1000) + YEAR_MS)
    good = sign_statement(me.key, statement)
    bad = summary_pb2.SignedCoverage(statement=good.statement, signature=bytes([good.signature[0] ^ 1])
                                     + good.signature[1:])
    body = envelope_pb2.EnvelopeBody(
        idempotency_key=wire.new_token(), kind=envelope_pb2.MESSAGE_KIND_DIRECTORY_REGISTER, sender="gent",
        purpose=envelope_pb2.PURPOSE_REFERENCE_DIRECTORY, rule_id="directory-register",
        created_at_ms=int(time.time() * 1000),
        directory_register=summary_pb2.DirectoryRegister(subject_pseudonym=pseudonym, contact_id="gent-livc",
                                                         coverage=[bad]))
    client = BrokerClient(f"127.0.0.1:{port}", pki.tls("gent"))
    try:
        receipt = (await client.send(envelope.seal(body, me))).receipt
        assert receipt.rule_id == "directory-register" and not receipt.recipients  # kept, never queued
        entries = {bytes(e.subject_pseudonym): e for e in (await client.directory_entries(b"", 1000)).entries}
        assert not entries[pseudonym].coverage  # the bad flag was not kept
    finally:
        await client.close()
    leaf = json.loads(receipt.audit.metadata)
    assert leaf["coverage"] == 0 and "signature does not verify" in leaf["ignored"][0]
    answer = (await BrokerClient(f"127.0.0.1:{port}", pki.tls("fed-liaison")).query(
        _hit_query(signer(pki, "fed-liaison"), [pseudonym]))).answer
    assert answer.result.rows[0][0] == 0  # not covered: no hit


async def test_budgets_bound_each_query_and_each_day(broker, nodes: NodeFactory, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    # jh-antwerpen: 100 per query, 500 per day (flanders bundle).
    me = signer(pki, "jh-antwerpen")
    client = BrokerClient(f"127.0.0.1:{broker.port}", pki.tls("jh-antwerpen"))

    def q(n: int) -> bytes:
        return _hit_query(me, [bytes([1, i % 256, i // 256]) + bytes(29) for i in range(n)], sender="jh-antwerpen")
    try:
        too_big = (await client.query(q(101))).refusal
        assert too_big.code == broker_pb2.REFUSAL_CODE_BUDGET_EXCEEDED and "at most 100" in too_big.detail
        for _ in range(5):
            assert len((await client.query(q(100))).answer.result.rows) == 100
        over = (await client.query(q(1))).refusal
        assert over.code == broker_pb2.REFUSAL_CODE_BUDGET_EXCEEDED and "500" in over.detail
        assert json.loads(over.audit.metadata)["reason"] == "budget_exceeded"  # refused and logged
    finally:
        await client.close()


async def test_identifiers_never_leave_the_liaison_in_clear(
        federation: tuple[NodeServer, NodeServer, int], tmp_path: Path, log_file: Path) -> None:
    _gent, liaison, _port = federation
    canary = nrn("661122", "987")
    await _query(liaison, canary, KNOWN_COVERED)
    needles = forms(canary)
    leaks = [(p, f) for p, f in scan(tmp_path, needles) if liaison.config.database.parent not in p.parents]
    assert leaks == [], leaks
    # Positive control: the scanner finds the canary where it is.
    control = tmp_path / "control.bin"
    control.write_bytes(b"x" + needles["formatted"])
    assert scan(tmp_path, needles) != []
    control.unlink()


def test_covers_string_reads_expiry() -> None:
    covers = "federal_liaison/hit_no_hit_check/hit-query@2000;justice_house/hit_no_hit_check/hit-query@9000"
    assert covered(covers, needle("justice_house", "hit_no_hit_check", "hit-query"), 1000)
    assert not covered(covers, needle("federal_liaison", "hit_no_hit_check", "hit-query"), 2000)
    assert not covered(covers, needle("federal_liaison", "disclosure_on_request", "hit-query"), 0)



def test_wire_bounds_of_queries_and_answers() -> None:
    p = bytes(range(32))
    wire.validate(summary_pb2.QueryResult(rows=[NO_HIT, NO_HIT]))  # equal answer rows are the point
    with pytest.raises(WireError, match="duplicate items"):
        wire.validate(summary_pb2.HitQuery(subject_pseudonyms=[p, p], file_ref=FILE_REF, legal_basis=BASIS))
    with pytest.raises(WireError, match="exactly 32 bytes, got 31"):
        wire.validate(summary_pb2.HitQuery(subject_pseudonyms=[p, p[:31]], file_ref=FILE_REF, legal_basis=BASIS))
    with pytest.raises(WireError, match="exactly 129 bytes"):
        wire.validate(summary_pb2.QueryResult(rows=[NO_HIT[:-1]]))


# -- regressions from the review of the first version --------------------------------------------------

async def test_the_callers_leaf_index_moves_the_same_whether_a_person_is_known_or_not(
        federation: tuple[NodeServer, NodeServer, int], pki: Pki) -> None:
    _gent, liaison, port = federation
    assert liaison._pseudonymiser is not None
    known, unknown = (bytes(p) for p in (await liaison._pseudonymiser.pseudonymise(
        [nrn_input(KNOWN_UNCOVERED), nrn_input(UNKNOWN)])).pseudonyms)
    me = signer(pki, "fed-liaison")
    client = BrokerClient(f"127.0.0.1:{port}", pki.tls("fed-liaison"))
    try:
        leaves = [(await client.query(_hit_query(me, [p]))).answer.audit.leaf_index
                  for p in (unknown, known, unknown, known, unknown)]
    finally:
        await client.close()
    steps = {b - a for a, b in itertools.pairwise(leaves)}
    assert len(steps) == 1, leaves


def _disclosure_request(me: envelope.Signer, sender: str, to: str, pseudonym: bytes, purpose: int) -> bytes:
    return envelope.seal(envelope_pb2.EnvelopeBody(
        idempotency_key=wire.new_token(), kind=envelope_pb2.MESSAGE_KIND_DISCLOSURE_REQUEST, sender=sender,
        recipients=[to], purpose=purpose, rule_id="disclosure-request", created_at_ms=int(time.time() * 1000),
        disclosure_request=summary_pb2.DisclosureRequest(subject_pseudonym=pseudonym, file_ref=FILE_REF,
                                                         legal_basis=BASIS,
                                                         requested=[F.DISCLOSABLE_FIELD_PHASE])), me)


async def test_routing_to_a_holder_is_decided_by_policy_first_and_answers_alike(
        federation: tuple[NodeServer, NodeServer, int], pki: Pki) -> None:
    _gent, liaison, port = federation
    assert liaison._pseudonymiser is not None
    covered_p, unknown = (bytes(p) for p in (await liaison._pseudonymiser.pseudonymise(
        [nrn_input(KNOWN_COVERED), nrn_input(UNKNOWN)])).pseudonyms)
    wrong = envelope_pb2.PURPOSE_HIT_NO_HIT_CHECK  # not the rule's purpose
    for org in ("fed-liaison", "antwerpen"):  # a liaison with a wrong purpose; a municipality at all
        c = BrokerClient(f"127.0.0.1:{port}", pki.tls(org))
        try:
            answers = [(await c.send(_disclosure_request(signer(pki, org), org, "gent", p, wrong))).refusal
                       for p in (covered_p, unknown)]
        finally:
            await c.close()
        assert {(a.code, a.detail) for a in answers} == {(answers[0].code, answers[0].detail)}, org
        assert answers[0].code == broker_pb2.REFUSAL_CODE_POLICY_DENIED


async def test_a_response_must_answer_a_request(federation: tuple[NodeServer, NodeServer, int], pki: Pki) -> None:
    _gent, _liaison_node, port = federation
    pushed = envelope.seal(envelope_pb2.EnvelopeBody(
        idempotency_key=wire.new_token(), kind=envelope_pb2.MESSAGE_KIND_DISCLOSURE_RESPONSE, sender="gent",
        recipients=["fed-liaison"], purpose=envelope_pb2.PURPOSE_DISCLOSURE_ON_REQUEST,
        rule_id="disclosure-response", created_at_ms=int(time.time() * 1000),
        disclosure_response=summary_pb2.DisclosureResponse(
            subject_pseudonym=bytes(32), decision=F.DISCLOSURE_DECISION_APPROVED, phase=F.PHASE_FOLLOW_UP,
            contact_id="gent-livc")), signer(pki, "gent"))
    c = BrokerClient(f"127.0.0.1:{port}", pki.tls("gent"))
    try:
        refused = (await c.send(pushed)).refusal
    finally:
        await c.close()
    assert refused.code == broker_pb2.REFUSAL_CODE_POLICY_DENIED and "never pushed" in refused.detail


async def test_a_withdrawal_denies_pending_requests_and_blocks_approval(
        federation: tuple[NodeServer, NodeServer, int]) -> None:
    gent, liaison, _port = federation
    [hit] = await _query(liaison, KNOWN_COVERED)
    await _ask(liaison, hit.hit_id, F.DISCLOSABLE_FIELD_PHASE)
    [request] = await _wait_inbox(gent, "disclosure.request")
    case_id = (await _ok(gent, case_list=local_pb2.CaseListRequest())).case_list.cases[0].case_id
    [agreement] = (await _ok(gent, agreement=local_pb2.AgreementRequest(
        list=True, agreement=local_pb2.Agreement(case_id=case_id)))).agreement.agreements
    await _ok(gent, agreement=local_pb2.AgreementRequest(
        withdraw=True, agreement=local_pb2.Agreement(agreement_id=agreement.agreement_id)))
    err = await _error(gent, disclosure_decide=local_pb2.DisclosureDecideRequest(item_id=request.item_id,
                                                                                 approve=True))
    assert err.remote_code == "not_pending"  # denied by the withdrawal itself
    [answer] = await _wait_inbox(liaison, "disclosure.response")
    assert answer.decision == F.DISCLOSURE_DECISION_DENIED and answer.reason == F.DENIAL_REASON_NO_LAWFUL_BASIS


async def test_a_second_case_about_the_same_person_keeps_the_first_ones_coverage(
        federation: tuple[NodeServer, NodeServer, int]) -> None:
    gent, liaison, _port = federation
    second = await _open(gent, KNOWN_COVERED)  # no agreement on this one
    await _settle(gent)
    assert [r.outcome for r in await _query(liaison, KNOWN_COVERED)] == [local_pb2.QUERY_OUTCOME_HIT]
    await _ok(gent, case_close=local_pb2.CaseCloseRequest(case_id=second))
    await _settle(gent)
    assert [r.outcome for r in await _query(liaison, KNOWN_COVERED)] == [local_pb2.QUERY_OUTCOME_HIT]


async def test_erasure_reaches_a_disclosure_made_on_the_fallback_identity(
        federation: tuple[NodeServer, NodeServer, int]) -> None:
    gent, liaison, _port = federation
    number = nrn("880808", "321")
    ident = local_pb2.Identity(national_number=number, given_names="Fall", family_name="Back",
                               birth_date="1988-08-08")
    case_id = (await _ok(gent, case_open=local_pb2.CaseOpenRequest(
        identity=ident, phase=F.PHASE_FOLLOW_UP))).case_open.case_id
    await _agree(gent, case_id)
    await _settle(gent)
    r = await _ok(liaison, liaison_query=local_pb2.LiaisonQueryRequest(
        identities=[local_pb2.Identity(given_names="Fall", family_name="Back", birth_date="1988-08-08")],
        purpose="hit_no_hit_check", legal_basis=BASIS, file_ref=FILE_REF))
    [hit] = r.liaison_query.rows
    assert hit.outcome == local_pb2.QUERY_OUTCOME_HIT
    await _ask(liaison, hit.hit_id, F.DISCLOSABLE_FIELD_PHASE)
    [request] = await _wait_inbox(gent, "disclosure.request")
    await _ok(gent, disclosure_decide=local_pb2.DisclosureDecideRequest(item_id=request.item_id, approve=True))
    await _wait_inbox(liaison, "disclosure.response")
    await _ok(gent, subject_erase=local_pb2.EraseRequest(
        case_id=case_id, reason=F.ERASURE_REASON_SUBJECT_REQUEST, confirm_open=True))
    deadline = time.monotonic() + 20
    while [i for i in (await _ok(liaison, inbox_list=local_pb2.InboxListRequest())).inbox_list.items
           if i.kind == "disclosure.response"]:
        assert time.monotonic() < deadline, "the disclosure on the fallback pseudonym was not erased"
        await asyncio.sleep(0.1)


async def test_verify_catches_a_broker_that_widens_what_queries_read(
        federation: tuple[NodeServer, NodeServer, int], broker) -> None:  # type: ignore[no-untyped-def]
    gent, _liaison_node, _port = federation
    conn = sqlite3.connect(broker.config.database, timeout=10)  # the operator edits the file behind its back
    try:
        with conn:
            conn.execute("UPDATE directory SET covers = covers || ';justice_house/x/y@9999999999999'")
    finally:
        conn.close()
    verified = (await _ok(gent, directory_verify=local_pb2.DirectoryVerifyRequest())).directory_verify
    assert verified.problems and all("what queries read" in p for p in verified.problems), verified.problems


async def test_unanswered_requests_are_closed_after_their_time_to_live(broker) -> None:  # type: ignore[no-untyped-def]
    conn = sqlite3.connect(broker.config.database, timeout=10)
    try:
        with conn:
            conn.execute("INSERT INTO open_requests (requester, holder, pseudonym, at_ms) VALUES (?, ?, ?, ?)",
                         ("fed-liaison", "gent", bytes(32), 1_000))  # long ago
            conn.execute("INSERT INTO open_requests (requester, holder, pseudonym, at_ms) VALUES (?, ?, ?, ?)",
                         ("fed-liaison", "gent", bytes([1]) * 32, int(time.time() * 1000)))
    finally:
        conn.close()
    await broker.service.directory.close_stale_requests(int(time.time() * 1000))  # (or the broker's own sweep)
    rows = await broker.service.store.db.fetchall("SELECT pseudonym FROM open_requests")
    assert [bytes(r[0]) for r in rows] == [bytes([1]) * 32]
