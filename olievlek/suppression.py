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

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from olievlek import logs

log = logs.get("suppression")

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
# Counts of a part of another count (flow categories), by their direct whole. A published part close to
# any published ancestor gives the small rest away ("9 received, 7 accepted": 2 were not; "5 received, 5
# accepted before release": all accepted, none returned), so such a part is withheld.
FLOW_PARENT = {"alerts_taken_over_within_a_month": "alerts_received", "handovers_accepted": "handovers_received",
               "handovers_returned": "handovers_received",
               "handovers_accepted_before_release": "handovers_accepted"}


def _ancestors(name: str) -> list[str]:
    out = []
    while name in FLOW_PARENT:
        name = FLOW_PARENT[name]
        out.append(name)
    return out


# (ancestor, part) for every part and each of its ancestors, not only the direct whole.
FLOW_PARTS = tuple((whole, part) for part in FLOW_PARENT for whole in _ancestors(part))
# Parts of one whole that count different items: their sum is a part of it too (accepted + returned <=
# received; the rest are undecided).
FLOW_DISJOINT = (("handovers_received", ("handovers_accepted", "handovers_returned")),)
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
    and each flow part of every flow count above it."""
    out = []
    for c in cells:
        if c.table in ("concern", "agency") and c.category != TOTAL:
            out.append((margin(c.source, c.period, c.table), c))
        if c.table == FLOW:
            for whole, part in FLOW_PARTS:
                if c.category == FLOW_CATEGORY[part]:
                    out.append((Cell(c.source, c.period, FLOW, FLOW_CATEGORY[whole]), c))
    return out


def part_sums(cells: Iterable[Cell]) -> list[tuple[Cell, tuple[Cell, ...]]]:
    """(whole, disjoint parts) among these cells: the parts' sum is at most the whole."""
    present = set(cells)
    out = []
    for source, period in {(c.source, c.period) for c in present if c.table == FLOW}:
        for whole, group in FLOW_DISJOINT:
            w = Cell(source, period, FLOW, FLOW_CATEGORY[whole])
            members = tuple(Cell(source, period, FLOW, FLOW_CATEGORY[g]) for g in group)
            if w in present and all(m in present for m in members):
                out.append((w, members))
    return out


def inequalities(cells: Iterable[Cell]) -> list[Constraint]:
    """What an attacker knows is at most zero: every part minus each of its wholes, and disjoint parts'
    sum minus their whole. (Read as sum(coefficient * value) <= 0.)"""
    cells = list(cells)
    present = set(cells)
    out = [Constraint(((part, 1), (whole, -1))) for whole, part in parts(cells) if whole in present]
    out += [Constraint((*((m, 1) for m in members), (whole, -1))) for whole, members in part_sums(cells)]
    return out


@dataclass(frozen=True, slots=True)
class Link:
    """A population that changed: the cases open at the end of ``period`` under ``after`` are those open a
    quarter before under the ``before`` sources together, plus opened, minus closed (a cooperation a
    member joined: the group as it was and the joiner's own)."""

    after: str
    period: int
    before: tuple[str, ...]


def constraints(cells: Iterable[Cell], links: Iterable[Link] = ()) -> list[Constraint]:
    """What an attacker knows holds between these cells, whatever their values (``links``: the stock
    identity across a membership change)."""
    cells = list(cells)
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
    present = set(cells)
    for link in links:
        terms = ((margin(link.after, link.period, "phase"), 1),
                 *((margin(b, link.period - 1, "phase"), -1) for b in link.before),
                 (Cell(link.after, link.period, FLOW, OPENED), -1), (Cell(link.after, link.period, FLOW, CLOSED), 1))
        if all(c in present for c, _ in terms):
            out.append(Constraint(terms))
    return out


def recoverable(figures: Figures, rules: list[Constraint], bounds: list[Constraint] | None = None) -> set[Cell]:
    """Every suppressed cell whose value the published cells and the constraints determine exactly;
    what is found is used to find more (as an attacker would), until nothing more is.

    ``rules`` are equations (exact rational elimination); ``bounds`` inequalities (sum <= 0), which with
    nonnegative integer values can pin a cell between a published part and a published whole: found by
    propagating each cell's lowest and highest possible value through every constraint."""
    found: set[Cell] = set()
    while more := (_recoverable_once(figures, rules, figures.suppressed - found)
                   | _pinned(figures, rules, bounds or [], figures.suppressed - found)):
        found |= more
    return found


_ROUNDS = 50  # bound propagation converges in a few rounds on these small systems; this only caps it


