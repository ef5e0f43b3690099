"""``olievlek agreement record|withdraw|list``: a person's recorded agreement on a case.

An agreement is a safeguard on top of a rule's lawful basis, never a replacement for it. Its scope is
recipient kinds and purposes of the bundle; the evidence is a reference to the signed form kept in the
municipality's records (a record id, not free text).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table

from olievlek.i18n import N_, _
from olievlek.v1 import local_pb2

from .cases import CaseOpt, SocketOpt, day
from .console import out
from .local_client import call

agreement_app = typer.Typer(help="A person's recorded agreements on a case.", no_args_is_help=True)



def _show(r: local_pb2.AgreementResponse) -> None:
    table = Table(title=_("Agreements"))
    for col in (N_("id"), N_("recipient kinds"), N_("purposes"), N_("valid until"), N_("evidence"), N_("recorded"),
                N_("withdrawn")):
        table.add_column(_(col))
    for a in r.agreements:
        table.add_row(str(a.agreement_id), ", ".join(a.recipient_kinds), ", ".join(a.purposes),
                      day(a.valid_until_ms), a.evidence_ref, day(a.recorded_ms), day(a.withdrawn_ms))
    out.print(table if r.agreements else "no agreements recorded")


@agreement_app.command("record")
def agreement_record(
    socket: SocketOpt, case: CaseOpt,
    recipient_kind: Annotated[list[str], typer.Option(help="Recipient kind covered (repeatable).")],
    purpose: Annotated[list[str], typer.Option(help="Purpose covered (repeatable), e.g. hit_no_hit_check.")],
    valid_until: Annotated[str, typer.Option(help="Last day it holds, YYYY-MM-DD.")],
    evidence: Annotated[str, typer.Option(help="Record id of the signed form, e.g. gent-2026-0042.")],
) -> None:
    """Record what the person agreed to, for whom, for what, until when."""
    try:
        until = dt.datetime.strptime(valid_until, "%Y-%m-%d").replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    except ValueError:
        raise typer.BadParameter(_("expected YYYY-MM-DD"), param_hint="--valid-until") from None
    _show(call(socket, local_pb2.LocalRequest(agreement=local_pb2.AgreementRequest(agreement=local_pb2.Agreement(
        case_id=case, recipient_kinds=recipient_kind, purposes=purpose, valid_until_ms=int(until.timestamp() * 1000),
        evidence_ref=evidence)))).agreement)


@agreement_app.command("withdraw")
def agreement_withdraw(socket: SocketOpt, agreement: Annotated[int, typer.Option(help="Agreement id.")]) -> None:
    """The person withdraws an agreement: it stops counting from now."""
    _show(call(socket, local_pb2.LocalRequest(agreement=local_pb2.AgreementRequest(
        agreement=local_pb2.Agreement(agreement_id=agreement), withdraw=True))).agreement)


@agreement_app.command("list")
def agreement_list(socket: SocketOpt, case: CaseOpt) -> None:
    """Agreements recorded on a case, withdrawn ones included."""
    _show(call(socket, local_pb2.LocalRequest(agreement=local_pb2.AgreementRequest(
        agreement=local_pb2.Agreement(case_id=case), list=True))).agreement)
