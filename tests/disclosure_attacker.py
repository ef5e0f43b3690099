"""An attacker on the published quarterly figures, written apart from ``olievlek.suppression``.

It knows what any reader of ``docs/monitoring.md`` knows: every published value; that counts are
nonnegative integers; that an additive table's categories add up to its margin (the durations of closed
cases to the closed count); that concern and agency counts are each at most the open cases; the flow parts
(taken over <= alerts received; accepted <= received; accepted before release <= accepted; returned <=
received; accepted + returned <= received); the stock identity open(q) = open(q-1) + opened(q) - closed(q),
and across a membership change the same with the populations before added up. For every withheld cell it
solves two exact integer programs (HiGHS through ``scipy.optimize.milp``, integer variables, no LP
relaxation first): the least and the greatest value the cell can take. When they meet, the cell is known.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

TOTAL = 0
FLOW = "flow"
F = {name: i + 1 for i, name in enumerate((
    "opened", "closed", "alerts_sent", "alerts_received", "alerts_taken_over_within_a_month", "handovers_received",
    "handovers_accepted", "handovers_accepted_before_release", "handovers_returned", "erasures_on_time",
    "erasures_late"))}
# (part, whole) of the flow table, and disjoint parts with their whole - as the documentation states them.
FLOW_LEQ = (("alerts_taken_over_within_a_month", "alerts_received"), ("handovers_accepted", "handovers_received"),
            ("handovers_accepted_before_release", "handovers_accepted"), ("handovers_returned", "handovers_received"))
FLOW_SUMS = ((("handovers_accepted", "handovers_returned"), "handovers_received"),)

Key = tuple[str, int, str, int]  # (source, period, table, category): the same fields as a published cell


@dataclass(frozen=True)
class Change:
    """A population that changed: open(after, period) = sum of open(before_i, period - 1) + opened - closed."""

    after: str
    period: int
    before: tuple[str, ...]


def _knowledge(cells: Iterable[Key], changes: Iterable[Change]) -> tuple[list[dict[Key, int]], list[dict[Key, int]]]:
    """(equations sum(k * x) == 0, inequalities sum(k * x) <= 0) over the cells that exist."""
    present = set(cells)
    eq: list[dict[Key, int]] = []
    le: list[dict[Key, int]] = []
    groups: dict[tuple[str, int, str], list[Key]] = {}
    for c in present:
        groups.setdefault(c[:3], []).append(c)
    for (source, period, table), members in groups.items():
        if table in ("phase", "phase_time"):
            eq.append({**{c: 1 for c in members if c[3] != TOTAL}, (source, period, table, TOTAL): -1})
        elif table == "duration":
            eq.append({**{c: 1 for c in members}, (source, period, FLOW, F["closed"]): -1})
        elif table in ("concern", "agency"):
            le += [{c: 1, (source, period, "phase", TOTAL): -1} for c in members]
        elif table == FLOW:
            for part, whole in FLOW_LEQ:
                le.append({(source, period, FLOW, F[part]): 1, (source, period, FLOW, F[whole]): -1})
            for sum_parts, whole in FLOW_SUMS:
                le.append({**{(source, period, FLOW, F[p]): 1 for p in sum_parts},
                           (source, period, FLOW, F[whole]): -1})
    for source, period, table, category in present:
        if table == "phase" and category == TOTAL and (source, period - 1, "phase", TOTAL) in present:
            eq.append({(source, period, "phase", TOTAL): 1, (source, period - 1, "phase", TOTAL): -1,
                       (source, period, FLOW, F["opened"]): -1, (source, period, FLOW, F["closed"]): 1})
    for ch in changes:
        eq.append({(ch.after, ch.period, "phase", TOTAL): 1, (ch.after, ch.period, FLOW, F["opened"]): -1,
                   (ch.after, ch.period, FLOW, F["closed"]): 1,
                   **{(b, ch.period - 1, "phase", TOTAL): -1 for b in ch.before}})
    return [r for r in eq if all(c in present for c in r)], [r for r in le if all(c in present for c in r)]


def known_cells(published: dict[Key, int], withheld: set[Key], changes: Iterable[Change] = ()) -> dict[Key, int]:
    """Every withheld cell whose value the published figures fix exactly, with that value."""
    return {c: int(low) for c, (low, high) in intervals(published, withheld, changes).items() if low == high}


def intervals(published: dict[Key, int], withheld: set[Key], changes: Iterable[Change] = ()
              ) -> dict[Key, tuple[float, float]]:
    """The least and the greatest value each withheld cell can take (the greatest may be infinite)."""
    eq, le = _knowledge([*published, *withheld], changes)
    # Cells that share no constraint cannot narrow each other: solve each connected group on its own.
    group = {c: c for c in withheld}

    def root(c: Key) -> Key:
        while group[c] != c:
            c = group[c]
        return c

    for rule in eq + le:
        linked = [c for c in rule if c in group]
        for c in linked[1:]:
            group[root(c)] = root(linked[0])
    out: dict[Key, tuple[float, float]] = {}
    for r in {root(c) for c in withheld}:
        out |= _solve(published, sorted(c for c in withheld if root(c) == r), eq, le)
    return out


def _solve(published: dict[Key, int], unknown: list[Key], eq: list[dict[Key, int]], le: list[dict[Key, int]]
           ) -> dict[Key, tuple[float, float]]:
    index = {c: i for i, c in enumerate(unknown)}
    rows, lower, upper = [], [], []
    for rule, is_eq in [(r, True) for r in eq] + [(r, False) for r in le]:
        if not any(c in index for c in rule):
            continue
        row = np.zeros(len(unknown))
        rest = 0
        for c, k in rule.items():
            if c in index:
                row[index[c]] += k
            elif c in published:
                rest += k * published[c]
            else:  # a withheld cell of another group: this rule does not touch ours (grouped by rules)
                raise AssertionError(f"{c} links two groups")
        if not row.any():
            continue
        rows.append(row)
        lower.append(-rest if is_eq else -np.inf)
        upper.append(-rest)
    constraints = [LinearConstraint(np.array(rows), lower, upper)] if rows else []
    integral, bounds = np.ones(len(unknown)), Bounds(0, np.inf)
    found: dict[Key, tuple[float, float]] = {}
    for c, i in index.items():
        objective = np.zeros(len(unknown))
        values: list[float] = []
        for sign in (1, -1):
            objective[i] = sign
            result = milp(objective, constraints=constraints, integrality=integral, bounds=bounds,
                          options={"mip_rel_gap": 0})
            # 2: infeasible would mean the published figures contradict the knowledge (a bug here); 3 and 4:
            # unbounded (HiGHS may not tell unbounded from infeasible apart first): no greatest value.
            assert result.status in (0, 3, 4), f"the attacker could not solve: {result}"
            values.append(round(float(result.x[i])) if result.status == 0 else np.inf)
        found[c] = (values[0], values[1])
    return found


def random_history(rng: random.Random, quarters: int, start: int = 14) -> list[dict[str, object]]:
    """Consecutive quarters of one publisher whose stock moves by opened minus closed (the shape
    ``tests/test_disclosure_attack.py`` feeds to ``protect``): phases, concerns, duration bands, flows."""
    stock, out = rng.randint(0, start), []
    for _ in range(quarters):
        opened = rng.randint(0, 12)
        closed = rng.randint(0, min(stock + opened, 12))
        stock += opened - closed
        a = rng.randint(0, stock)
        b = rng.randint(0, stock - a)
        rest, bands = closed, []
        for band in range(5):
            n = rest if band == 4 else rng.randint(0, rest)
            bands.append(n)
            rest -= n
        received, hreceived = rng.randint(0, 10), rng.randint(0, 10)
        accepted = rng.randint(0, hreceived)
        out.append({"phases": (a, b, stock - a - b), "concerns": tuple(rng.randint(0, stock) for _ in range(3)),
                    "bands": tuple(bands),
                    "flow": {name: 0 for name in F} | {
                        "opened": opened, "closed": closed, "alerts_sent": rng.randint(0, 10),
                        "alerts_received": received, "alerts_taken_over_within_a_month": rng.randint(0, received),
                        "handovers_received": hreceived, "handovers_accepted": accepted,
                        "handovers_accepted_before_release": rng.randint(0, accepted),
                        "handovers_returned": rng.randint(0, hreceived - accepted),
                        "erasures_on_time": rng.randint(0, 6), "erasures_late": rng.randint(0, 3)}})
    return out
