"""``olievlek case close``, ``case retention extend``, ``retention due|run``, ``subject erase``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from olievlek.i18n import N_, _
from olievlek.v1 import local_pb2, summary_pb2

from . import enums
from .cases import CaseOpt, SocketOpt, case_app, day
from .console import out
from .local_client import call

retention_app = typer.Typer(help="Retention at this node: what is due, and erasing it.", no_args_is_help=True)
case_retention_app = typer.Typer(help="One case's retention.", no_args_is_help=True)
subject_app = typer.Typer(help="A person's data at this node.", no_args_is_help=True)
case_app.add_typer(case_retention_app, name="retention")

REASONS = enums.names(local_pb2.RetentionReason, "RETENTION_REASON_")
ERASURE_REASONS = enums.names(summary_pb2.ErasureReason, "ERASURE_REASON_")



def _days(text: str) -> int:
    m = re.fullmatch(r"(\d{1,5})d?", text)
    if m is None:
        raise typer.BadParameter(_("{text!r} is not a number of days such as 30d").format(text=text),
                                 param_hint="--within")
    return int(m.group(1))


def _erased(r: local_pb2.ErasureResponse) -> None:
    if not r.erased:
        out.print(_("nothing to erase"))
    for e in r.erased:
        told = ", ".join(e.notified) or "nobody (no summary was sent)"
        out.print(_("case {case_id} erased (data key destroyed); erasure notice to: {told}")
                    .format(case_id=e.case_id, told=told))


@case_app.command("close")
def case_close(socket: SocketOpt, case: CaseOpt) -> None:
    """Close a case: its retention starts now (per its lawful basis)."""
    r = call(socket, local_pb2.LocalRequest(case_close=local_pb2.CaseCloseRequest(case_id=case))).case_close
    out.print(_("case {case} closed; kept until {value}").format(case=case, value=day(r.retain_until_ms)))


@case_retention_app.command("extend")
def case_retention_extend(
    socket: SocketOpt, case: CaseOpt,
    days: Annotated[int, typer.Option(help="How many days longer.", min=1, max=3650)],
    reason: Annotated[str, typer.Option(help=f"One of: {', '.join(REASONS)}.")],
) -> None:
    """Keep a closed case longer, for a logged reason."""
    r = call(socket, local_pb2.LocalRequest(retention_extend=local_pb2.RetentionExtendRequest(
        case_id=case, days=days, reason=enums.parse(REASONS, "reason", reason)))).retention_due
    out.print(_("case {case} kept until {value}").format(case=case, value=day(r.items[0].retain_until_ms)))


@retention_app.command("due")
def retention_due(
    socket: SocketOpt,
    within: Annotated[str, typer.Option(help="Look ahead, e.g. 30d.")] = "0d",
) -> None:
    """Closed cases whose retention ends within the given time."""
    r = call(socket, local_pb2.LocalRequest(retention_due=local_pb2.RetentionDueRequest(
        within_days=_days(within)))).retention_due
    if not r.items:
        out.print(_("nothing due"))
        return
    table = Table(title=_("Retention due"))
    for col in (N_("case"), N_("closed"), N_("erase on")):
        table.add_column(_(col))
    for i in r.items:
        table.add_row(str(i.case_id), day(i.closed_ms), day(i.retain_until_ms))
    out.print(table)


@retention_app.command("run")
def retention_run(socket: SocketOpt) -> None:
    """Erase every closed case whose retention has ended, and tell every recipient."""
    _erased(call(socket, local_pb2.LocalRequest(retention_run=local_pb2.RetentionRunRequest())).erasure)


@subject_app.command("export")
def subject_export(
    socket: SocketOpt, case: CaseOpt,
    to: Annotated[Path, typer.Option("--out", help="Where to write the JSON (created with mode 0600).")],
) -> None:
    """Everything this node holds about a case's subject, for an access request (the read is logged)."""
    r = call(socket, local_pb2.LocalRequest(subject_export=local_pb2.SubjectExportRequest(case_id=case)))
    fd = os.open(to, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(r.subject_export.document)
    out.print(_("wrote what this node holds about case {case}'s subject to {to} (mode 0600)")
                .format(case=case, to=to))


@subject_app.command("erase")
def subject_erase(
    socket: SocketOpt, case: CaseOpt,
    reason: Annotated[str, typer.Option(help=f"One of: {', '.join(ERASURE_REASONS)}.")],
    confirm_open: Annotated[bool, typer.Option("--confirm-open", help="Erase even though the case is open.")] = False,
) -> None:
    """Erase one case's subject now (an access or erasure request), and tell every recipient."""
    r = call(socket, local_pb2.LocalRequest(subject_erase=local_pb2.EraseRequest(
        case_id=case, reason=enums.parse(ERASURE_REASONS, "reason", reason),
        confirm_open=confirm_open))).erasure
    _erased(r)
