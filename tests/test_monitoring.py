"""A monitoring round: municipalities report a quarter, the monitor renders the dashboard in Chromium.

Real broker, pseudonymisers and nodes (gent, antwerpen, the monitor vvsg) on loopback; the reports go
through the local API and the broker; the dashboard is written by the `olievlek` CLI and rendered by
Debian's headless Chromium driven by Selenium.
"""

from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path

import pytest
from olievlek.node.server import NodeServer

from olievlek.identity import OrgKind
from olievlek.regions import Key, combine
from olievlek.v1 import local_pb2, summary_pb2

from .conftest import NodeFactory
from .envelopes import local, valid_nrn
from .federations import cli
from .tools import require

pytestmark = pytest.mark.timeout(150)
F = summary_pb2


nrn = valid_nrn


async def _open(node: NodeServer, n: int, month: int, phase: int, concerns: list[int], serial: int) -> None:
    for i in range(n):
        ident = local_pb2.Identity(national_number=nrn(f"7{serial:02d}1{i:02d}{month:03d}"[:9]), given_names="M",
                                   family_name="N")
        await local(node, local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
            identity=ident, phase=phase, concerns=concerns, opened_year=2026, opened_month=month)))  # type: ignore[arg-type]


async def _report(node: NodeServer, quarter: int) -> local_pb2.MonitorReportResponse:
    r = await local(node, local_pb2.LocalRequest(monitor_report=local_pb2.MonitorReportRequest(
        year=2026, quarter=quarter, send=True)))
    return r.monitor_report


@pytest.fixture
async def round_(broker, nodes: NodeFactory) -> tuple[NodeServer, NodeServer, NodeServer]:  # type: ignore[no-untyped-def]
    gent = await nodes.start("gent", broker.port)
    antwerpen = await nodes.start("antwerpen", broker.port)
    vvsg = await nodes.start("vvsg", broker.port, kind=OrgKind.MONITOR)
    await _open(gent, 6, 4, F.PHASE_FOLLOW_UP, [F.CONCERN_CATEGORY_RIGHT_WING], 10)   # opened in Q2
    await _open(gent, 5, 8, F.PHASE_PRE_ANALYSIS, [F.CONCERN_CATEGORY_ISLAMIST], 20)  # opened in Q3
    await _open(antwerpen, 3, 7, F.PHASE_FOLLOW_UP, [F.CONCERN_CATEGORY_LEFT_WING], 30)
    for node in (gent, antwerpen):
        for q in (2, 3):
            assert (await _report(node, q)).status == "accepted"
    return gent, antwerpen, vvsg


async def test_a_small_municipality_reveals_none_of_its_cases(
        round_: tuple[NodeServer, NodeServer, NodeServer]) -> None:
    gent, antwerpen, _vvsg = round_
    small = (await _report(antwerpen, 3)).report  # kept: the same report, resent once
    case_tables = (F.AGGREGATE_DIMENSION_PHASE, F.AGGREGATE_DIMENSION_CONCERN, F.AGGREGATE_DIMENSION_AGENCY)
    assert all(c.suppressed and c.count == 0 for c in small.cells if c.dimension in case_tables)
    big = (await _report(gent, 3)).report
    total = next(c for c in big.cells if c.dimension == F.AGGREGATE_DIMENSION_PHASE and c.category == 0)
    assert (total.count, total.suppressed) == (11, False)
    with pytest.raises(Exception, match="not over"):
        await local(gent, local_pb2.LocalRequest(monitor_report=local_pb2.MonitorReportRequest(year=2026,
                                                                                                quarter=4)))
    with pytest.raises(Exception, match="in order"):
        await local(gent, local_pb2.LocalRequest(monitor_report=local_pb2.MonitorReportRequest(year=2026,
                                                                                                quarter=1)))


