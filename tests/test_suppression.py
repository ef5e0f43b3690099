"""Disclosure control of the quarterly figures, attacked with code.

The attacks here are written independently of ``olievlek.suppression``'s own check: each takes only
what is published (the values of cells not withheld) and what anyone knows of the tables' structure,
and tries to compute a withheld figure exactly.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from olievlek.regions import combine
from olievlek.suppression import (
    CLOSED,
    FLOW_CATEGORY,
    OPENED,
    THRESHOLD,
    TOTAL,
    Cell,
    Figures,
    constraints,
    period_of,
    protect,
    recoverable,
)
from olievlek.v1 import summary_pb2

pytestmark = pytest.mark.timeout(60)

Q2, Q3 = period_of(2026, 2), period_of(2026, 3)
PHASES = (1, 2, 3)


def quarter(source: str, period: int, phases: tuple[int, int, int], concerns: dict[int, int], opened: int,
            closed: int) -> dict[Cell, int]:
    """Raw figures of one quarter: open cases by phase (with its margin), concerns, flows."""
    values = {Cell(source, period, "phase", p): n for p, n in zip(PHASES, phases, strict=True)}
    values[Cell(source, period, "phase", TOTAL)] = sum(phases)
    values |= {Cell(source, period, "concern", c): n for c, n in concerns.items()}
    values[Cell(source, period, "flow", OPENED)] = opened
    values[Cell(source, period, "flow", CLOSED)] = closed
    return values


def published(figures: Figures, period: int) -> dict[Cell, int]:
    return {c: v for c, v in figures.values.items() if c.period == period and c not in figures.suppressed}


def attack(public: dict[Cell, int], withheld: set[Cell]) -> dict[Cell, int]:
    """Differencing, as an outsider would do it: margin minus published cells (margins shared between
    tables of the same population), and the stock of open cases moving by opened minus closed."""
    found: dict[Cell, int] = {}
    known = dict(public)
    for _round in range(4):
        for (source, period, table) in {(c.source, c.period, c.table) for c in known | dict.fromkeys(withheld, 0)}:
            if table != "phase":
                continue
            total = known.get(Cell(source, period, "phase", TOTAL))
            cells = [Cell(source, period, "phase", p) for p in PHASES]
            hidden = [c for c in cells if c not in known]
            if total is not None and len(hidden) == 1:
                known[hidden[0]] = found[hidden[0]] = total - sum(known[c] for c in cells if c in known)
            if total is None and not hidden:
                t = Cell(source, period, "phase", TOTAL)
                known[t] = found[t] = sum(known[c] for c in cells)
        for source in {c.source for c in withheld}:
            for period in {c.period for c in withheld}:
                terms = {Cell(source, period, "phase", TOTAL): 1, Cell(source, period - 1, "phase", TOTAL): -1,
                         Cell(source, period, "flow", OPENED): -1, Cell(source, period, "flow", CLOSED): 1}
                hidden = [c for c in terms if c not in known]
                if len(hidden) == 1:
                    value = -sum(k * known[c] for c, k in terms.items() if c in known) * terms[hidden[0]]
                    known[hidden[0]] = found[hidden[0]] = value
    return {c: v for c, v in found.items() if c in withheld}


def test_three_cases_reveal_nothing() -> None:
    raw = Figures(quarter("gent", Q3, (1, 0, 2), {2: 2, 1: 1}, opened=3, closed=0))
    out = protect(raw, Q3)
    case_cells = [c for c in raw.values if c.table in ("phase", "concern")]
    assert all(c in out.suppressed for c in case_cells)
    assert attack(published(out, Q3), out.suppressed) == {}


def test_a_single_small_cell_gets_a_complement_so_the_margin_does_not_give_it_away() -> None:
    raw = Figures(quarter("antwerpen", Q3, (3, 7, 9), {1: 8, 2: 11}, opened=6, closed=5))
    out = protect(raw, Q3)
    assert Cell("antwerpen", Q3, "phase", 1) in out.suppressed  # 3 < 5
    assert Cell("antwerpen", Q3, "phase", 2) in out.suppressed  # the complement: smallest other cell
    assert published(out, Q3)[Cell("antwerpen", Q3, "phase", TOTAL)] == 19
    assert attack(published(out, Q3), out.suppressed) == {}
    # Positive control: primary suppression alone gives the small cell away.
    primary = {c for c, v in raw.values.items() if v < THRESHOLD}
    naive = {c: v for c, v in raw.values.items() if c not in primary}
    assert attack(naive, primary) == {Cell("antwerpen", Q3, "phase", 1): 3}


def test_consecutive_quarters_do_not_give_away_opened_or_closed() -> None:
    before = protect(Figures(quarter("leuven", Q2, (6, 7, 8), {1: 9}, opened=9, closed=6)), Q2)
    raw = Figures(quarter("leuven", Q3, (6, 8, 9), {1: 10}, opened=3, closed=1))  # 21 -> 23: 3 - 1
    out = protect(raw, Q3, before)
    assert Cell("leuven", Q3, "flow", OPENED) in out.suppressed
    public = published(before, Q2) | published(out, Q3)
    assert attack(public, out.suppressed | before.suppressed) == {}
    # Without the check, the margin of both quarters and the closed count give `opened` away:
    naive = {c: v for c, v in (before.values | raw.values).items() if v >= THRESHOLD or (c.table == "flow"
             and c.category == CLOSED)}
    assert attack(naive, {Cell("leuven", Q3, "flow", OPENED)}) == {Cell("leuven", Q3, "flow", OPENED): 3}


@given(st.lists(st.integers(min_value=0, max_value=12), min_size=8, max_size=8))
def test_no_table_of_random_figures_can_be_differenced(counts: list[int]) -> None:
    before = protect(Figures(quarter("mechelen", Q2, (counts[0], counts[1], counts[2]), {1: counts[3]},
                                     opened=counts[4], closed=0)), Q2)
    stock = sum(counts[:3])
    opened, closed = counts[5], min(counts[6], stock + counts[5])
    now = [counts[7], 0, 0]
    now[1] = max(0, stock + opened - closed - counts[7])
    now[0] = stock + opened - closed - now[1]
    out = protect(Figures(quarter("mechelen", Q3, (now[0], now[1], now[2]), {1: counts[3]}, opened=opened,
                                  closed=closed)), Q3, before)
    public = published(before, Q2) | published(out, Q3)
    assert attack(public, out.suppressed | before.suppressed) == {}
    assert all(v >= THRESHOLD for v in public.values())


def _report(year: int, quarter: int, cells: list[tuple[int, int, int | None]]) -> summary_pb2.AggregateReport:
    r = summary_pb2.AggregateReport(year=year, quarter=quarter)
    for dimension, category, count in cells:
        r.cells.add(dimension=dimension, category=category, count=count or 0, suppressed=count is None)  # type: ignore[arg-type]
    return r


def test_overlapping_regional_sums_leave_withheld_figures_out() -> None:
    P = summary_pb2.AGGREGATE_DIMENSION_PHASE
    reports = [("gent", _report(2026, 3, [(P, 3, 12)])), ("antwerpen", _report(2026, 3, [(P, 3, 9)])),
               ("leuven", _report(2026, 3, [(P, 3, None)]))]  # leuven's 3 was withheld
    wide = combine(reports, {"gent": "a", "antwerpen": "a", "leuven": "a"})
    narrow = combine(reports, {"gent": "b", "antwerpen": "b"})
    key_a = next(k for k in wide if k.region == "a")
    key_b = next(k for k in narrow if k.region == "b")
    assert wide[key_a].value - narrow[key_b].value == 0  # the difference is leuven's published part: none
    assert wide[key_a].partial and not narrow[key_b].partial


def test_groups_combine_before_suppression() -> None:
    rng = random.Random(20261129)
    print("seed 20261129")
    members = {m: quarter(m, Q3, (rng.randint(0, 4), rng.randint(0, 4), rng.randint(0, 4)), {1: rng.randint(0, 4)},
                          opened=rng.randint(0, 3), closed=0) for m in ("mechelen", "leuven", "livc-zennevallei")}
    group: dict[Cell, int] = {}
    for values in members.values():
        for c, v in values.items():
            key = Cell("olievlek-rand", c.period, c.table, c.category)
            group[key] = group.get(key, 0) + v
    out = protect(Figures(group), Q3)
    total = Cell("olievlek-rand", Q3, "phase", TOTAL)
    assert out.values[total] == sum(v[Cell(m, Q3, "phase", TOTAL)] for m, v in members.items())
    # Only the group's figures exist outside the members: no municipality's cell is there at all.
    assert {c.source for c in published(out, Q3)} <= {"olievlek-rand"}
    assert all(v >= THRESHOLD for v in published(out, Q3).values())
    assert attack(published(out, Q3), out.suppressed) == {}


# -- regressions from the review of the first version ---------------------------------------------------

def test_zeros_found_in_a_reduced_equation_give_the_rest_away() -> None:
    s = "gent"
    values = {Cell(s, Q2, "phase", TOTAL): 18, Cell(s, Q2, "phase", 1): 5, Cell(s, Q2, "phase", 2): 6,
              Cell(s, Q2, "phase", 3): 7, Cell(s, Q2, "flow", OPENED): 9, Cell(s, Q2, "flow", CLOSED): 6,
              Cell(s, Q3, "phase", TOTAL): 23, Cell(s, Q3, "phase", 1): 0, Cell(s, Q3, "phase", 2): 23,
              Cell(s, Q3, "phase", 3): 0, Cell(s, Q3, "flow", OPENED): 5, Cell(s, Q3, "flow", CLOSED): 0}
    withheld = {Cell(s, Q3, "phase", TOTAL), Cell(s, Q3, "phase", 1), Cell(s, Q3, "phase", 3),
                Cell(s, Q3, "flow", CLOSED)}
    # M3 = 23 + x + y and M3 = 18 + 5 - closed: x + y + closed = 0, so all are 0 and M3 = 23.
    assert recoverable(Figures(values, withheld), constraints(values)) == withheld


def test_the_durations_of_closed_cases_add_up_to_the_closed_count() -> None:
    s = "leuven"
    before = protect(Figures(quarter(s, Q2, (6, 7, 7), {1: 9}, opened=9, closed=6)
                             | {Cell(s, Q2, "duration", b): n for b, n in zip(range(1, 6), (6, 0, 0, 0, 0),
                                                                               strict=True)}), Q2)
    raw = quarter(s, Q3, (6, 6, 6), {1: 9}, opened=4, closed=6)  # 20 -> 18: 4 opened, 6 closed
    raw |= {Cell(s, Q3, "duration", b): n for b, n in zip(range(1, 6), (0, 6, 0, 0, 0), strict=True)}
    out = protect(Figures(raw), Q3, before)
    public = published(before, Q2) | published(out, Q3)
    closed = Cell(s, Q3, "flow", CLOSED)
    if closed not in out.suppressed:  # then `opened` (4) must not follow from the stock identity
        assert Cell(s, Q3, "flow", OPENED) in out.suppressed
    assert recoverable(out, constraints(out.values)) == set()
    assert all(v >= THRESHOLD for v in public.values())


def test_a_part_close_to_its_whole_is_withheld() -> None:
    s = "antwerpen"
    raw = quarter(s, Q3, (6, 6, 6), {1: 17, 2: 9}, opened=6, closed=5)  # 18 open; 17 islamist: 1 is not
    raw[Cell(s, Q3, "flow", FLOW_CATEGORY["handovers_received"])] = 9
    raw[Cell(s, Q3, "flow", FLOW_CATEGORY["handovers_accepted"])] = 7  # 2 were not accepted
    out = protect(Figures(raw), Q3)
    assert Cell(s, Q3, "concern", 1) in out.suppressed
    assert Cell(s, Q3, "concern", 2) not in out.suppressed
    assert Cell(s, Q3, "flow", FLOW_CATEGORY["handovers_accepted"]) in out.suppressed


def test_a_change_of_members_withholds_the_stock_that_would_show_the_joiner() -> None:
    g = "olievlek-rand"
    before = protect(Figures(quarter(g, Q2, (6, 7, 7), {1: 9}, opened=8, closed=6)), Q2)
    # A member with 3 open cases joins in Q3: 20 + 6 - 5 + 3 = 24. Published as is, the monitor would
    # compute 24 - 20 - 6 + 5 = 3, the joiner's count its own report withheld.
    raw = quarter(g, Q3, (8, 8, 8), {1: 10}, opened=6, closed=5)
    naive = protect(Figures(raw), Q3, Figures({Cell(f"{g}~old", c.period, c.table, c.category): v
                                                 for c, v in before.values.items()}))
    assert Cell(g, Q3, "phase", TOTAL) not in naive.suppressed  # nothing else would have stopped it
    out = protect(Figures(raw), Q3, None, frozenset({Cell(g, Q3, "phase", TOTAL)}))
    assert Cell(g, Q3, "phase", TOTAL) in out.suppressed
    assert recoverable(out, constraints(out.values)) == set()  # nor can the phase cells give it back
