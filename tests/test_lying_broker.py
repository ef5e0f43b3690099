"""A broker that lies is caught: receipts, notices and deliveries bound to their envelope and proven.

A compromised broker (``tests/lying_broker.py``: the real broker's certificate, files and - where a case says
so - its log key, behind a gRPC face that lies) in front of real nodes. Each test names the finding it
guards: what the node did before, and what it must do now.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from olievlek.broker.seeding import seed
from olievlek.broker.server import BrokerServer
from olievlek.broker.storage.operations import Seed
from olievlek.broker.storage.store import NEVER
from olievlek.node import evidence
from olievlek.node.broker_client import BrokerClient
from olievlek.node.server import NodeServer

from olievlek import wire
from olievlek.envelope import SIGNING_CONTEXT, env_of, leaf_env
from olievlek.identity import OrgKind
from olievlek.statuses import OutboxStatus, RefusalProof
from olievlek.storage.sqlite import Txn
from olievlek.v1 import broker_pb2, envelope_pb2, local_pb2, summary_pb2

from .conftest import NodeFactory, Pki, broker_config
from .envelopes import PSEUDONYM, body, local, open_and_alert, seal_bytes, send_envelope, signer, summary
from .lying_broker import Liar

pytestmark = pytest.mark.timeout(90)
DAY_MS = 86_400_000


@pytest.fixture
async def liar(pki: Pki, tmp_path: Path, policy_dir: Path) -> AsyncIterator[Liar]:
    liar = Liar()
    server = liar.start(BrokerServer(broker_config(pki, tmp_path), servicer=liar.servicer()))
    await server.start()
    yield liar
    await server.stop(0)


def port_of(liar: Liar) -> int:
    assert liar.server is not None
    return liar.server.port


def alarms(node: NodeServer, reason: str) -> float:
    return node.metrics.registry.get_sample_value("olievlek_node_audit_alarms_total", {"reason": reason}) or 0.0


def counted(node: NodeServer, name: str, **labels: str) -> float:
    return node.metrics.registry.get_sample_value(f"olievlek_node_{name}_total", labels) or 0.0


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def status(node: NodeServer, outbox_id: int) -> OutboxStatus:
    assert node._store is not None
    row = await node._store.outbox(outbox_id)
    assert row is not None
    return row.status


async def refused(node: NodeServer) -> dict[int, str]:
    """seq -> reason of every delivery the node refused."""
    assert node._store is not None
    return {int(s): str(r) for s, r in await node._store.db.fetchall("SELECT seq, reason FROM delivery_refusals")}


async def inbox_keys(node: NodeServer) -> list[str]:
    assert node._store is not None
    return [str(r[0]) for r in await node._store.db.fetchall("SELECT idem_key FROM inbox ORDER BY id")]


async def next_seq(liar: Liar, recipient: str) -> int:
    assert liar.server is not None and liar.server.service is not None
    row = await liar.server.service.store.db.fetchone("SELECT next_seq FROM recipients WHERE recipient = ?",
                                                      (recipient,))
    return int(row[0]) if row else 1


async def seeded(liar: Liar, raw: bytes, *, at_ms: int, recipient: str = "antwerpen", sender: str = "gent") -> int:
    """With the log key: queue ``raw`` under a fresh "send accepted" leaf saying ``at_ms``; its number."""
    assert liar.server is not None and liar.server.service is not None
    number = await next_seq(liar, recipient)
    key = envelope_pb2.EnvelopeBody.FromString(envelope_pb2.Envelope.FromString(raw).body).idempotency_key
    await seed(liar.server.service, recipient, sender, [(key, raw)], at_ms, NEVER)
    return number


async def honest_leaf_of(node: NodeServer, outbox_id: int) -> broker_pb2.SendResponse:
    assert node._store is not None
    row = await node._store.outbox(outbox_id)
    assert row is not None and row.response is not None
    return broker_pb2.SendResponse.FromString(row.response)


# -- receipts and refusals ---------------------------------------------------------------------------------
async def test_a_receipt_for_another_envelope_is_not_believed(liar: Liar, nodes: NodeFactory) -> None:
    """Finding: any alert was 'accepted' on the proof of an old accepted leaf of the same sender, and dropped."""
    gent = await nodes.start("gent", port_of(liar))
    first = await open_and_alert(gent, "85.07.30-033.28")
    assert first.status == local_pb2.OUTBOX_STATUS_ACCEPTED
    old = await honest_leaf_of(gent, first.outbox_id)
    liar.answer = lambda envelopes: [old for _ in envelopes]
    second = await open_and_alert(gent, "93.05.18-223.61", no_wait=True)
    await wait_until(lambda: asyncio.sleep(0, alarms(gent, "proof") >= 1))
    assert liar.dropped, "the liar threw the envelope away"
    assert await status(gent, second.outbox_id) == OutboxStatus.PENDING
    # Nothing was lost: once the broker answers honestly, the same row is sent again and accepted.
    liar.answer = None
    gent.outbox.kick() if gent.outbox else None
    await wait_until(lambda: _is(gent, second.outbox_id, OutboxStatus.ACCEPTED), timeout=30)


async def _is(node: NodeServer, outbox_id: int, wanted: OutboxStatus) -> bool:
    return await status(node, outbox_id) == wanted


async def test_a_refusal_backed_by_an_old_refusal_leaf_is_not_believed(liar: Liar, nodes: NodeFactory,
                                                                       pki: Pki) -> None:
    """Finding: an invented refusal (any code, reason and field) passed on the proof of an old refusal leaf."""
    gent = await nodes.start("gent", port_of(liar))
    real = await send_envelope(pki, port_of(liar), seal_bytes(wire.encode(body(rule_id="no-such-rule")),
                                                             signer(pki, "gent")))
    assert real.WhichOneof("outcome") == "refusal" and real.refusal.audit.metadata
    invented = broker_pb2.SendResponse(refusal=broker_pb2.Refusal(
        code=broker_pb2.REFUSAL_CODE_POLICY_DENIED, detail="denied by rule no-moves", rule_id=real.refusal.rule_id,
        field=real.refusal.field, audit=real.refusal.audit))
    liar.answer = lambda envelopes: [invented for _ in envelopes]
    alert = await open_and_alert(gent, "85.07.30-033.28", no_wait=True)
    await wait_until(lambda: asyncio.sleep(0, alarms(gent, "proof") >= 1))
    assert await status(gent, alert.outbox_id) == OutboxStatus.PENDING
    liar.answer = None
    await wait_until(lambda: _is(gent, alert.outbox_id, OutboxStatus.ACCEPTED), timeout=30)


async def test_a_leaf_that_proved_one_row_never_proves_another(liar: Liar, nodes: NodeFactory) -> None:
    """One leaf index never serves two outbox rows (here: the node's record says the next leaf is taken)."""
    gent = await nodes.start("gent", port_of(liar))
    assert gent._store is not None
    taken = (await liar.leaves())[-1][0] + 1  # the index the next decision will get

    async def claim(tx: Txn) -> None:
        await evidence.keep_proven_txn(tx, taken, 999_999, bytes(32))
    await gent._store.writer.write(claim)
    alert = await open_and_alert(gent, "85.07.30-033.28", no_wait=True)
    await wait_until(lambda: asyncio.sleep(0, alarms(gent, "leaf_reused") >= 1))
    assert await status(gent, alert.outbox_id) == OutboxStatus.PENDING


# -- notices -----------------------------------------------------------------------------------------------
async def test_an_expiry_notice_for_a_key_never_used_is_refused(liar: Liar, nodes: NodeFactory) -> None:
    """Finding: an expiry notice for a key the node never used was acknowledged as stored. With the log key
    the liar writes a matching expiry leaf; the node still refuses - it sent nothing under that key."""
    gent = await nodes.start("gent", port_of(liar))
    sent = await open_and_alert(gent, "85.07.30-033.28")
    assert gent._store is not None
    row = await gent._store.outbox(sent.outbox_id)
    assert row is not None
    forged = await liar.append({"event": "delivery.expired", "sender": "gent", "recipient": "antwerpen",
                                "rule": "move-alert", "key": "never-used"}, ("municipality/gent",))
    notice = broker_pb2.DeliveryNotice(idempotency_key="never-used", recipient="antwerpen", rule_id="move-alert",
                                       reason=broker_pb2.NOTICE_REASON_EXPIRED)
    unknown = await liar.queue("gent", "expiry", wire.encode(notice), forged, key="never-used")
    # And an expiry of a key it did use, whose leaf is about other bytes (no env of this envelope).
    other = await liar.append({"event": "delivery.expired", "sender": "gent", "recipient": "antwerpen",
                               "rule": "move-alert", "key": row.idem_key}, ("municipality/gent",))
    notice.idempotency_key = row.idem_key
    wrong = await liar.queue("gent", "expiry", wire.encode(notice), other, key=row.idem_key)
    await wait_until(lambda: _has(refused(gent), wrong))
    assert (await refused(gent)) == {unknown: "unknown_key", wrong: "bad_expiry_proof"}
    assert alarms(gent, "notice_unknown_key") == 1 and alarms(gent, "proof") >= 1
    assert await status(gent, sent.outbox_id) == OutboxStatus.ACCEPTED  # not turned into "expired"


async def _has(rows: Awaitable[dict[int, str]], seq: int) -> bool:
    return seq in await rows


# -- deliveries --------------------------------------------------------------------------------------------
async def test_deliveries_the_log_does_not_back_are_refused_and_logged(liar: Liar, nodes: NodeFactory,
                                                                       pki: Pki, log_file: Path) -> None:
    """Findings: the recipient stored alerts with no proof, stale or future alerts, alerts under a rule that
    does not exist or with a field the rule forbids. Without the log key the liar can only deliver bytes
    whose leaf is missing or another envelope's; with it, it logs what it likes - and the node re-checks."""
    port = port_of(liar)
    gent = await nodes.start("gent", port)
    antwerpen = await nodes.start("antwerpen", port)
    honest = await open_and_alert(gent, "85.07.30-033.28")  # the positive control: this one is stored
    await wait_until(lambda: _count_inbox(antwerpen, 1))
    gent_signer = signer(pki, "gent")
    now = int(time.time() * 1000)

    def alert(**kw: Any) -> bytes:
        return seal_bytes(wire.encode(body(**kw)), gent_signer)

    with_agencies = summary()
    with_agencies.agencies.append(summary_pb2.AGENCY_ROLE_POLICE)
    honest_index = next(i for i, m in await liar.leaves() if m.get("decision") == "accepted")
    expected = {
        # without the log key
        await liar.queue("antwerpen", "envelope", alert(), -1): "delivery_unproven",
        await liar.queue("antwerpen", "envelope", alert(), honest_index): "delivery_unproven",
        # with the log key
        await seeded(liar, alert(created_at_ms=now - 400 * DAY_MS), at_ms=now): "stale",
        await seeded(liar, alert(created_at_ms=now - 40 * DAY_MS), at_ms=now - 40 * DAY_MS): "stale",
        await seeded(liar, alert(created_at_ms=now + 300 * DAY_MS), at_ms=now): "from_the_future",
        await seeded(liar, alert(rule_id="no-such-rule"), at_ms=now): "policy_violation",
        await seeded(liar, alert(summary_msg=with_agencies), at_ms=now): "policy_violation",
    }
    await wait_until(lambda: _all_refused(antwerpen, expected))
    assert await refused(antwerpen) == expected
    assert await inbox_keys(antwerpen) == [await _key_of(gent, honest.outbox_id)]
    assert alarms(antwerpen, "proof") >= 2  # the missing proof and the other envelope's leaf
    assert alarms(antwerpen, "stale") == 2 and alarms(antwerpen, "from_the_future") == 1
    assert alarms(antwerpen, "policy_violation") == 2
    # The broker was told (REJECTED acks), and the node's log says why - without any identifier.
    await wait_until(lambda: _rejected_at_broker(liar, expected))
    assert log_file.read_text().count("delivery.refused") >= len(expected)


async def _rejected_at_broker(liar: Liar, expected: dict[int, str]) -> bool:
    assert liar.server is not None and liar.server.service is not None
    acks = await liar.server.service.store.db.fetchall(
        "SELECT seq, reason FROM acks WHERE recipient = 'antwerpen' AND outcome = 'rejected'")
    return {int(s): str(r) for s, r in acks} == expected


async def _all_refused(node: NodeServer, expected: dict[int, str]) -> bool:
    return set(expected) <= set(await refused(node))


async def _key_of(node: NodeServer, outbox_id: int) -> str:
    assert node._store is not None
    row = await node._store.outbox(outbox_id)
    assert row is not None
    return row.idem_key


async def test_an_unsolicited_disclosure_response_is_refused(liar: Liar, nodes: NodeFactory, pki: Pki) -> None:
    """Finding: a disclosure.response nobody asked for was stored. The liar logs it (log key) as accepted
    under the real disclosure rule; the liaison asked Gent nothing, so it refuses it."""
    liaison = await nodes.start("fed-liaison", port_of(liar), kind=OrgKind.FEDERAL_LIAISON,
                                retention_days=(("default", 90),))
    answer = envelope_pb2.EnvelopeBody(
        idempotency_key=wire.new_token(), kind=envelope_pb2.MESSAGE_KIND_DISCLOSURE_RESPONSE, sender="gent",
        recipients=["fed-liaison"], purpose=envelope_pb2.PURPOSE_DISCLOSURE_ON_REQUEST, rule_id="disclosure-response",
        created_at_ms=int(time.time() * 1000),
        disclosure_response=summary_pb2.DisclosureResponse(
            subject_pseudonym=PSEUDONYM, decision=summary_pb2.DISCLOSURE_DECISION_DENIED,
            reason=summary_pb2.DENIAL_REASON_DISPROPORTIONATE))
    number = await seeded(liar, seal_bytes(wire.encode(answer), signer(pki, "gent")), at_ms=int(time.time() * 1000),
                          recipient="fed-liaison")
    await wait_until(lambda: _has(refused(liaison), number))
    assert (await refused(liaison))[number] == "unsolicited"
    assert await inbox_keys(liaison) == [] and alarms(liaison, "unsolicited") == 1


# -- sequence numbers --------------------------------------------------------------------------------------
async def test_repeats_are_deduplicated_and_gaps_need_a_proven_expiry(liar: Liar, nodes: NodeFactory,
                                                                      pki: Pki) -> None:
    """Finding: the node did not look at sequence numbers. A repeat (a number at or below the one handled) is
    acknowledged unseen and counted; numbers the stream skips are counted, and those no proven expiry
    explains raise the alarm - while a gap an honest expiry left is settled quietly (the positive control)."""
    port = port_of(liar)
    gent = await nodes.start("gent", port)
    antwerpen = await nodes.start("antwerpen", port)
    first = await open_and_alert(gent, "85.07.30-033.28")
    await wait_until(lambda: _acked(liar, "antwerpen", 1))
    assert first.status == local_pb2.OUTBOX_STATUS_ACCEPTED
    # A repeat: number 1 again (another alert's bytes), after a reconnect.
    await liar.queue("antwerpen", "envelope", b"\x00never looked at", -1, seq=1)
    liar.end_stream("antwerpen")
    await wait_until(lambda: asyncio.sleep(0, counted(antwerpen, "delivery_repeats") == 1))
    assert await refused(antwerpen) == {} and len(await inbox_keys(antwerpen)) == 1
    # A gap nothing explains: five numbers dropped before the next honest alert.
    await liar.skip("antwerpen", 5)
    await open_and_alert(gent, "93.05.18-223.61")
    await wait_until(lambda: _count_inbox(antwerpen, 2))
    assert antwerpen.log_watch is not None
    await antwerpen.log_watch.pass_once()  # too early to alarm: an expiry may still be logged
    assert alarms(antwerpen, "delivery_gap") == 0
    await antwerpen.log_watch.pass_once(int(time.time() * 1000) + 3_600_000)
    assert alarms(antwerpen, "delivery_gap") == 1
    assert counted(antwerpen, "delivery_gaps", explained="no") == 5
    # A gap honest expiries explain: two deliveries expire while Antwerpen is away.
    await nodes.stop(antwerpen)
    assert liar.server is not None and liar.server.service is not None
    service = liar.server.service
    now = service.now()
    expiring = [(f"exp-{i}", seal_bytes(wire.encode(body(key=f"exp-{i}")), signer(pki, "gent")))
                for i in range(2)]
    await seed(service, "antwerpen", "gent", expiring, now, now - 1)
    clock = service._clock
    service._clock = lambda: clock() + 10 * 60_000  # the sweep runs past the grace period
    try:
        assert await service.expire_due() == 2
    finally:
        service._clock = clock
    antwerpen = await nodes.start("antwerpen", port)
    await open_and_alert(gent, "90.02.01-999.02")
    await wait_until(lambda: _count_inbox(antwerpen, 3))
    assert antwerpen.log_watch is not None
    await antwerpen.log_watch.pass_once(int(time.time() * 1000) + 3_600_000)
    assert counted(antwerpen, "delivery_gaps", explained="yes") == 2
    assert alarms(antwerpen, "delivery_gap") == 0  # a fresh process: its counter starts again


async def _acked(liar: Liar, recipient: str, seq: int) -> bool:
    assert liar.server is not None and liar.server.service is not None
    return await liar.server.service.store.db.fetchone(
        "SELECT 1 FROM acks WHERE recipient = ? AND seq = ?", (recipient, seq)) is not None


async def _count_inbox(node: NodeServer, n: int) -> bool:
    return len(await inbox_keys(node)) >= n


# -- aggregated refusals -----------------------------------------------------------------------------------
INTERVAL_MS = 2_000


async def _interval_begins(clock: Callable[[], int]) -> None:
    """Wait for the start of a refusal interval, so a few sends fall in one."""
    while clock() % INTERVAL_MS > 200:
        await asyncio.sleep(0.02)


async def _refused_alerts(gent: NodeServer, case_id: int, n: int) -> list[int]:
    """``n`` move alerts carrying agencies, a field move alerts never carry: each refused by the broker."""
    statuses = []
    for _ in range(n):
        r = await local(gent, local_pb2.LocalRequest(alert_move=local_pb2.AlertMoveRequest(
            case_id=case_id, destination_nis=11002, include_fields=["agencies"])))
        statuses.append(r.alert_move.status)
    return statuses


async def test_an_aggregated_refusal_is_provisional_until_its_leaf_is_proven(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory) -> None:
    """Refusals beyond the first of an interval share one leaf: the node keeps each one's env and place and
    proves the leaf when it comes; a leaf whose chain is not over the node's envs is an alarm."""
    import dataclasses

    from olievlek.broker.service import Limits

    liar = Liar()
    config = dataclasses.replace(broker_config(pki, tmp_path),
                                 limits=Limits(individual_refusals=1, refusal_interval_ms=INTERVAL_MS))
    server = liar.start(BrokerServer(config, servicer=liar.servicer()))
    port = await server.start()
    try:
        assert server.service is not None
        service = server.service
        gent = await nodes.start("gent", port)
        assert gent._store is not None and gent.log_watch is not None
        case = await local(gent, local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
            identity=local_pb2.Identity(national_number="85.07.30-033.28", given_names="A", family_name="B"),
            phase=summary_pb2.PHASE_PRE_ANALYSIS, agencies=[summary_pb2.AGENCY_ROLE_POLICE])))
        case_id = case.case_open.case_id
        await _interval_begins(service.now)
        assert await _refused_alerts(gent, case_id, 3) == [local_pb2.OUTBOX_STATUS_REFUSED] * 3
        [(start, _)] = await evidence.provisional_intervals(gent._store.db)
        assert [p for p, _ in await evidence.interval_envs(gent._store.db, start)] == [1, 2]
        await gent.log_watch.pass_once()
        assert await evidence.interval_state(gent._store.db, start) == RefusalProof.PROVISIONAL  # no leaf yet
        await wait_until(lambda: asyncio.sleep(0, service.now() >= start + INTERVAL_MS))
        assert await service.flush_refusals(service.now()) == 1
        await gent.log_watch.pass_once()
        assert await evidence.interval_state(gent._store.db, start) == RefusalProof.PROVEN
        # The next interval's leaf, rewritten by whoever controls the broker: its chain is not over these envs.
        await _interval_begins(service.now)
        assert await _refused_alerts(gent, case_id, 3) == [local_pb2.OUTBOX_STATUS_REFUSED] * 3
        [(later, _)] = await evidence.provisional_intervals(gent._store.db)
        async with service.store.db.transaction() as tx:
            await tx.execute("UPDATE refusal_aggregates SET chain = ?", (hashlib.sha256(b"another story").digest(),))
        await wait_until(lambda: asyncio.sleep(0, service.now() >= later + INTERVAL_MS))
        assert await service.flush_refusals(service.now()) == 1
        await gent.log_watch.pass_once()
        assert await evidence.interval_state(gent._store.db, later) == RefusalProof.UNPROVEN
        assert alarms(gent, "refusal_chain_differs") == 1
    finally:
        await server.stop(0)