async def _reports_at(vvsg: NodeServer, count: int) -> None:
    deadline = time.monotonic() + 20
    while len((await local(vvsg, local_pb2.LocalRequest(
            monitor_list=local_pb2.MonitorListRequest()))).monitor_list.reports) < count:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def test_the_dashboard_renders_in_chromium_and_answers_the_questions(
        round_: tuple[NodeServer, NodeServer, NodeServer], tmp_path: Path) -> None:
    _gent, _antwerpen, vvsg = round_
    await _reports_at(vvsg, 4)
    out = tmp_path / "dash"
    r = await asyncio.to_thread(cli, "--lang", "nl", "report", "dashboard", "--socket", str(vvsg.config.socket),
                                "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 rapporten samengevoegd" in r.stdout  # Dutch by default
    rows = list(csv.DictReader((out / "figures.csv").open()))
    phase_total = [x for x in rows if x["region"] == "*" and x["quarter"] == "2026Q3" and x["table"] == "phase"
                   and x["category"] == "0"]
    assert phase_total == [{"region": "*", "quarter": "2026Q3", "table": "phase", "category": "0", "value": "11",
                            "partial": "1"}]  # gent's 11; antwerpen's 3 withheld
    tools = require("chromium", "chromedriver")
    texts, png = await asyncio.to_thread(_render, tools, out / "dashboard.html", tmp_path / "dashboard.png")
    assert texts["titles"] == 4  # one chart per evaluation question
    for series in ("verhuismeldingen ontvangen", "binnen een maand overgenomen", "aanvaard vóór de vrijlating",
                   "rechtsextremisme", "islamistisch", "linksextremisme", "minder dan 1 maand"):
        assert series in texts["legend"], (series, texts["legend"])
    assert texts["bars"] > 0
    assert png.stat().st_size > 20_000  # a real rendering, not a blank page
    print(f"screenshot {png} ({png.stat().st_size} bytes)")


def _render(tools: dict[str, str], page: Path, shot: Path) -> tuple[dict[str, object], Path]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = tools["chromium"]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,3200"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(tools["chromedriver"]), options=options)
    try:
        driver.get(page.as_uri())
        WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".main-svg")) >= 4)
        legend = " | ".join(e.get_attribute("textContent") or "" for e in
                            driver.find_elements(By.CSS_SELECTOR, ".legendtext"))
        texts = {"legend": legend, "titles": len(driver.find_elements(By.CSS_SELECTOR, ".gtitle")),
                 "bars": len(driver.find_elements(By.CSS_SELECTOR, ".bars .point"))}
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    return texts, shot


async def test_the_report_speaks_dutch_and_english(round_: tuple[NodeServer, NodeServer, NodeServer]) -> None:
    gent, _antwerpen, _vvsg = round_
    sock = str(gent.config.socket)
    nl = await asyncio.to_thread(cli, "--lang", "nl", "report", "monitor", "--socket", sock, "--quarter", "2026Q3",
                                 "--dry-run")
    en = await asyncio.to_thread(cli, "--lang", "en", "report", "monitor", "--socket", sock, "--quarter", "2026Q3",
                                 "--dry-run")
    assert nl.returncode == en.returncode == 0, nl.stderr + en.stderr
    assert "Monitoringrapport 2026Q3" in nl.stdout and "achtergehouden" in nl.stdout and "opvolging" in nl.stdout
    assert "Monitoring report 2026Q3" in en.stdout and "withheld" in en.stdout and "follow-up" in en.stdout


async def test_a_look_keeps_nothing_and_a_reported_quarter_takes_no_late_cases(broker, nodes: NodeFactory) -> None:  # type: ignore[no-untyped-def]
    leuven = await nodes.start("leuven", broker.port)
    await _open(leuven, 5, 7, F.PHASE_FOLLOW_UP, [F.CONCERN_CATEGORY_UNCLEAR], 40)
    look = await local(leuven, local_pb2.LocalRequest(monitor_report=local_pb2.MonitorReportRequest(
        year=2026, quarter=3, send=False)))
    assert look.monitor_report.outbox_id == 0 and len(look.monitor_report.report.cells) > 40
    assert (await _report(leuven, 2)).status == "accepted"  # Q3 was only looked at: Q2 can still go first
    assert (await _report(leuven, 3)).status == "accepted"
    with pytest.raises(Exception, match="already reported"):
        await _open(leuven, 1, 8, F.PHASE_FOLLOW_UP, [], 41)  # August 2026 lies in the reported Q3


