"""The monitor's dashboard: one self-contained HTML file (Plotly charts, the library inlined) and a CSV.

Each chart answers one evaluation question of the memorandum, over the whole federation and per
quarter; the table gives every region's figures. Every text is translated (``olievlek.i18n``).
"""

from __future__ import annotations

import csv
import html
from collections.abc import Callable
from pathlib import Path

import plotly.graph_objects as go

from olievlek.i18n import N_
from olievlek.regions import Figure, Key
from olievlek.v1 import summary_pb2

from .enums import AGENCIES, CONCERNS, PHASES

Gettext = Callable[[str], str]
D = summary_pb2
FLOW = {"alerts_received": 4, "taken_over": 5, "handovers_received": 6, "accepted_before_release": 8}


BAND_LABELS = (N_("under 1 month"), N_("1 to 3 months"), N_("3 to 6 months"), N_("6 to 12 months"),
               N_("12 months or more"))
PHASE_LABELS = {"signal": N_("signal"), "pre-analysis": N_("pre-analysis"), "follow-up": N_("follow-up")}
CONCERN_LABELS = {"islamist": N_("islamist"), "right-wing": N_("right-wing extremism"),
                  "left-wing": N_("left-wing extremism"),
                  "single-issue-animal-rights": N_("single issue: animal rights"),
                  "single-issue-environmental": N_("single issue: environment"),
                  "single-issue-other": N_("single issue: other"), "polarisation": N_("polarisation"),
                  "unclear": N_("unclear")}

HEADING = N_("Monitoring of the local approach to radicalisation and polarisation")
WITHHELD = N_("Figures under 5 are withheld at each municipality; a sum marked ≥ leaves withheld figures out.")


TABLES = {D.AGGREGATE_DIMENSION_PHASE: N_("phase"), D.AGGREGATE_DIMENSION_CONCERN: N_("concern"),
          D.AGGREGATE_DIMENSION_AGENCY: N_("agency"),
          D.AGGREGATE_DIMENSION_DURATION_BAND: N_("duration of closed cases"),
          D.AGGREGATE_DIMENSION_PHASE_TIME: N_("time in a phase"), D.AGGREGATE_DIMENSION_FLOW: N_("flows")}
FLOWS = (N_("opened"), N_("closed"), N_("move alerts sent"), N_("move alerts received"),
         N_("taken over within a month"), N_("handovers received"), N_("handovers accepted"),
         N_("accepted before release"), N_("handovers returned"), N_("erasures on time"), N_("erasures late"))


def category_label(dimension: int, category: int, _: Gettext) -> str:
    """A category's name in the reader's language (agencies keep their Dutch acronyms); the number of a
    category this version does not know (a newer sender's)."""
    try:
        return _label(dimension, category, _)
    except (StopIteration, IndexError, KeyError):
        return str(category)


