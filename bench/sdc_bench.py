"""Disclosure-control bench: the interval audit's cost and how much more it withholds.

For one municipality and for a four-member cooperation (the sums of four municipalities' figures), each
with eight quarters of history, every quarter is protected as a node protects it (``protect`` with what it
published before) - once with the exact-recovery check only (the baseline, measured in the same run) and once
with the interval audit (LP, then MILP, HiGHS). Printed: seconds per report (the last quarter's, with seven
of history; goal under 2 s on CI's 2 cores, solver time limits included) and the share of non-primary cells
(true value 5 or more) withheld, before and after (goal: at most 1.5 times as many).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import parse_args, report

from olievlek.suppression import TOTAL, Cell, Figures, period_of, protect

FLOWS = ("opened", "closed", "alerts_sent", "alerts_received", "alerts_taken_over_within_a_month",
         "handovers_received", "handovers_accepted", "handovers_accepted_before_release", "handovers_returned",
         "erasures_on_time", "erasures_late")
FLOW = {name: i + 1 for i, name in enumerate(FLOWS)}
Q1 = period_of(2025, 1)


def municipality(rng: random.Random, quarters: int, scale: int) -> list[dict[Cell, int]]:
    """Raw figures of one municipality, quarter after quarter (source "x"): the stock moves by opened minus
    closed; concerns, agencies, duration bands, phase changes and flows as a node reports them."""
    stock, out = rng.randint(2, 8 * scale), []
    for i in range(quarters):
        p = Q1 + i
        opened = rng.randint(0, 4 * scale)
        closed = rng.randint(0, min(stock + opened, 4 * scale))
        stock += opened - closed
        v: dict[Cell, int] = {}
        a = rng.randint(0, stock)
        b = rng.randint(0, stock - a)
        for cat, n in zip((1, 2, 3), (a, b, stock - a - b), strict=True):
            v[Cell("x", p, "phase", cat)] = n
        v[Cell("x", p, "phase", TOTAL)] = stock
        v |= {Cell("x", p, "concern", c): rng.randint(0, stock // 2) for c in range(1, 9)}
        v |= {Cell("x", p, "agency", c): rng.randint(0, stock) for c in range(1, 8)}
        rest = closed
        for band in range(1, 6):
            n = rest if band == 5 else rng.randint(0, rest)
            v[Cell("x", p, "duration", band)] = n
            rest -= n
        changes = rng.randint(0, 3 * scale)
        v[Cell("x", p, "phase_time", TOTAL)] = changes
        cells = [ph * 10 + band for ph in (1, 2, 3) for band in range(1, 6)]
        for c in cells:
            v[Cell("x", p, "phase_time", c)] = 0
        for _ in range(changes):
            v[Cell("x", p, "phase_time", rng.choice(cells))] += 1
        received, hreceived = rng.randint(0, 3 * scale), rng.randint(0, 3 * scale)
        accepted = rng.randint(0, hreceived)
        flows = {"opened": opened, "closed": closed, "alerts_sent": rng.randint(0, 3 * scale),
                 "alerts_received": received, "alerts_taken_over_within_a_month": rng.randint(0, received),
                 "handovers_received": hreceived, "handovers_accepted": accepted,
                 "handovers_accepted_before_release": rng.randint(0, accepted),
                 "handovers_returned": rng.randint(0, hreceived - accepted),
                 "erasures_on_time": rng.randint(0, 2 * scale), "erasures_late": rng.randint(0, scale)}
        v |= {Cell("x", p, "flow", FLOW[n]): x for n, x in flows.items()}
        out.append(v)
    return out


def cooperation(rng: random.Random, quarters: int, members: int) -> list[dict[Cell, int]]:
    """A cooperation's combined figures: the cell-wise sums of its members'."""
    each = [municipality(rng, quarters, 1) for _ in range(members)]
    return [{c: sum(m[q][c] for m in each) for c in each[0][q]} for q in range(quarters)]


def run(quarters_raw: list[dict[Cell, int]], intervals: bool) -> tuple[float, Figures]:
    """Protect quarter after quarter; the last report's seconds and the final figures."""
    history: Figures | None = None
    seconds = 0.0
    for i, raw in enumerate(quarters_raw):
        start = time.perf_counter()
        out = protect(Figures(dict(raw)), Q1 + i, history, intervals=intervals)
        seconds = time.perf_counter() - start
        history = Figures(dict(out.values), set(out.suppressed))
    assert history is not None
    return seconds, history


def share(figures: Figures) -> float:
    """Withheld cells among those of value 5 or more."""
    large = [c for c, v in figures.values.items() if v >= 5]
    return sum(1 for c in large if c in figures.suppressed) / max(1, len(large))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--histories", type=int, default=10, help="histories of each kind")
    ap.add_argument("--quarters", type=int, default=8)
    ap.add_argument("--seed", type=int, default=20261207)
    args = parse_args(ap, {"histories": 1, "quarters": 3})
    print(f"seed {args.seed}; python {sys.version.split()[0]}; {args.histories} histories x {args.quarters} quarters")
    rng = random.Random(args.seed)
    run(municipality(random.Random(0), 1, 1), intervals=True)  # scipy loads once, not in the first timing
    figures: dict[str, Any] = {}
    for kind, make in (("municipality", lambda: municipality(rng, args.quarters, 2)),
                       ("cooperation of 4", lambda: cooperation(rng, args.quarters, 4))):
        times, before, after = [], [], []
        for _ in range(args.histories):
            raw = make()
            _t0, exact = run(raw, intervals=False)
            t1, audited = run(raw, intervals=True)
            times.append(t1)
            before.append(share(exact))
            after.append(share(audited))
        b, a = statistics.mean(before), statistics.mean(after)
        print(f"{kind:18} per report: median {statistics.median(times):.3f} s, max {max(times):.3f} s (goal < 2 s); "
              f"non-primary withheld {b:.1%} -> {a:.1%} ({a / b if b else 1:.2f}x, goal <= 1.5x)")
        key = kind.split()[0]
        figures |= {f"{key}_median_s": round(statistics.median(times), 3), f"{key}_max_s": round(max(times), 3),
                    f"{key}_withheld_before": round(b, 3), f"{key}_withheld_after": round(a, 3)}
    ratio = figures["municipality_withheld_after"] / max(figures["municipality_withheld_before"], 1e-9)
    report("sdc", args.smoke, ratio=round(ratio, 3), **figures)


if __name__ == "__main__":
    main()