# -- what the data-protection officer can and cannot learn -------------------------------------------------
async def test_the_officer_cannot_confirm_a_refused_member_reports_figures(liar: Liar, pki: Pki) -> None:
    """Report keys are predictable and bodies are short lists of small counts: a leaf with a plain digest of
    the body would let whoever reads metadata confirm a guess. The leaf's env needs the envelope's
    signature, which only the sender, the broker and the recipients hold."""
    def report(count: int) -> envelope_pb2.EnvelopeBody:
        return envelope_pb2.EnvelopeBody(
            idempotency_key="report-2026-q3-mechelen", kind=envelope_pb2.MESSAGE_KIND_REPORT_AGGREGATE,
            sender="mechelen", recipients=["gent"], purpose=envelope_pb2.PURPOSE_MONITORING_AND_EVALUATION,
            rule_id="group-figures", created_at_ms=1_790_000_000_000,
            aggregate_report=summary_pb2.AggregateReport(year=2026, quarter=3, cells=[summary_pb2.AggregateCell(
                dimension=summary_pb2.AGGREGATE_DIMENSION_PHASE, category=1, count=count)]))

    true_body = wire.encode(report(7))
    raw = seal_bytes(true_body, signer(pki, "mechelen"))
    answer = await send_envelope(pki, port_of(liar), raw, org="mechelen")  # gent is no aggregator: refused
    assert answer.WhichOneof("outcome") == "refusal"
    officer = BrokerClient(f"127.0.0.1:{port_of(liar)}", pki.tls("vvsg"))
    try:
        events = [e.metadata for e in (await officer.audit_events(0, 1000)).events]
    finally:
        await officer.close()
    [leaf] = [m for m in events if b'"mechelen"' in m and b'"refused"' in m]
    meta = json.loads(leaf)
    candidates = [wire.encode(report(c)) for c in range(64)]
    assert true_body in candidates  # the guessing game: the true figures are among 64 candidates
    guesses = {digest for b in candidates for digest in (
        hashlib.sha256(b).hexdigest(), hashlib.sha256(SIGNING_CONTEXT + b).hexdigest(), leaf_env(b"", b).hex())}
    values = {v for v in _values(meta) if isinstance(v, str)}
    assert not guesses & values  # no digest a reader of metadata could recompute from a guess
    # The positive control: whoever holds the signed envelope recomputes the env - the sender can prove it.
    assert meta["env"] == env_of(raw).hex() and meta["env"] in values