def _label(dimension: int, category: int, _: Gettext) -> str:
    if category == 0 and dimension != D.AGGREGATE_DIMENSION_FLOW:
        return _("total")
    if dimension == D.AGGREGATE_DIMENSION_PHASE:
        return _(PHASE_LABELS[next(k for k, v in PHASES.items() if v == category)])
    if dimension == D.AGGREGATE_DIMENSION_CONCERN:
        return _(CONCERN_LABELS[next(k for k, v in CONCERNS.items() if v == category)])
    if dimension == D.AGGREGATE_DIMENSION_AGENCY:
        return next(k for k, v in AGENCIES.items() if v == category)
    if dimension == D.AGGREGATE_DIMENSION_DURATION_BAND:
        return _(BAND_LABELS[category - 1])
    if dimension == D.AGGREGATE_DIMENSION_PHASE_TIME:
        phase = next(k for k, v in PHASES.items() if v == category // 10)
        return f"{_(PHASE_LABELS[phase])}: {_(BAND_LABELS[category % 10 - 1])}"
    return _(FLOWS[category - 1])


def _series(figures: dict[Key, Figure], quarters: list[tuple[int, int]],
            dimension: D.AggregateDimension.ValueType, category: int
            ) -> tuple[list[int], list[str]]:
    values, notes = [], []
    for year, quarter in quarters:
        fig = figures.get(Key("*", year, quarter, dimension, category), Figure())
        values.append(fig.value)
        notes.append("≥" if fig.partial else "")
    return values, notes


def _bars(title: str, quarters: list[str], series: list[tuple[str, list[int], list[str]]], _: Gettext) -> go.Figure:
    fig = go.Figure([go.Bar(name=name, x=quarters, y=values, text=[f"{n}{v}" for n, v in zip(notes, values,
                                                                                               strict=True)])
                     for name, values, notes in series])
    fig.update_layout(title=title, barmode="group", yaxis_title=_("persons"), legend_title_text="")
    return fig


def charts(figures: dict[Key, Figure], _: Gettext) -> list[go.Figure]:
    """The four evaluation questions, as charts over the quarters reported."""
    quarters = sorted({(k.year, k.quarter) for k in figures if k.region == "*"})
    labels = [f"{y}Q{q}" for y, q in quarters]
    moved = [(_(name), *_series(figures, quarters, D.AGGREGATE_DIMENSION_FLOW, FLOW[key]))
             for key, name in (("alerts_received", N_("move alerts received")),
                               ("taken_over", N_("taken over within a month")))]
    handed = [(_(name), *_series(figures, quarters, D.AGGREGATE_DIMENSION_FLOW, FLOW[key]))
              for key, name in (("handovers_received", N_("handovers from prison received")),
                                ("accepted_before_release", N_("accepted before release")))]
    concerns = [(_(CONCERN_LABELS[name]), *_series(figures, quarters, D.AGGREGATE_DIMENSION_CONCERN, value))
                for name, value in CONCERNS.items()]
    latest = quarters[-1] if quarters else (0, 0)
    def cell(p: str, b: int) -> Figure:
        return figures.get(Key("*", *latest, D.AGGREGATE_DIMENSION_PHASE_TIME, PHASES[p] * 10 + b + 1), Figure())

    phase_time = go.Figure([
        go.Bar(name=_(band), x=[_(PHASE_LABELS[p]) for p in PHASE_LABELS],
               y=[cell(p, b).value for p in PHASE_LABELS],
               text=[("≥" if cell(p, b).partial else "") + str(cell(p, b).value) for p in PHASE_LABELS])
        for b, band in enumerate(BAND_LABELS)])
    phase_time.update_layout(title=_("How long cases stay in each phase before they move on") +
                             f" ({latest[0]}Q{latest[1]})", barmode="stack", yaxis_title=_("phase changes"))
    concern_chart = _bars(_("The mix of concern categories over the quarters"), labels, concerns, _)
    concern_chart.update_layout(barmode="stack", yaxis_title=_("open cases"))
    return [
        _bars(_("People who moved between municipalities and were picked up within a month"), labels, moved, _),
        _bars(_("Handovers from prison accepted before release"), labels, handed, _),
        phase_time,
        concern_chart,
    ]


def rows(figures: dict[Key, Figure]) -> list[list[str]]:
    names = {v: k for k, v in D.AggregateDimension.items()}
    return [[k.region, f"{k.year}Q{k.quarter}", names[k.dimension].removeprefix("AGGREGATE_DIMENSION_").lower(),
             str(k.category), str(f.value), "1" if f.partial else "0"] for k, f in sorted(figures.items())]


def render(figures: dict[Key, Figure], out: Path, _: Gettext, lang: str) -> tuple[Path, Path]:
    """Write ``dashboard.html`` (self-contained) and ``figures.csv`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    table = rows(figures)
    csv_path = out / "figures.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["region", "quarter", "table", "category", "value", "partial"])
        w.writerows(table)
    divs = [c.to_html(include_plotlyjs=(i == 0), full_html=False, div_id=f"chart-{i}")
            for i, c in enumerate(charts(figures, _))]
    names = {v: k for k, v in D.AggregateDimension.items()}
    regional = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in (
            k.region or _("no region"), f"{k.year}Q{k.quarter}", _(TABLES[k.dimension]),
            category_label(k.dimension, k.category, _), str(f.value), "≥" if f.partial else "")) + "</tr>"
        for k, f in sorted(figures.items()) if k.region != "*" and names[k.dimension])
    title, heading, per_region = _("Monitoring dashboard"), _(HEADING), _("Figures per region")
    head = "".join(f"<th>{html.escape(_(h))}</th>" for h in (N_("region"), N_("quarter"), N_("table"),
                                                              N_("category"), N_("value"), N_("withheld figures")))
    page = f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px}}</style></head><body>
<h1>{html.escape(heading)}</h1>
<p>{html.escape(_(WITHHELD))}</p>
{"".join(divs)}
<h2>{html.escape(per_region)}</h2>
<p><a href="figures.csv">figures.csv</a></p>
<table><tr>{head}</tr>{regional}</table>
</body></html>
"""
    html_path = out / "dashboard.html"
    html_path.write_text(page)
    return html_path, csv_path

