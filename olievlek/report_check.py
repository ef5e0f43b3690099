"""What the monitor checks in a quarterly report before it keeps (and so publishes) it.

Disclosure control happens at the sending node (``olievlek.suppression``), but the monitor publishes what it
keeps: a municipality that skips the control - or a cooperation member that sends its unsuppressed figures
straight to the monitor - would have small counts shown as exact regional figures. So the monitor checks
every report against what it can see on its own (``docs/monitoring.md``):

- the sender may report to the monitor at all (a cooperation's member never; its aggregator only for the
  group, with ``source`` set to the group);
- the quarter is over and not before the bundle's ``monitoring.first_quarter``;
- every cell is a known (table, category), at most once; a withheld cell carries no count;
- a published cell is at least the threshold and at most the bundle's ``monitoring.max_count``;
- a published part does not exceed its published whole (categories of an additive table summed, each
  concern or agency, flow parts).

It cannot check the sender's complementary suppression: that needs the sender's own earlier figures and
withheld values, which it never sees. A second report of the same quarter from the same sender is refused by
the monitor's node, which keeps the reports (``node/report_gate.py``). This module does no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from olievlek.errors import ErrorCode, OlievlekError
from olievlek.identity import OrgId
from olievlek.suppression import (
    ADDITIVE,
    FLOW_CATEGORY,
    FLOW_DISJOINT,
    FLOW_PARTS,
    THRESHOLD,
    TOTAL,
    margin,
    period_of,
)
from olievlek.v1 import summary_pb2

PHASES = (summary_pb2.PHASE_SIGNAL, summary_pb2.PHASE_PRE_ANALYSIS, summary_pb2.PHASE_FOLLOW_UP)
BANDS = tuple(range(1, 6))  # duration bands: < 1, 1-3, 3-6, 6-12, >= 12 months
DIMENSIONS = {"phase": summary_pb2.AGGREGATE_DIMENSION_PHASE, "concern": summary_pb2.AGGREGATE_DIMENSION_CONCERN,
              "agency": summary_pb2.AGGREGATE_DIMENSION_AGENCY,
              "duration": summary_pb2.AGGREGATE_DIMENSION_DURATION_BAND,
              "phase_time": summary_pb2.AGGREGATE_DIMENSION_PHASE_TIME, "flow": summary_pb2.AGGREGATE_DIMENSION_FLOW}
TABLE_OF = {v: k for k, v in DIMENSIONS.items()}
# Every (table, category) a report carries, zeros included: what a node reports and all the monitor accepts.
CATEGORIES: dict[str, tuple[int, ...]] = {
    "phase": (TOTAL, *PHASES),
    "duration": BANDS,
    "concern": tuple(summary_pb2.ConcernCategory.values()[1:]),
    "agency": tuple(summary_pb2.AgencyRole.values()[1:]),
    "phase_time": (TOTAL, *(p * 10 + b for p in PHASES for b in BANDS)),
    "flow": tuple(FLOW_CATEGORY.values()),
}
DEFAULT_MAX_COUNT = 10_000


class ReportProblem(StrEnum):
    """Why the monitor refuses a report (the code the sender's outbox shows)."""

    MEMBER_REPORTS_DIRECTLY = "member_reports_directly"
    NOT_FOR_THE_GROUP = "not_for_the_group"
    QUARTER_NOT_OVER = "quarter_not_over"
    BEFORE_FIRST_QUARTER = "before_first_quarter"
    UNKNOWN_CELL = "unknown_cell"
    DUPLICATE_CELL = "duplicate_cell"
    WITHHELD_WITH_COUNT = "withheld_with_count"
    BELOW_THRESHOLD = "below_threshold"
    IMPLAUSIBLE_COUNT = "implausible_count"
    ABOVE_MARGIN = "above_margin"
    SECOND_REPORT = "second_report"


class ReportRefused(OlievlekError):
    """A report the monitor does not keep; ``problem`` is the stable code, the message says which cell or why."""

    code = ErrorCode.REFUSED

    def __init__(self, problem: ReportProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class MonitoringLimits:
    """The bundle's ``monitoring.max_count`` and ``monitoring.first_quarter`` (as a period; 0: none)."""

    max_count: int = DEFAULT_MAX_COUNT
    first_period: int = 0


def quarter_end_ms(year: int, quarter: int) -> int:
    end = dt.datetime(year + (quarter == 4), 1 if quarter == 4 else 3 * quarter + 1, 1, tzinfo=dt.UTC)
    return int(end.timestamp() * 1000)


def parse_quarter(text: str) -> int:
    """``2026Q1`` as a period (``suppression.period_of``)."""
    year, quarter = text.split("Q")
    return period_of(int(year), int(quarter))


def check_sender(sender: str, source: str, combined: dict[OrgId, tuple[str, OrgId]]) -> None:
    """A cooperation's member never reports to the monitor; its aggregator only for the group.

    Raises:
        ReportRefused: MEMBER_REPORTS_DIRECTLY or NOT_FOR_THE_GROUP.
    """
    entry = combined.get(OrgId(sender))
    if entry is not None:
        group, aggregator = entry
        if str(aggregator) != sender:
            raise ReportRefused(ReportProblem.MEMBER_REPORTS_DIRECTLY,
                                f"{sender} combines its figures in {group}: they reach the monitor only through "
                                f"{aggregator}, suppressed as the group's")
        if source != group:
            raise ReportRefused(ReportProblem.NOT_FOR_THE_GROUP,
                                f"{sender} reports for {group} (source {group!r}), not {source or 'alone'!r}")
        return
    if source:
        raise ReportRefused(ReportProblem.NOT_FOR_THE_GROUP,
                            f"{sender} is not the aggregator of a cooperation; it reports no source ({source!r})")


def check_quarter(year: int, quarter: int, limits: MonitoringLimits, now_ms: int) -> None:
    """Raises ReportRefused: the quarter is not over, or before the bundle's first quarter."""
    if quarter_end_ms(year, quarter) > now_ms:
        raise ReportRefused(ReportProblem.QUARTER_NOT_OVER, f"{year}Q{quarter} is not over")
    if period_of(year, quarter) < limits.first_period:
        first = f"{limits.first_period // 4}Q{limits.first_period % 4 + 1}"
        raise ReportRefused(ReportProblem.BEFORE_FIRST_QUARTER, f"{year}Q{quarter} is before {first}, the first "
                            "quarter the bundle monitors")


def _cells(report: summary_pb2.AggregateReport, limits: MonitoringLimits) -> dict[tuple[str, int], int | None]:
    """(table, category) -> published count, or None when withheld; refuses what no report may carry."""
    out: dict[tuple[str, int], int | None] = {}
    for cell in report.cells:
        table = TABLE_OF.get(cell.dimension)
        name = f"{table or cell.dimension}/{cell.category}"
        if table is None or cell.category not in CATEGORIES[table]:
            raise ReportRefused(ReportProblem.UNKNOWN_CELL, f"cell {name} is not a cell of any report table")
        if (table, cell.category) in out:
            raise ReportRefused(ReportProblem.DUPLICATE_CELL, f"cell {name} appears twice")
        if cell.suppressed:
            if cell.count:
                raise ReportRefused(ReportProblem.WITHHELD_WITH_COUNT, f"cell {name} is withheld but carries a count")
            out[(table, cell.category)] = None
            continue
        if cell.count < THRESHOLD:
            raise ReportRefused(ReportProblem.BELOW_THRESHOLD, f"cell {name} publishes {cell.count}, under the "
                                f"threshold {THRESHOLD}: it must be withheld")
        if cell.count > limits.max_count:
            raise ReportRefused(ReportProblem.IMPLAUSIBLE_COUNT, f"cell {name} publishes {cell.count}, above the "
                                f"bundle's maximum {limits.max_count}")
        out[(table, cell.category)] = int(cell.count)
    return out


def _wholes(cells: Iterable[tuple[str, int]]) -> list[tuple[tuple[str, int], list[tuple[str, int]]]]:
    """(whole, parts whose published sum may not exceed it)."""
    def key(table: str) -> tuple[str, int]:
        m = margin("", 0, table)
        return m.table, m.category

    out: list[tuple[tuple[str, int], list[tuple[str, int]]]] = []
    present = set(cells)
    for table in sorted(ADDITIVE):
        out.append((key(table), [c for c in present if c[0] == table and c[1] != TOTAL]))
    for table in ("concern", "agency"):  # multi-valued: each one alone is a part of the open cases
        out += [(key(table), [c]) for c in present if c[0] == table]
    out += [(("flow", FLOW_CATEGORY[w]), [("flow", FLOW_CATEGORY[p])]) for w, p in FLOW_PARTS]
    out += [(("flow", FLOW_CATEGORY[w]), [("flow", FLOW_CATEGORY[p]) for p in group]) for w, group in FLOW_DISJOINT]
    return out


def check_report(sender: str, report: summary_pb2.AggregateReport, combined: dict[OrgId, tuple[str, OrgId]],
                 limits: MonitoringLimits, now_ms: int) -> None:
    """Everything the monitor can check in one report on its own.

    Raises:
        ReportRefused: the first problem found, naming the cell or the rule.
    """
    check_sender(sender, report.source, combined)
    check_quarter(report.year, report.quarter, limits, now_ms)
    cells = _cells(report, limits)
    for whole, parts in _wholes(cells):
        total = cells.get(whole)
        published = [(p, cells[p]) for p in parts if cells.get(p) is not None]
        if total is None or not published:
            continue
        if sum(n for _, n in published if n is not None) > total:
            names = ", ".join(f"{t}/{c}" for (t, c), _ in sorted(published))
            raise ReportRefused(ReportProblem.ABOVE_MARGIN, f"{names} add up to more than {whole[0]}/{whole[1]} "
                                f"({total})")