def _values(doc: Any) -> list[Any]:
    if isinstance(doc, dict):
        return [v for x in doc.values() for v in _values(x)]
    if isinstance(doc, list):
        return [v for x in doc for v in _values(x)]
    return [doc]



# -- the bundle a decision was taken under -----------------------------------------------------------------
async def test_a_decision_is_rechecked_under_the_bundle_its_leaf_names(liar: Liar, nodes: NodeFactory, pki: Pki,
                                                                       policy_dir: Path) -> None:
    """Antwerpen enforces version 1 when the broker moves to version 2: it fetches version 2, verifies it with
    its own roots and re-decides under it. Leuven, started on version 2, refuses a decision the liar logs
    under version 1 - an older, possibly looser bundle cannot excuse a delivery."""
    from .test_policy_broker import resign, set_version

    port = port_of(liar)
    assert liar.server is not None and liar.server.service is not None
    service = liar.server.service
    v1 = service.bundle.digest
    gent = await nodes.start("gent", port)
    antwerpen = await nodes.start("antwerpen", port)
    set_version(policy_dir, 2)
    resign(policy_dir)
    assert await liar.server.reload_policy() is True
    v2 = service.bundle.digest
    sent = await open_and_alert(gent, "85.07.30-033.28")
    assert sent.status == local_pb2.OUTBOX_STATUS_ACCEPTED
    await wait_until(lambda: _count_inbox(antwerpen, 1))
    assert (antwerpen.config.database.parent / "bundles" / v2 / "bundle.yaml").exists()
    assert (antwerpen.config.database.parent / "bundles" / v1 / "bundle.yaml").exists()  # kept at start
    leuven = await nodes.start("leuven", port)
    raw = seal_bytes(wire.encode(body(recipients=("leuven",))), signer(pki, "gent"))
    number = await next_seq(liar, "leuven")
    key = envelope_pb2.EnvelopeBody.FromString(envelope_pb2.Envelope.FromString(raw).body).idempotency_key
    await service.committer.submit(Seed("leuven", "gent", ((key, raw),), service.now(), NEVER, v1,
                                        ("municipality/leuven",)))
    service.notifier.notify("leuven")
    await wait_until(lambda: _has(refused(leuven), number))
    assert (await refused(leuven))[number] == "bundle_untrusted"
    assert alarms(leuven, "bundle_untrusted") == 1 and await inbox_keys(leuven) == []
