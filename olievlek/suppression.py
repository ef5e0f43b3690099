"""Statistical disclosure control for the quarterly monitoring figures.

Most municipalities follow a handful of people, so a naive table identifies them. The method
(``docs/monitoring.md``):

1. **Primary suppression**: every cell and every margin under ``THRESHOLD`` (5) is suppressed,
   zeros included (a published zero says "nobody here has this", which is itself a disclosure).
2. **Complementary suppression, checked by an attacker**: the published figures of a quarter,
   together with what the same source published in earlier quarters, are written as a linear system
   over the unknown (suppressed) values: each additive table sums to its margin, tables that count the
   same population share one margin variable, and the stock of open cases moves by opened minus
   closed from one quarter to the next. ``recoverable`` finds every suppressed value that the
   system determines exactly (its unit vector lies in the row space, by exact rational elimination),
   and every value forced to zero by a nonnegative sum that must be zero. While one is found, another
   cell of *this* quarter in a constraint that determines it is suppressed (the smallest published
   one; earlier quarters are already out and stay as they are), and the check runs again.

The attacker is the same one the tests run independently; what it cannot do (intervals such as
"at most 4") is stated in the docs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

THRESHOLD = 5
TOTAL = 0  # the category number of a table's margin


@dataclass(frozen=True, slots=True, order=True)
class Cell:
    """One figure: which source (an organisation or a group), which quarter, which table and category."""

    source: str
    period: int  # year * 4 + quarter - 1, so consecutive quarters are consecutive integers
    table: str
    category: int


@dataclass(frozen=True, slots=True)
class Constraint:
    """sum(coefficient * value) == 0 over the cells named."""

    terms: tuple[tuple[Cell, int], ...]


@dataclass
class Figures:
    """Values of cells, and which of them are withheld."""

    values: dict[Cell, int] = field(default_factory=dict)
    suppressed: set[Cell] = field(default_factory=set)

    def published(self, cell: Cell) -> int | None:
        return None if cell in self.suppressed else self.values.get(cell)


def period_of(year: int, quarter: int) -> int:
    return year * 4 + quarter - 1


# Tables whose categories partition the margin (each case in exactly one category).
ADDITIVE = frozenset({"phase", "duration", "phase_time"})
# The flow table's categories, numbered from 1 in this order.
FLOWS = ("opened", "closed", "alerts_sent", "alerts_received", "alerts_taken_over_within_a_month",
         "handovers_received", "handovers_accepted", "handovers_accepted_before_release", "handovers_returned",
         "erasures_on_time", "erasures_late")
FLOW_CATEGORY = {name: i + 1 for i, name in enumerate(FLOWS)}
# Counts of a part of another count (flow categories): a published part close to its whole gives the
# small rest away ("9 received, 7 accepted": 2 were not), so such a part is withheld.
FLOW_PARTS = (("alerts_received", "alerts_taken_over_within_a_month"), ("handovers_received", "handovers_accepted"),
              ("handovers_received", "handovers_returned"),
              ("handovers_accepted", "handovers_accepted_before_release"))
# Tables that count the cases open at the end of the quarter share one margin: the phase table's.
# (Concerns and agencies are multi-valued, so their cells do not add up to it.)
OPEN_CASES = ("phase", "concern", "agency")
FLOW = "flow"
OPENED, CLOSED = FLOW_CATEGORY["opened"], FLOW_CATEGORY["closed"]  # used by the stock identity


def margin(source: str, period: int, table: str) -> Cell:
    """The margin cell of a table: the open-case tables share the phase table's; the durations of closed
    cases add up to the flow table's "closed" (one figure, published or withheld once)."""
    if table == "duration":
        return Cell(source, period, FLOW, CLOSED)
    return Cell(source, period, "phase" if table in OPEN_CASES else table, TOTAL)


def parts(cells: Iterable[Cell]) -> list[tuple[Cell, Cell]]:
    """(whole, part) pairs among these cells: each concern or agency count is a part of the open cases,
    and the flow parts of their wholes."""
    out = []
    for c in cells:
        if c.table in ("concern", "agency") and c.category != TOTAL:
            out.append((margin(c.source, c.period, c.table), c))
        if c.table == FLOW:
            for whole, part in FLOW_PARTS:
                if c.category == FLOW_CATEGORY[part]:
                    out.append((Cell(c.source, c.period, FLOW, FLOW_CATEGORY[whole]), c))
    return out


def constraints(cells: Iterable[Cell]) -> list[Constraint]:
    """What an attacker knows holds between these cells, whatever their values."""
    by_table: dict[tuple[str, int, str], list[Cell]] = {}
    periods: dict[str, set[int]] = {}
    for c in cells:
        by_table.setdefault((c.source, c.period, c.table), []).append(c)
        periods.setdefault(c.source, set()).add(c.period)
    out = []
    for (source, period, table), members in by_table.items():
        if table in ADDITIVE:
            parts = [(c, 1) for c in members if c.category != TOTAL]
            out.append(Constraint((*parts, (margin(source, period, table), -1))))
    for source, ps in periods.items():
        for p in sorted(ps):
            if p - 1 in ps:  # stock(p) = stock(p-1) + opened(p) - closed(p)
                out.append(Constraint(((margin(source, p, "phase"), 1), (margin(source, p - 1, "phase"), -1),
                                       (Cell(source, p, FLOW, OPENED), -1), (Cell(source, p, FLOW, CLOSED), 1))))
    return out


