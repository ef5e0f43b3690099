"""``olievlek report``: a municipality's quarterly monitoring report, and the monitor's dashboard.

What a regisseur reads here is in Dutch unless ``olievlek --lang en`` (or OLIEVLEK_LANG) says otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from olievlek.i18n import N_, _, language
from olievlek.regions import combine
from olievlek.v1 import local_pb2

from . import dashboard
from .cases import SocketOpt
from .console import out
from .local_client import call

# The outbox statuses `report monitor` shows after sending.
STATUSES = (N_("accepted"), N_("pending"), N_("queued"), N_("refused"), N_("failed"), N_("expired"),
            N_("rejected"))
report_app = typer.Typer(help="Quarterly monitoring figures (municipality) and the dashboard (monitor).",
                         no_args_is_help=True)
@report_app.command("monitor")
def report_monitor(
    socket: SocketOpt,
    quarter: Annotated[str, typer.Option(help="A finished calendar quarter, e.g. 2026Q3.")],
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Show the report as it would be; neither keep nor send it.")] = False,
) -> None:
    """Compute this municipality's figures for a quarter, withhold what could identify, send them."""
    m = re.fullmatch(r"(\d{4})Q([1-4])", quarter)
    if m is None:
        raise typer.BadParameter(_("expected a quarter such as 2026Q3"), param_hint="--quarter")
    r = call(socket, local_pb2.LocalRequest(monitor_report=local_pb2.MonitorReportRequest(
        year=int(m[1]), quarter=int(m[2]), send=not dry_run))).monitor_report
    table = Table(title=_("Monitoring report {quarter}").format(quarter=quarter))
    for col in (_("table"), _("category"), _("value")):
        table.add_column(col)
    for c in r.report.cells:
        table.add_row(_(dashboard.TABLES[c.dimension]), dashboard.category_label(c.dimension, c.category, _),
                      _("withheld") if c.suppressed else str(c.count))
    out.print(table)
    withheld = sum(c.suppressed for c in r.report.cells)
    out.print(_("{withheld} of {cells} figures withheld (under 5, or needed to protect one that is)").format(
        withheld=withheld, cells=len(r.report.cells)))
    if r.outbox_id:
        out.print(_("sent to {recipient}: {status}").format(recipient=r.recipient, status=_(r.status)))


@report_app.command("dashboard")
def report_dashboard(
    socket: SocketOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for dashboard.html and figures.csv.")],
) -> None:
    """At the monitor: combine the reports received per region and quarter into a dashboard."""
    r = call(socket, local_pb2.LocalRequest(monitor_list=local_pb2.MonitorListRequest())).monitor_list
    figures = combine(((x.sender, x.report) for x in r.reports), dict(r.regions), dict(r.aggregators))
    html_path, csv_path = dashboard.render(figures, out_dir, _, language())
    out.print(_("{reports} reports combined; dashboard: {html}; figures: {csv}").format(
        reports=len(r.reports), html=html_path, csv=csv_path))

