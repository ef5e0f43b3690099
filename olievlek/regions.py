"""Combining published quarterly reports per region, without undoing their suppression.

A region's figure is the sum of its members' *published* figures and is marked ``partial`` when a
member withheld its figure: the sum is then a lower bound. Nothing a member withheld enters any sum,
so no regional figure, and no difference between two regional figures (even of overlapping regions),
says more than the members' published figures already said.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from olievlek.v1 import summary_pb2


@dataclass(frozen=True, slots=True, order=True)
class Key:
    region: str
    year: int
    quarter: int
    dimension: summary_pb2.AggregateDimension.ValueType
    category: int


@dataclass(slots=True)
class Figure:
    value: int = 0
    partial: bool = False
    members: int = 0


def combine(reports: Iterable[tuple[str, summary_pb2.AggregateReport]],
            region_of: dict[str, str], aggregators: dict[str, str] | None = None) -> dict[Key, Figure]:
    """Sum each region's published figures per quarter, table and category; a report of an
    organisation in no region counts in the region ``""`` (the whole federation only). A report that
    speaks for a group (``source``) counts only when its sender is that group's aggregator."""
    aggregators = aggregators or {}
    out: dict[Key, Figure] = {}
    latest: dict[tuple[str, int, int], summary_pb2.AggregateReport] = {}
    for sender, report in reports:  # a resent report is the same report: count it once
        if report.source and aggregators.get(report.source) != sender:
            continue  # nobody else speaks for a group
        # A cooperation's combined report counts for the group (its aggregator only carried it).
        latest[(report.source or sender, report.year, report.quarter)] = report
    for (sender, year, quarter), report in sorted(latest.items()):
        for region in {region_of.get(sender, ""), "*"}:
            for cell in report.cells:
                fig = out.setdefault(Key(region, year, quarter, cell.dimension, cell.category), Figure())
                fig.members += 1
                if cell.suppressed:
                    fig.partial = True
                else:
                    fig.value += cell.count
    return out
