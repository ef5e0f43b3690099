"""The officers' directory report: per holder, entries and new registrations against its own history and the
operators' evaluation counts, with flags for what stands out.

A planting municipality must pseudonymise every national number it plants (the operators count that) and
register the entries (the broker counts that, per UTC day, ``register_usage``); an honest one registers its
follow-up cases at the pace its cases open. The flags are prompts to look, never verdicts: a new holder's
first day is a burst too. Monitoring figures are never used - they are suppressed for a reason - and the
report is shown only to the bundle's data-protection officers, because a per-holder entry count is a small
case number (``docs/directory.md``). This module does no I/O.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from olievlek.v1 import broker_pb2

BURST_MIN = 20  # new entries in a day below this never count as a burst
BURST_FACTOR = 5  # times the holder's own daily median
EVALUATION_SLACK = 10  # evaluations an operator has not reported yet
EVALUATIONS_PER_ENTRY = 10  # more than this many evaluations per new entry (plus the floor below) stands out
EVALUATIONS_FLOOR = 200
NEAR_QUOTA = 0.9


@dataclass(frozen=True, slots=True)
class HolderFacts:
    holder: str
    entries: int
    today: int  # new entries this UTC day
    history: tuple[int, ...]  # new entries on each earlier day of the window, zeros included
    evaluations: int  # over the window and today
    quota: int


def flags(f: HolderFacts) -> list[broker_pb2.HolderFlag.ValueType]:
    out: list[broker_pb2.HolderFlag.ValueType] = []
    median = statistics.median(f.history) if f.history else 0
    if f.today >= max(BURST_MIN, BURST_FACTOR * median):
        out.append(broker_pb2.HOLDER_FLAG_BURST)
    registered = f.today + sum(f.history)
    if registered > f.evaluations + EVALUATION_SLACK:
        out.append(broker_pb2.HOLDER_FLAG_ENTRIES_WITHOUT_EVALUATIONS)
    if f.evaluations > EVALUATIONS_PER_ENTRY * registered + EVALUATIONS_FLOOR:
        out.append(broker_pb2.HOLDER_FLAG_EVALUATIONS_WITHOUT_ENTRIES)
    if f.quota and f.entries >= NEAR_QUOTA * f.quota:
        out.append(broker_pb2.HOLDER_FLAG_NEAR_QUOTA)
    return out


def activity(f: HolderFacts) -> broker_pb2.HolderActivity:
    return broker_pb2.HolderActivity(
        holder=f.holder, entries=f.entries, registered_today=f.today, registered_before=sum(f.history),
        median_day=int(statistics.median(f.history)) if f.history else 0, evaluations=f.evaluations,
        entry_quota=f.quota, flags=flags(f))