def recoverable(figures: Figures, rules: list[Constraint]) -> set[Cell]:
    """Every suppressed cell whose value the published cells and the constraints determine exactly;
    what is found is used to find more (as an attacker would), until nothing more is."""
    found: set[Cell] = set()
    while more := _recoverable_once(figures, rules, figures.suppressed - found):
        found |= more
    return found


def _recoverable_once(figures: Figures, rules: list[Constraint], withheld: set[Cell]) -> set[Cell]:
    unknown = sorted(withheld)
    index = {c: i for i, c in enumerate(unknown)}
    rows: list[tuple[dict[int, Fraction], Fraction]] = []
    for rule in rules:
        coeffs: dict[int, Fraction] = {}
        rhs = Fraction(0)
        for cell, k in rule.terms:
            if cell in index:
                coeffs[index[cell]] = coeffs.get(index[cell], Fraction(0)) + k
            else:
                rhs -= k * figures.values.get(cell, 0)
        coeffs = {i: v for i, v in coeffs.items() if v}
        if coeffs:
            rows.append((coeffs, rhs))
    found: set[Cell] = set()
    for i in _determined(rows + _reduced(rows)):
        found.add(unknown[i])
    return found


def _determined(rows: list[tuple[dict[int, Fraction], Fraction]]) -> set[int]:
    """Unknowns fixed by an equation: the only unknown left in it, or one of nonnegative unknowns that
    must sum to zero (all of them are zero)."""
    fixed: set[int] = set()
    for coeffs, rhs in rows:
        if len(coeffs) == 1 or (rhs == 0 and (all(v > 0 for v in coeffs.values())
                                             or all(v < 0 for v in coeffs.values()))):
            fixed |= set(coeffs)
    return fixed


def _reduced(rows: list[tuple[dict[int, Fraction], Fraction]]) -> list[tuple[dict[int, Fraction], Fraction]]:
    """The equations in reduced row echelon form (exact rational elimination)."""
    pivots: dict[int, tuple[dict[int, Fraction], Fraction]] = {}
    for coeffs, rhs in rows:
        row, b = dict(coeffs), rhs
        for p, (prow, pb) in pivots.items():  # eliminate known pivots
            if p in row:
                f = row[p]
                for j, v in prow.items():
                    row[j] = row.get(j, Fraction(0)) - f * v
                b -= f * pb
                row = {j: v for j, v in row.items() if v}
        if not row:
            continue
        p = min(row)
        f = row[p]
        row = {j: v / f for j, v in row.items()}
        b /= f
        for q, (qrow, qb) in list(pivots.items()):  # keep every pivot row reduced
            if p in qrow:
                g = qrow[p]
                new = {j: qrow.get(j, Fraction(0)) - g * row.get(j, Fraction(0)) for j in set(qrow) | set(row)}
                pivots[q] = ({j: v for j, v in new.items() if v}, qb - g * b)
        pivots[p] = (row, b)
    return list(pivots.values())


def protect(figures: Figures, current: int, history: Figures | None = None,
            forced: frozenset[Cell] = frozenset()) -> Figures:
    """Suppress the current period's figures until no suppressed value can be recovered.

    ``figures`` holds one period's raw values (every source); ``history`` what the same sources
    published before (its suppressed set is final); ``forced`` cells withheld whatever their value.
    Returns the combined figures with the final suppression; the caller publishes the current period's.
    """
    combined = Figures(dict(history.values) if history else {}, set(history.suppressed) if history else set())
    combined.values.update(figures.values)
    for cell, value in figures.values.items():
        if value < THRESHOLD or cell in forced:
            combined.suppressed.add(cell)
    for whole, part in parts(figures.values):  # a part close to its whole: the small rest shows
        if whole not in combined.suppressed and part not in combined.suppressed and \
                combined.values.get(whole, 0) - combined.values[part] < THRESHOLD:
            combined.suppressed.add(part)
    rules = constraints(combined.values)
    # What the past alone gives away (published under an older, weaker check) is not this quarter's to fix.
    past = recoverable(history, constraints(history.values)) if history else set()
    while found := recoverable(combined, rules) - past:
        combined.suppressed.add(_complement(min(found), combined, rules, current))
    return combined


def _complement(target: Cell, figures: Figures, rules: list[Constraint], current: int) -> Cell:
    """The cell to withhold next so ``target`` is no longer determined: the smallest published cell of
    this period in a constraint that reaches it (directly, or through other withheld cells)."""
    seen: set[Cell] = {target}
    frontier = [target]
    while frontier:
        reached = [r for r in rules if any(c in frontier for c, _ in r.terms)]
        candidates = [c for r in reached for c, _ in r.terms
                      if c.period == current and c not in figures.suppressed]
        if candidates:
            return min(candidates, key=lambda c: (figures.values.get(c, 0), c))
        frontier = [c for r in reached for c, _ in r.terms if c in figures.suppressed and c not in seen]
        seen.update(frontier)
    raise AssertionError(f"{target} is determined by earlier periods alone")
