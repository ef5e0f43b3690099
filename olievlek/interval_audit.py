"""Protection intervals of withheld cells, proven with linear and integer programs (HiGHS through scipy).

Exact recovery is not the only disclosure. With the inequalities the data always obeys (a part at most its
whole, nonnegative integers) an attacker can prove that a withheld count lies in a narrow interval, or that
it is at least 1 - that a small municipality has a case of a kind. So every withheld cell is audited over
everything the monitor holds that links to it (``docs/monitoring.md``):

- a **primary** cell (true value 0-4) must keep the interval [0, >= 5]: nobody can prove its presence, its
  absence, or that it is under the threshold;
- a **complementary** cell (true value >= 5) must only not be determined exactly.

The audit runs per connected block of withheld cells (cells that share a constraint). Stage one: a linear
program per cell and direction; the LP interval contains the integer one, so an LP interval that breaks the
requirement is a proven failure. Stage two: for every cell the LP passes, the same as a mixed-integer program
(``mip_rel_gap=0``), since an LP pass proves nothing against an integer attacker - skipped only for a block
that is one additive table with its margin (totally unimodular: LP vertices are integral). Every solve has
a time limit; one that hits it counts as a failure (the cautious answer). This is an audit of a given
suppression, chosen greedily by ``olievlek.suppression.protect`` - not tau-ARGUS's optimal cell suppression,
which is NP-hard and solved there with commercial solvers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from .suppression import THRESHOLD, Cell, Constraint, Figures

TIME_LIMIT_S = 2.0  # per solve; a solve that needs longer counts as a failure


class Stage(StrEnum):
    LP = "lp"
    MILP = "milp"
    TIME_LIMIT = "time_limit"


@dataclass(frozen=True, slots=True)
class Failure:
    """A withheld cell whose proven interval is too narrow: [low, high] as the stage found it."""

    cell: Cell
    low: float
    high: float
    stage: Stage


def meets(value: int, low: float, high: float) -> bool:
    """Whether [low, high] protects a withheld cell whose true value is ``value``."""
    if value < THRESHOLD:
        return low < 1 and high >= THRESHOLD
    return high - low >= 1


def blocks(withheld: set[Cell], constraints: Iterable[Constraint]) -> list[list[Cell]]:
    """Connected blocks of withheld cells: two are connected when a constraint names both."""
    parent = {c: c for c in withheld}

    def find(c: Cell) -> Cell:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for rule in constraints:
        mine = [c for c, _ in rule.terms if c in parent]
        for other in mine[1:]:
            parent[find(other)] = find(mine[0])
    out: dict[Cell, list[Cell]] = {}
    for c in sorted(withheld):
        out.setdefault(find(c), []).append(c)
    return list(out.values())


@dataclass
class _Program:
    cells: list[Cell]
    a_eq: np.ndarray
    b_eq: np.ndarray
    a_ub: np.ndarray
    b_ub: np.ndarray
    unimodular: bool


def _program(block: list[Cell], figures: Figures, equal: list[Constraint], at_most: list[Constraint]) -> _Program:
    index = {c: i for i, c in enumerate(block)}
    rows: dict[bool, tuple[list[np.ndarray], list[float]]] = {True: ([], []), False: ([], [])}
    for rule, exact in [(r, True) for r in equal] + [(r, False) for r in at_most]:
        if not any(c in index for c, _ in rule.terms):
            continue
        row = np.zeros(len(block))
        rest = 0.0
        for c, k in rule.terms:
            if c in index:
                row[index[c]] += k
            else:
                rest += k * figures.values.get(c, 0)
        if row.any():
            rows[exact][0].append(row)
            rows[exact][1].append(-rest)
    eq, ub = rows[True], rows[False]
    unimodular = len(eq[0]) == 1 and not ub[0] and bool(np.all(np.isin(eq[0][0], (-1.0, 0.0, 1.0))))
    width = len(block)
    return _Program(block, np.array(eq[0]).reshape(-1, width), np.array(eq[1]), np.array(ub[0]).reshape(-1, width),
                    np.array(ub[1]), unimodular)


@dataclass(frozen=True, slots=True)
class _Bound:
    """An LP bound, and whether the LP's optimum is an integer point - then the integer bound is the same."""

    value: float
    integral: bool


