"""The monitor re-checks what it publishes: misbehaving municipalities send quarterly reports through the real
broker (signed with their own certificates) to a real monitor node; what breaks the rules is refused and
logged, and only what passes reaches the monitor's list (what the dashboard reads)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from olievlek.node.server import NodeServer

from olievlek import wire
from olievlek.identity import OrgKind
from olievlek.v1 import envelope_pb2, local_pb2, summary_pb2

from .conftest import NodeFactory, Pki
from .envelopes import local, seal_bytes, send_envelope, signer

pytestmark = pytest.mark.timeout(120)
F = summary_pb2
PHASE, CONCERN, FLOW = F.AGGREGATE_DIMENSION_PHASE, F.AGGREGATE_DIMENSION_CONCERN, F.AGGREGATE_DIMENSION_FLOW
RIGHT = F.CONCERN_CATEGORY_RIGHT_WING


def report(year: int = 2026, quarter: int = 3, cells: tuple[tuple[int, int, int], ...] = (), source: str = "",
           ) -> summary_pb2.AggregateReport:
    """A report of (dimension, category, count) cells; count -1: withheld."""
    r = F.AggregateReport(year=year, quarter=quarter, source=source)
    for dim, cat, count in cells:
        r.cells.add(dimension=dim, category=cat, count=max(count, 0), suppressed=count < 0)  # type: ignore[arg-type]
    return r


VALID = ((PHASE, 0, 12), (PHASE, F.PHASE_FOLLOW_UP, 7), (PHASE, F.PHASE_SIGNAL, -1), (CONCERN, RIGHT, 9))


async def _send(pki: Pki, port: int, sender: str, r: summary_pb2.AggregateReport) -> str:
    """Sign and send as ``sender`` itself would; the broker's answer ("accepted" or its refusal code)."""
    body = envelope_pb2.EnvelopeBody(
        idempotency_key=wire.new_token(), kind=envelope_pb2.MESSAGE_KIND_REPORT_AGGREGATE, sender=sender,
        recipients=["vvsg"], purpose=envelope_pb2.PURPOSE_MONITORING_AND_EVALUATION, rule_id="quarterly-aggregates",
        created_at_ms=int(time.time() * 1000), aggregate_report=r)
    resp = await send_envelope(pki, port, seal_bytes(wire.encode(body), signer(pki, sender)), org=sender)
    if resp.WhichOneof("outcome") == "receipt":
        return "accepted"
    return resp.refusal.rule_id or str(resp.refusal.code)


def _refusals(log_file: Path) -> list[tuple[str, str, int, int]]:
    lines = [json.loads(x) for x in log_file.read_text().splitlines() if '"report.refused"' in x]
    return [(x["sender"], x["problem"], x["year"], x["quarter"]) for x in lines]


async def _listed(vvsg: NodeServer) -> list[tuple[str, int, int]]:
    got = (await local(vvsg, local_pb2.LocalRequest(monitor_list=local_pb2.MonitorListRequest()))).monitor_list
    return [(r.sender, r.report.year, r.report.quarter) for r in got.reports]


async def test_the_monitor_refuses_and_logs_what_it_must_not_publish(
        pki: Pki, broker, nodes: NodeFactory, log_file: Path) -> None:  # type: ignore[no-untyped-def]
    vvsg = await nodes.start("vvsg", broker.port, kind=OrgKind.MONITOR)
    port = broker.port
    # A cooperation's member goes straight to the monitor: the bundle's generated deny rule refuses it.
    assert await _send(pki, port, "leuven", report(cells=((CONCERN, 1, 3), (CONCERN, 2, 2)))) == \
        "olievlek-rand-reports-through-aggregator"
    sent = {
        # (sender, report): the problem the monitor names
        ("livc-zennevallei", "solo"): (report(cells=VALID), "not_for_the_group"),
        ("gent", "small"): (report(cells=((PHASE, 0, 6), (CONCERN, 1, 3), (CONCERN, 2, 2), (CONCERN, 3, 1))),
                            "below_threshold"),
        ("gent", "repeated cell"): (report(cells=(*VALID, (CONCERN, RIGHT, 9))), "duplicate_cell"),
        ("gent", "unknown cell"): (report(cells=(*VALID, (CONCERN, 99, 9))), "unknown_cell"),
        ("gent", "implausible"): (report(cells=((PHASE, 0, 4_000_000_000),)), "implausible_count"),
        ("gent", "back-dated"): (report(year=2001, quarter=1, cells=VALID), "before_first_quarter"),
        ("gent", "future"): (report(year=2100, quarter=4, cells=VALID), "quarter_not_over"),
        ("gent", "above margin"): (report(cells=((PHASE, 0, 8), (PHASE, 1, 5), (PHASE, 3, 6))), "above_margin"),
    }
    # An honest report, then a second one of the same quarter with other figures (the two could be differenced).
    assert await _send(pki, port, "antwerpen", report(cells=VALID)) == "accepted"
    deadline = time.monotonic() + 20
    while await _listed(vvsg) != [("antwerpen", 2026, 3)]:
        assert time.monotonic() < deadline, "the honest report did not arrive"
        await asyncio.sleep(0.1)
    second = report(cells=((PHASE, 0, 13), (PHASE, F.PHASE_FOLLOW_UP, 8), (PHASE, F.PHASE_SIGNAL, -1),
                           (CONCERN, RIGHT, 9)))
    assert await _send(pki, port, "antwerpen", second) == "accepted"
    for (sender, _what), (r, _problem) in sent.items():
        assert await _send(pki, port, sender, r) == "accepted", "the broker passes what no rule can say"
    expected = sorted([(s, p, r.year, r.quarter) for (s, _w), (r, p) in sent.items()] +
                      [("antwerpen", "second_report", 2026, 3)])
    deadline = time.monotonic() + 20
    while sorted(_refusals(log_file)) != expected:
        assert time.monotonic() < deadline, (sorted(_refusals(log_file)), expected)
        await asyncio.sleep(0.1)
    # Positive control: the only report the monitor keeps (and the dashboard shows) is the honest one.
    assert await _listed(vvsg) == [("antwerpen", 2026, 3)]
    for line in log_file.read_text().splitlines():
        assert "4000000000" not in line


async def test_an_aggregator_speaking_for_its_group_and_a_withheld_count_are_told_apart(
        pki: Pki, broker, nodes: NodeFactory, log_file: Path) -> None:  # type: ignore[no-untyped-def]
    vvsg = await nodes.start("vvsg", broker.port, kind=OrgKind.MONITOR)
    group = report(cells=VALID, source="olievlek-rand")
    leak = report(cells=((PHASE, 0, 12), (PHASE, F.PHASE_SIGNAL, 0)))
    leak.cells[1].suppressed, leak.cells[1].count = True, 3  # withheld, but the count rides along
    claim = report(cells=VALID, source="olievlek-rand")
    assert await _send(pki, broker.port, "livc-zennevallei", group) == "accepted"
    assert await _send(pki, broker.port, "gent", leak) == "accepted"
    assert await _send(pki, broker.port, "antwerpen", claim) == "accepted"  # speaks for a group it does not lead
    deadline = time.monotonic() + 20
    want = [("antwerpen", "not_for_the_group", 2026, 3), ("gent", "withheld_with_count", 2026, 3)]
    while sorted(_refusals(log_file)) != want:
        assert time.monotonic() < deadline, _refusals(log_file)
        await asyncio.sleep(0.1)
    assert await _listed(vvsg) == [("livc-zennevallei", 2026, 3)]
