"""A municipality joins a cooperation that combines its figures: its own published reports travel to the
aggregator, whose check takes them and the stock identity across the change into account (real broker,
operators and nodes; the bundle changes between the quarters as its administrators would change it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from olievlek.broker.server import BrokerServer
from olievlek.node.server import NodeServer

from olievlek.envelope import body_of
from olievlek.identity import OrgKind
from olievlek.kinds import MessageKind
from olievlek.policy.signing import load_signing_key, sign_bundle
from olievlek.suppression import period_of
from olievlek.v1 import local_pb2, summary_pb2

from .conftest import NodeFactory, Pki, broker_config
from .disclosure_attacker import Change, Key, known_cells
from .envelopes import local

pytestmark = pytest.mark.timeout(150)
F = summary_pb2
GROUP = "olievlek-rand"


def _resign(fed: Path, edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
    """The administrators change groups.yaml and bundle.yaml, and sign (2 of 2)."""
    groups, meta = fed / "bundle" / "groups.yaml", fed / "bundle" / "bundle.yaml"
    g, m = yaml.safe_load(groups.read_text()), yaml.safe_load(meta.read_text())
    edit(g, m)
    groups.write_text(yaml.safe_dump(g, sort_keys=False))
    meta.write_text(yaml.safe_dump(m, sort_keys=False))
    for i in (1, 2):
        sign_bundle(fed / "bundle", load_signing_key(fed / "admins" / f"admin{i}.key"))


def _members(members: list[str], version: int) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def edit(groups: dict[str, Any], meta: dict[str, Any]) -> None:
        next(g for g in groups["groups"] if g["id"] == GROUP)["members"] = members
        meta["version"] = version
    return edit


async def _open(node: NodeServer, n: int, month: int, phase: int, serial: int) -> None:
    for i in range(n):
        first = f"7{serial:02d}1{i:02d}{month:03d}"[:9]
        ident = local_pb2.Identity(national_number=first + f"{97 - int(first) % 97:02d}", given_names="M",
                                   family_name="N")
        await local(node, local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
            identity=ident, phase=phase, concerns=[F.CONCERN_CATEGORY_RIGHT_WING], opened_year=2026,
            opened_month=month)))  # type: ignore[arg-type]


async def _report(node: NodeServer, quarter: int) -> local_pb2.MonitorReportResponse:
    deadline = time.monotonic() + 20
    while True:  # an aggregator waits until every member's figures are in
        try:
            r = await local(node, local_pb2.LocalRequest(monitor_report=local_pb2.MonitorReportRequest(
                year=2026, quarter=quarter, send=True)))
            return r.monitor_report
        except Exception:
            assert time.monotonic() < deadline, "the members' figures did not arrive"
            await asyncio.sleep(0.2)


async def _monitor_holds(vvsg: NodeServer, count: int) -> local_pb2.MonitorListResponse:
    deadline = time.monotonic() + 20
    while True:
        got = (await local(vvsg, local_pb2.LocalRequest(monitor_list=local_pb2.MonitorListRequest()))).monitor_list
        if len(got.reports) >= count:
            return got
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def test_a_joiner_sends_its_history_and_the_group_is_protected_across_the_change(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory) -> None:
    _resign(policy_dir, _members(["mechelen", "livc-zennevallei"], 1))  # leuven reports alone at first
    broker = BrokerServer(broker_config(pki, tmp_path))
    await broker.start()
    try:
        started = {org: await nodes.start(org, broker.port) for org in ("mechelen", "livc-zennevallei", "leuven")}
        vvsg = await nodes.start("vvsg", broker.port, kind=OrgKind.MONITOR)
        await _open(started["mechelen"], 6, 4, F.PHASE_FOLLOW_UP, 11)
        await _open(started["livc-zennevallei"], 7, 5, F.PHASE_PRE_ANALYSIS, 12)
        await _open(started["leuven"], 8, 5, F.PHASE_FOLLOW_UP, 13)
        assert (await _report(started["leuven"], 2)).recipient == "vvsg"  # alone: to the monitor
        assert (await _report(started["mechelen"], 2)).recipient == "livc-zennevallei"
        assert (await _report(started["livc-zennevallei"], 2)).status == "accepted"
        await _monitor_holds(vvsg, 2)

        # Leuven joins: a new bundle version, enforced by the broker and every node after a restart.
        _resign(policy_dir, _members(["mechelen", "livc-zennevallei", "leuven"], 2))
        assert await broker.reload_policy()
        for node in list(nodes.running):
            await nodes.stop(node)
        started = {org: await nodes.start(org, broker.port) for org in ("mechelen", "livc-zennevallei", "leuven")}
        vvsg = await nodes.start("vvsg", broker.port, kind=OrgKind.MONITOR)
        await _open(started["leuven"], 5, 7, F.PHASE_SIGNAL, 14)
        assert (await _report(started["leuven"], 3)).recipient == "livc-zennevallei"  # now through the group
        assert (await _report(started["mechelen"], 3)).recipient == "livc-zennevallei"
        group = await _report(started["livc-zennevallei"], 3)
        assert group.status == "accepted" and group.report.source == GROUP

        # What leuven published alone reached the aggregator, marked as history (never as this quarter's).
        aggregator = started["livc-zennevallei"]
        assert aggregator._store is not None
        sent = [body_of(raw).aggregate_report
                for _k, raw in await aggregator._store.received_of_kind("leuven", MessageKind.REPORT_AGGREGATE)]
        assert [(r.history, r.year, r.quarter) for r in sent] == [(True, 2026, 2), (False, 2026, 3)]

        # The monitor's whole holding, attacked with the change: no withheld figure under 5 comes back.
        held = await _monitor_holds(vvsg, 3)
        assert sorted((r.sender, r.report.quarter) for r in held.reports) == \
            [("leuven", 2), ("livc-zennevallei", 2), ("livc-zennevallei", 3)]
        shown: dict[Key, int] = {}
        withheld: set[Key] = set()
        before = f"{GROUP}~livc-zennevallei,mechelen"
        for r in held.reports:
            source = "leuven" if r.sender == "leuven" else GROUP if r.report.quarter == 3 else before
            period = period_of(r.report.year, r.report.quarter)
            for c in r.report.cells:
                key = (source, period, _TABLE[c.dimension], c.category)
                if c.suppressed:
                    withheld.add(key)
                else:
                    shown[key] = c.count
        known = known_cells(shown, withheld, [Change(GROUP, period_of(2026, 3), (before, "leuven"))])
        assert (GROUP, period_of(2026, 3), "phase", 0) not in known  # the group's total after the change
    finally:
        await broker.stop(0)


_TABLE = {F.AGGREGATE_DIMENSION_PHASE: "phase", F.AGGREGATE_DIMENSION_CONCERN: "concern",
          F.AGGREGATE_DIMENSION_AGENCY: "agency", F.AGGREGATE_DIMENSION_DURATION_BAND: "duration",
          F.AGGREGATE_DIMENSION_PHASE_TIME: "phase_time", F.AGGREGATE_DIMENSION_FLOW: "flow"}