def _lp(p: _Program, i: int, sign: int, time_limit_s: float) -> _Bound | None:
    """The least (sign 1) or greatest (sign -1) value of cell ``i`` over the LP; None: hit the time limit."""
    c = np.zeros(len(p.cells))
    c[i] = sign
    r = linprog(c, A_ub=p.a_ub if len(p.b_ub) else None, b_ub=p.b_ub if len(p.b_ub) else None,
                A_eq=p.a_eq if len(p.b_eq) else None, b_eq=p.b_eq if len(p.b_eq) else None,
                bounds=(0, None), method="highs", options={"time_limit": time_limit_s})
    if r.status == 3:  # unbounded: so is the integer program (rational data with an integer point)
        return _Bound(-math.inf if sign > 0 else math.inf, True)
    if r.status != 0 or r.fun is None or r.x is None:
        return None
    return _Bound(float(r.fun) * sign, bool(np.allclose(r.x, np.round(r.x), atol=1e-7)))


def _milp(p: _Program, i: int, sign: int, time_limit_s: float) -> float | None:
    c = np.zeros(len(p.cells))
    c[i] = sign
    constraints = []
    if len(p.b_eq):
        constraints.append(LinearConstraint(p.a_eq, p.b_eq, p.b_eq))
    if len(p.b_ub):
        constraints.append(LinearConstraint(p.a_ub, -np.inf, p.b_ub))
    r = milp(c, constraints=constraints, integrality=np.ones(len(p.cells), dtype=np.int8), bounds=Bounds(0, np.inf),
             options={"time_limit": time_limit_s, "mip_rel_gap": 0})
    if r.status in (3, 4) and sign < 0:  # unbounded above (HiGHS may not tell it from infeasible)
        return math.inf
    if r.status != 0 or r.fun is None:
        return None
    return float(round(r.fun)) * sign


def audit(figures: Figures, equal: list[Constraint], at_most: list[Constraint], cells: set[Cell] | None = None,
          time_limit_s: float = TIME_LIMIT_S, first: bool = False, skip: set[Cell] | None = None) -> list[Failure]:
    """Every withheld cell (of the blocks that hold one of ``cells``, default all) whose interval is too
    narrow, in cell order; with ``first``, only the first one found (a greedy round needs no more)."""
    withheld = set(figures.suppressed)
    failures: list[Failure] = []
    for block in blocks(withheld, equal + at_most):
        if cells is not None and not cells.intersection(block):
            continue
        p = _program(block, figures, equal, at_most)
        for i, cell in enumerate(block):
            if skip and cell in skip:
                continue
            failure = _check(p, i, cell, figures.values.get(cell, 0), time_limit_s)
            if failure is not None:
                failures.append(failure)
                if first:
                    return failures
    return failures


def _check(p: _Program, i: int, cell: Cell, value: int, time_limit_s: float) -> Failure | None:
    """The LP stage, then (where the LP passes and its optimum is not already an integer point) the integer
    stage, for one cell."""
    # A true value of 0 is a feasible point at the lower bound of every cell: its least value is 0.
    low = _Bound(0.0, True) if value == 0 else _lp(p, i, 1, time_limit_s)
    high = _lp(p, i, -1, time_limit_s)
    if low is None or high is None:
        return Failure(cell, low.value if low else 0.0, high.value if high else 0.0, Stage.TIME_LIMIT)
    lo = math.ceil(low.value - 1e-9)
    hi = math.floor(high.value + 1e-9) if math.isfinite(high.value) else high.value
    if not meets(value, lo, hi):
        return Failure(cell, low.value, high.value, Stage.LP)
    if p.unimodular or (low.integral and high.integral):
        return None
    int_low = lo if low.integral else _milp(p, i, 1, time_limit_s)
    int_high = hi if high.integral else _milp(p, i, -1, time_limit_s)
    if int_low is None or int_high is None:
        return Failure(cell, int_low or 0.0, int_high or 0.0, Stage.TIME_LIMIT)
    if not meets(value, int_low, int_high):
        return Failure(cell, int_low, int_high, Stage.MILP)
    return None