async def test_a_cooperation_combines_its_members_before_suppression(broker, nodes: NodeFactory) -> None:  # type: ignore[no-untyped-def]
    mechelen = await nodes.start("mechelen", broker.port)
    leuven = await nodes.start("leuven", broker.port)
    zennevallei = await nodes.start("livc-zennevallei", broker.port)  # the group's aggregator (bundle)
    vvsg = await nodes.start("vvsg", broker.port, kind=OrgKind.MONITOR)
    RIGHT, ISLAMIST = F.CONCERN_CATEGORY_RIGHT_WING, F.CONCERN_CATEGORY_ISLAMIST
    for node, (follow, follow_c), (pre, pre_c), serial in ((mechelen, (3, RIGHT), (1, ISLAMIST), 50),
                                                          (leuven, (3, RIGHT), (2, ISLAMIST), 60),
                                                          (zennevallei, (4, ISLAMIST), (3, RIGHT), 70)):
        await _open(node, follow, 7, F.PHASE_FOLLOW_UP, [follow_c], serial)  # every member: counts under 5
        await _open(node, pre, 8, F.PHASE_PRE_ANALYSIS, [pre_c], serial + 5)
    with pytest.raises(Exception, match="mechelen"):  # the group waits for every member's figures
        await _report(zennevallei, 3)
    for member in (mechelen, leuven):
        sent = await _report(member, 3)  # unsuppressed, to the aggregator only: the rule allows nothing else
        assert sent.status == "accepted" and sent.recipient == "livc-zennevallei"
        assert not any(c.suppressed for c in sent.report.cells)
    deadline = time.monotonic() + 20
    while True:
        try:
            group = await _report(zennevallei, 3)
            break
        except Exception:
            assert time.monotonic() < deadline, "the members' figures did not reach the aggregator"
            await asyncio.sleep(0.2)
    assert group.status == "accepted" and group.report.source == "olievlek-rand"
    cells = {(c.dimension, c.category): c for c in group.report.cells}
    # The group's figures are the sums of the members' unsuppressed ones: 3+3+3 right-wing, 1+2+4 islamist.
    assert (cells[(F.AGGREGATE_DIMENSION_CONCERN, RIGHT)].count, cells[(F.AGGREGATE_DIMENSION_CONCERN, ISLAMIST)].count
            ) == (9, 7)
    assert all(c.count >= 5 for c in group.report.cells if not c.suppressed)
    await _reports_at(vvsg, 1)
    received = (await local(vvsg, local_pb2.LocalRequest(monitor_list=local_pb2.MonitorListRequest()))).monitor_list
    assert [(r.sender, r.report.source) for r in received.reports] == [("livc-zennevallei", "olievlek-rand")]
    figures = combine(((r.sender, r.report) for r in received.reports), dict(received.regions),
                      dict(received.aggregators))
    key = Key("olievlek-rand", 2026, 3, F.AGGREGATE_DIMENSION_CONCERN, RIGHT)
    assert (figures[key].value, figures[key].partial) == (9, False)
    # Nobody but the aggregator speaks for the group: a report claiming to be its figures is ignored.
    forged = F.AggregateReport(year=2026, quarter=3, source="olievlek-rand")
    forged.cells.add(dimension=F.AGGREGATE_DIMENSION_CONCERN, category=RIGHT, count=99)
    again = combine([*((r.sender, r.report) for r in received.reports), ("gent", forged)], dict(received.regions),
                    dict(received.aggregators))
    assert again[key].value == 9