def _pinned(figures: Figures, equal: list[Constraint], at_most: list[Constraint], withheld: set[Cell]) -> set[Cell]:
    """Withheld cells whose integer bounds meet, by interval propagation (no cell below zero)."""
    if not withheld:
        return set()
    lo: dict[Cell, int] = dict.fromkeys(withheld, 0)
    hi: dict[Cell, float] = dict.fromkeys(withheld, math.inf)

    def span(terms: tuple[tuple[Cell, int], ...], skip: Cell) -> tuple[float, float]:
        """The lowest and highest value of sum(k * x) over the terms other than ``skip``."""
        low = high = 0.0
        for c, k in terms:
            if c == skip:
                continue
            a, b = (lo[c], hi[c]) if c in lo else (figures.values.get(c, 0),) * 2
            low += k * (a if k > 0 else b)
            high += k * (b if k > 0 else a)
        return low, high

    for _ in range(_ROUNDS):
        changed = False
        for rule, exact in [(r, True) for r in equal] + [(r, False) for r in at_most]:
            for c, k in rule.terms:
                if c not in lo:
                    continue
                low, high = span(rule.terms, c)  # k*x = -rest (exact) or k*x <= -rest
                top, bottom = -low / k if k > 0 else -high / k, -high / k if k > 0 else -low / k
                if k > 0 or exact:
                    new_hi = math.floor(top) if top != math.inf else math.inf
                    if new_hi < hi[c]:
                        hi[c], changed = new_hi, True
                if k < 0 or exact:
                    new_lo = math.ceil(bottom) if bottom != -math.inf else 0
                    if new_lo > lo[c]:
                        lo[c], changed = new_lo, True
        if not changed:
            break
    return {c for c in withheld if lo[c] == hi[c]}


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
            forced: frozenset[Cell] = frozenset(), links: tuple[Link, ...] = (), intervals: bool = True) -> Figures:
    """Suppress the current period's figures until no suppressed value can be recovered.

    ``figures`` holds one period's raw values (every source); ``history`` what the same sources
    published before (its suppressed set is final); ``forced`` cells withheld whatever their value;
    ``links`` the stock identity across a membership change; ``intervals`` whether the protection
    intervals are audited too (``olievlek.interval_audit``; off only to measure what it adds).
    Returns the combined figures with the final suppression; the caller publishes the current period's.
    """
    combined = Figures(dict(history.values) if history else {}, set(history.suppressed) if history else set())
    combined.values.update(figures.values)
    for cell, value in figures.values.items():
        if value < THRESHOLD or cell in forced:
            combined.suppressed.add(cell)
    _withhold_close_parts(figures, combined)
    rules, bounds = constraints(combined.values, links), inequalities(combined.values)
    # What the past alone gives away (published under an older, weaker check) is not this quarter's to fix.
    past = recoverable(history, constraints(history.values, links), inequalities(history.values)) if history else set()
    while found := recoverable(combined, rules, bounds) - past:
        combined.suppressed.add(_complement(min(found), combined, rules + bounds, current))
    if intervals:
        _protect_intervals(combined, history, rules, bounds, current, links)
    return combined


MAX_ROUNDS = 30  # greedy rounds of the interval audit; past them the failing tables are withheld whole


def _protect_intervals(combined: Figures, history: Figures | None, rules: list[Constraint],
                       bounds: list[Constraint], current: int, links: tuple[Link, ...]) -> None:
    """Withhold more of this quarter until every withheld cell of a block that reaches it keeps its
    protection interval (``olievlek.interval_audit``); what failed on the history alone is not this
    quarter's to fix."""
    from . import interval_audit  # scipy loads only when a report is protected (the CLI starts fast)

    passed: set[frozenset[Cell]] = set()  # blocks that passed whole (a block only changes when it grows)

    def failures(figures: Figures, equal: list[Constraint], at_most: list[Constraint]) -> list[interval_audit.Failure]:
        """The first failure not excused by the history (a round fixes one), or none."""
        for block in interval_audit.blocks(figures.suppressed, equal + at_most):
            key = frozenset(block)
            if key in passed or not any(c.period == current for c in block):
                continue
            found = interval_audit.audit(figures, equal, at_most, set(block), first=True, skip=past)
            if found:
                return found
            passed.add(key)
        return []

    past: set[Cell] = set()
    if history is not None:  # only the history cells that share a block with this quarter's can be narrowed now
        reached = {c for block in interval_audit.blocks(combined.suppressed, rules + bounds)
                   if any(x.period == current for x in block) for c in block if c.period != current}
        if reached & history.suppressed:
            h_rules, h_bounds = constraints(history.values, links), inequalities(history.values)
            past = {f.cell for f in interval_audit.audit(history, h_rules, h_bounds, reached)}
    for _round in range(MAX_ROUNDS):
        failing = failures(combined, rules, bounds)
        if not failing:
            return
        try:
            combined.suppressed.add(_complement(failing[0].cell, combined, rules + bounds, current))
        except AssertionError:  # nothing of this quarter reaches it: not this report's to fix
            past.add(failing[0].cell)
    while failing := failures(combined, rules, bounds):  # past the rounds: the failing tables whole
        cell = failing[0].cell
        whole = {c for c in combined.values if c.period == current and (c.source, c.table) == (cell.source, cell.table)}
        if whole <= combined.suppressed:
            past.add(cell)  # withholding its whole table did not help: more of this quarter would not either
            continue
        combined.suppressed |= whole
        log.warning("suppression.whole_table", table=cell.table, rounds=MAX_ROUNDS)


def _withhold_close_parts(figures: Figures, combined: Figures) -> None:
    """A part close to any published whole above it, or disjoint parts whose sum is close to theirs: the
    small rest shows, so the (smallest) part is withheld - until no such pair or group is left."""
    def shown(c: Cell) -> bool:
        return c in combined.values and c not in combined.suppressed

    while True:
        close = [part for whole, part in parts(figures.values) if shown(whole) and shown(part)
                 and combined.values[whole] - combined.values[part] < THRESHOLD]
        close += [min(group, key=lambda c: (combined.values[c], c)) for whole, group in part_sums(figures.values)
                  if shown(whole) and all(shown(g) for g in group)
                  and combined.values[whole] - sum(combined.values[g] for g in group) < THRESHOLD]
        if not close:
            return
        combined.suppressed.update(close)


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
