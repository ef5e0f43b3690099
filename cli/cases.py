"""``olievlek case``, ``alert`` and ``inbox``: a regisseur's commands against their own node."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from olievlek.i18n import N_, _
from olievlek.kinds import MessageKind
from olievlek.statuses import InboxStatus
from olievlek.v1 import local_pb2, summary_pb2

from . import enums
from .console import out
from .identity_input import read_identity
from .local_client import call

case_app = typer.Typer(help="Case files at this node.", no_args_is_help=True)
alert_app = typer.Typer(help="Send alerts to other organisations.", no_args_is_help=True)
inbox_app = typer.Typer(help="What other organisations sent to this node.", invoke_without_command=True)
handover_app = typer.Typer(help="Hand follow-up over to the municipality of release (justice house, prison).",
                           no_args_is_help=True)
outbox_app = typer.Typer(help="What this node sent, and what became of it.", invoke_without_command=True)

SocketOpt = Annotated[
    Path,
    typer.Option("--socket", envvar="OLIEVLEK_NODE_SOCKET", help="The node's local socket."),
]
CaseOpt = Annotated[int, typer.Option("--case", help="Case id at this node.")]
# For group callbacks that list without a subcommand: the socket is checked only when it is used.
OptionalSocketOpt = Annotated[
    Path | None,
    typer.Option("--socket", envvar="OLIEVLEK_NODE_SOCKET", help="The node's local socket."),
]
FromFileOpt = Annotated[
    Path | None,
    typer.Option("--from-file", help="Read the identity (JSON) from this file instead of stdin or a prompt."),
]


@case_app.command("open")
def case_open(
    socket: SocketOpt,
    phase: Annotated[str, typer.Option(help=f"One of: {', '.join(enums.PHASES)}.")] = "signal",
    concern: Annotated[list[str] | None, typer.Option(help="Concern category (repeatable).")] = None,
    risk: Annotated[str | None, typer.Option(help=f"One of: {', '.join(enums.RISKS)}.")] = None,
    agency: Annotated[list[str] | None, typer.Option(help="Agency at the table (repeatable).")] = None,
    contact: Annotated[str, typer.Option(help="Registered contact id (default: the first).")] = "",
    basis: Annotated[str, typer.Option(help="Lawful-basis code of the node's configuration (sets retention).")]
    = "default",
    from_file: FromFileOpt = None,
    opened: Annotated[str, typer.Option(help="A case carried over from paper: the month it opened, YYYY-MM.")] = "",
) -> None:
    """Open a case. The person's identity is read from a prompt, stdin or --from-file, never from arguments."""
    year, month = year_month(opened, "--opened") if opened else (0, 0)
    request = local_pb2.CaseOpenRequest(
        opened_year=year, opened_month=month,
        identity=read_identity(from_file, names=True),
        phase=enums.parse(enums.PHASES, "phase", phase),
        concerns=[enums.parse(enums.CONCERNS, "concern", c) for c in concern or []],
        risk_level=enums.parse(enums.RISKS, "risk level", risk) if risk else summary_pb2.RISK_LEVEL_UNSPECIFIED,
        agencies=[enums.parse(enums.AGENCIES, "agency", a) for a in agency or []],
        contact_id=contact, lawful_basis=basis,
    )
    response = call(socket, local_pb2.LocalRequest(case_open=request))
    out.print(_("case {case_id} opened").format(case_id=response.case_open.case_id))


def year_month(text: str, option: str) -> tuple[int, int]:
    try:
        year, month = (int(x) for x in text.split("-"))
    except ValueError:
        raise typer.BadParameter(_("expected YYYY-MM"), param_hint=option) from None
    return year, month


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def day(ms: int) -> str:
    """A date for tables; "-" when there is none."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d") if ms else "-"


def _need(socket: Path | None) -> Path:
    if socket is None:
        raise typer.BadParameter(_("give --socket or set OLIEVLEK_NODE_SOCKET"), param_hint="--socket")
    return socket


def _case_row(c: local_pb2.CaseInfo) -> tuple[str, ...]:
    return (str(c.case_id), enums.name_of(enums.PHASES, c.phase), enums.name_of(enums.RISKS, c.risk_level),
            ", ".join(enums.name_of(enums.CONCERNS, x) for x in c.concerns),
            ", ".join(enums.name_of(enums.AGENCIES, x) for x in c.agencies), c.contact_id,
            f"{c.opened_year}-{c.opened_month:02d}")


_CASE_COLUMNS = (N_("case"), N_("phase"), N_("risk"), N_("concerns"), N_("agencies"), N_("contact"), N_("opened"))


@case_app.command("list")
def case_list(socket: SocketOpt) -> None:
    """The node's cases, without identifying fields."""
    cases = list(call(socket, local_pb2.LocalRequest(case_list=local_pb2.CaseListRequest())).case_list.cases)
    if not cases:
        out.print(_("no cases"))
        return
    table = Table(title=_("Cases"))
    for col in _CASE_COLUMNS:
        table.add_column(_(col))
    for c in cases:
        table.add_row(*_case_row(c))
    out.print(table)


@case_app.command("show")
def case_show(
    socket: SocketOpt,
    case: CaseOpt,
    purpose: Annotated[str, typer.Option(help=f"Why you open the identity: {', '.join(enums.PURPOSES)}.")],
) -> None:
    """A case with its subject's identity; the read is written to the node's access log."""
    r = call(socket, local_pb2.LocalRequest(case_show=local_pb2.CaseShowRequest(
        case_id=case, purpose=enums.parse(enums.PURPOSES, "purpose", purpose)))).case_show
    table = Table(title=_("Case {case}").format(case=case), show_header=False)
    table.add_column("field")
    table.add_column("value")
    for name, value in zip(_CASE_COLUMNS, _case_row(r.case), strict=True):
        table.add_row(name, value)
    for field in ("national_number", "given_names", "family_name", "birth_date", "address"):
        table.add_row(field.replace("_", " "), escape(getattr(r.identity, field)) or "-")
    table.add_row("status", r.status)
    for h in r.history:
        table.add_row("phase change", f"{_when(h.at_ms)} uid {h.uid}: {enums.name_of(enums.PHASES, h.from_phase)}"
                      f" -> {enums.name_of(enums.PHASES, h.to_phase)}")
    for n in r.notes:
        table.add_row(f"note {_when(n.at_ms)} uid {n.uid}", escape(n.text))
    out.print(table)


@case_app.command("update")
def case_update(
    socket: SocketOpt,
    case: CaseOpt,
    concern: Annotated[list[str] | None, typer.Option(help="Concern category (repeatable; replaces).")] = None,
    risk: Annotated[str | None, typer.Option(help=f"One of: {', '.join(enums.RISKS)}.")] = None,
    agency: Annotated[list[str] | None, typer.Option(help="Agency at the table (repeatable; replaces).")] = None,
) -> None:
    """Change a case's concerns, risk level or agencies at the table."""
    _update(socket, local_pb2.CaseUpdateRequest(
        case_id=case, concerns=[enums.parse(enums.CONCERNS, "concern", c) for c in concern or []],
        risk_level=enums.parse(enums.RISKS, "risk level", risk) if risk else summary_pb2.RISK_LEVEL_UNSPECIFIED,
        agencies=[enums.parse(enums.AGENCIES, "agency", a) for a in agency or []]))


@case_app.command("phase")
def case_phase(
    socket: SocketOpt,
    case: CaseOpt,
    to: Annotated[str, typer.Option("--to", help="signal, pre-analysis or follow-up (closing: `case close`).")],
) -> None:
    """Move a case to another phase; the change is dated and kept with who made it."""
    _update(socket, local_pb2.CaseUpdateRequest(case_id=case, phase=enums.parse(enums.PHASES, "phase", to)))


@case_app.command("note")
def case_note(
    socket: SocketOpt,
    case: CaseOpt,
    from_file: Annotated[Path | None, typer.Option("--from-file", help="Read the note from this file.")] = None,
) -> None:
    """Add a note (read from a file, stdin or a prompt, never from arguments; stored encrypted)."""
    if from_file is not None:
        text = from_file.read_text()
    elif not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        text = typer.prompt(_("Note"))
    if not text.strip():
        raise typer.BadParameter(_("the note is empty"))
    _update(socket, local_pb2.CaseUpdateRequest(case_id=case, note=text))


def _update(socket: Path, request: local_pb2.CaseUpdateRequest) -> None:
    c = call(socket, local_pb2.LocalRequest(case_update=request)).case_update
    phase, risk = enums.name_of(enums.PHASES, c.phase), enums.name_of(enums.RISKS, c.risk_level)
    out.print(f"case {c.case_id}: {phase}, risk {risk}" + (", note added" if request.note else ""))


@case_app.command("assign")
def case_assign(
    socket: SocketOpt,
    case: CaseOpt,
    uid: Annotated[int, typer.Option("--uid", help="The table member's uid.")],
    remove: Annotated[bool, typer.Option("--remove", help="Take the assignment away.")] = False,
) -> None:
    """Let a table member see a case (need-to-know), or take that away."""
    r = call(socket, local_pb2.LocalRequest(case_assign=local_pb2.CaseAssignRequest(
        case_id=case, uid=uid, remove=remove))).case_assign
    out.print(_("case {case} is assigned to uid(s): {value}")
                .format(case=case, value=', '.join(map(str, r.uids)) or 'none'))


@case_app.command("access-log")
def case_access_log(
    socket: SocketOpt,
    case: Annotated[int, typer.Option("--case", help="Only this case (default: all).")] = 0,
) -> None:
    """Who opened which case's identifying fields, when and why."""
    entries = list(call(socket, local_pb2.LocalRequest(access_log=local_pb2.AccessLogRequest(case_id=case)))
                   .access_log.entries)
    table = Table(title=_("Access log"))
    for col in (N_("when"), N_("uid"), N_("case"), N_("fields"), N_("purpose")):
        table.add_column(_(col))
    for e in entries:
        table.add_row(_when(e.at_ms), str(e.uid), str(e.case_id), ", ".join(e.fields),
                      enums.name_of(enums.PURPOSES, e.purpose))
    out.print(table if entries else "no reads logged")


@alert_app.command("move")
def alert_move(
    socket: SocketOpt,
    case: CaseOpt,
    to: Annotated[int, typer.Option("--to", help="NIS code of the municipality the person moves to.")],
    include: Annotated[list[str] | None, typer.Option(help="Optional summary field to include: agencies.")] = None,
    rule: Annotated[str, typer.Option(help="Rule id to invoke (default: the bundle's rule).")] = "",
) -> None:
    """Tell the municipality a followed-up person moves to. Exit 1 when the broker refuses."""
    request = local_pb2.AlertMoveRequest(case_id=case, destination_nis=to, include_fields=include or [],
                                         rule_id=rule)
    _sent(call(socket, local_pb2.LocalRequest(alert_move=request)).alert_move, _("move alert for case {case}")
                                                                                 .format(case=case))


def _inbox_table(items: list[local_pb2.InboxItem]) -> Table:
    table = Table(title=_("Inbox"))
    for col in (N_("item"), N_("from"), N_("kind"), N_("received"),
                N_("status"), N_("phase"), N_("risk"), N_("concerns"), N_("contact"), N_("detail")):
        table.add_column(_(col))
    for it in items:
        s = it.summary
        table.add_row(
            str(it.item_id), it.sender, it.kind, _when(it.received_at_ms),
            _(enums.confirmed(enums.INBOX_STATUSES.get(InboxStatus(it.status), it.status), it.confirmation)),
            enums.name_of(enums.PHASES, s.phase), enums.name_of(enums.RISKS, s.risk_level),
            ", ".join(enums.name_of(enums.CONCERNS, c) for c in s.concerns), s.contact_id, _disclosure(it),
        )
    return table


def _disclosure(it: local_pb2.InboxItem) -> str:
    """What a disclosure request asks (and until when), or what a response decided."""
    fields = ", ".join(enums.name_of(enums.DISCLOSABLE, f) for f in it.fields)
    if it.kind == MessageKind.DISCLOSURE_REQUEST:
        return f"asks {fields}; file {it.file_ref}, basis {it.legal_basis}; decide by {_when(it.expires_at_ms)}"
    if it.kind == MessageKind.DISCLOSURE_RESPONSE:
        if it.decision == summary_pb2.DISCLOSURE_DECISION_APPROVED:
            return f"approved: {fields}"
        return f"denied: {enums.name_of(enums.DENIALS, it.reason)}"
    return ""


@inbox_app.callback()
def inbox(ctx: typer.Context, socket: OptionalSocketOpt = None) -> None:
    """List what arrived; items wait *pending identification* until matched."""
    if ctx.invoked_subcommand is None:
        items = list(call(_need(socket), local_pb2.LocalRequest(inbox_list=local_pb2.InboxListRequest()))
                     .inbox_list.items)
        if not items:
            out.print(_("inbox is empty"))
            return
        out.print(_inbox_table(items))


@inbox_app.command("identify")
def inbox_identify(socket: SocketOpt, from_file: FromFileOpt = None) -> None:
    """Enter a person's identifier (prompt, stdin or file) and match it to waiting items."""
    identity = read_identity(from_file, names=False)
    r = call(socket, local_pb2.LocalRequest(identify=local_pb2.IdentifyRequest(identity=identity))).identify
    if not r.matched_item_ids:
        out.print(_("no waiting item matches this person"))
        raise typer.Exit(1)
    note = " (probable: matched on names and birth date only)" if r.probable else ""
    out.print(_("matched inbox item(s) {value} to subject {subject_id}{note}")
                .format(value=', '.join(map(str, r.matched_item_ids)), subject_id=r.subject_id, note=note))


_FORMAT = N_("the message does not follow the message format")
REFUSALS = {
    "malformed": _FORMAT, "unknown_field": _FORMAT, "invalid_enum": _FORMAT, "bound_exceeded": _FORMAT,
    "invalid_field": _FORMAT, "non_canonical": _FORMAT,
    "sender_mismatch": N_("the sender is not the organisation of this node's certificate"),
    "bad_signature": N_("the signature or the signing certificate does not check out"),
    "bad_signer_certificate": N_("the signature or the signing certificate does not check out"),
    "stale": N_("this node's clock is too far off; the message is sent again"),
    "idempotency_conflict": N_("the same key was used for another message"),
    "policy_denied": N_("the federation's data-sharing rules do not allow this"),
    "unknown_recipient": N_("the recipient is not an organisation of the federation"),
    "queue_full": N_("the recipient's queue is full; the message is sent again later"),
    "budget_exceeded": N_("the query budget is used up"),
    "no_hit": N_("no hit"),
}


def _sent(r: local_pb2.AlertMoveResponse, what: str) -> None:
    if r.confirmation == local_pb2.CONFIRMATION_AWAITING_WITNESSES:
        # The broker answered, but no witness has backed it yet: its words would be the broker's word alone.
        out.print(_("{what} (outbox {outbox_id}) to {recipient}: awaiting witnesses; `olievlek outbox` shows the "
                    "outcome once they confirm it").format(what=what, outbox_id=r.outbox_id, recipient=r.recipient))
    elif r.confirmation == local_pb2.CONFIRMATION_UNCONFIRMED:
        out.print(_("{what} (outbox {outbox_id}) to {recipient}: {unconfirmed}").format(
            what=what, outbox_id=r.outbox_id, recipient=r.recipient, unconfirmed=_(enums.UNCONFIRMED)))
        raise typer.Exit(1)
    elif r.status == local_pb2.OUTBOX_STATUS_ACCEPTED:
        out.print(_("{what} accepted by the broker for {recipient} (rule {rule_id})")
                    .format(what=what, recipient=r.recipient, rule_id=r.rule_id))
    elif r.status == local_pb2.OUTBOX_STATUS_REFUSED:
        # The broker's words are English (it does not know who reads them); the code says it in the reader's.
        out.print(_("[bold red]refused[/] {detail}").format(
            detail=escape(f"[{r.refusal_code}] {_(REFUSALS.get(r.refusal_code, r.refusal_code))}")), highlight=False)
        if r.refusal_detail:
            out.print(_("  broker: {detail}").format(detail=escape(r.refusal_detail)), highlight=False)
        if r.refusal_field:
            out.print(_("  field: {refusal_field}   rule: {rule_id}")
                        .format(refusal_field=r.refusal_field, rule_id=r.rule_id), highlight=False)
        raise typer.Exit(1)
    else:
        out.print(_("{what} {outbox_id} queued; the broker has not answered yet (it will be resent)")
                    .format(what=what, outbox_id=r.outbox_id))


NEEDS = enums.names(summary_pb2.FollowUpNeed, "FOLLOW_UP_NEED_")


@handover_app.command("send")
def handover_send(
    socket: SocketOpt,
    case: CaseOpt,
    to: Annotated[int, typer.Option("--to", help="NIS code of the municipality of release.")],
    expected: Annotated[str, typer.Option(help="Expected release month, YYYY-MM.")],
    need: Annotated[list[str] | None, typer.Option(help=f"Follow-up need (repeatable): {', '.join(NEEDS)}.")] = None,
) -> None:
    """Hand a person's follow-up over to the LIVC where they will live. Exit 1 when refused."""
    year, month = year_month(expected, "--expected")
    r = call(socket, local_pb2.LocalRequest(handover=local_pb2.HandoverRequest(
        case_id=case, destination_nis=to, expected_year=year, expected_month=month,
        needs=[enums.parse(NEEDS, "need", n) for n in need or []]))).alert_move
    _sent(r, _("handover for case {case}").format(case=case))


@inbox_app.command("accept")
def inbox_accept(socket: SocketOpt, item: Annotated[int, typer.Option("--item", help="Inbox item id.")]) -> None:
    """Take an identified item over: a case opens in pre-analysis and the sender is told."""
    r = call(socket, local_pb2.LocalRequest(inbox_decide=local_pb2.InboxDecisionRequest(item_id=item))).inbox_decide
    out.print(_("item {item} accepted: case {case_id} opened in pre-analysis; the sender is told")
                .format(item=item, case_id=r.case_id))


@inbox_app.command("return")
def inbox_return(
    socket: SocketOpt, item: Annotated[int, typer.Option("--item", help="Inbox item id.")],
    suggest: Annotated[int, typer.Option(help="NIS code where the person may live instead.")] = 0,
) -> None:
    """Not our municipality: return the item to its sender (nothing of it stays here but a tombstone)."""
    call(socket, local_pb2.LocalRequest(inbox_decide=local_pb2.InboxDecisionRequest(
        item_id=item, return_it=True, suggested_nis=suggest)))
    out.print(f"item {item} returned to its sender" + (f", suggesting NIS {suggest}" if suggest else ""))


@outbox_app.callback()
def outbox(ctx: typer.Context, socket: OptionalSocketOpt = None) -> None:
    """What this node sent: delivery status, and what the recipient did with it."""
    if ctx.invoked_subcommand is not None:
        return
    request = local_pb2.LocalRequest(outbox_list=local_pb2.OutboxListRequest())
    items = list(call(_need(socket), request).outbox_list.items)
    table = Table(title=_("Outbox"))
    for col in (N_("id"), N_("kind"), N_("to"), N_("rule"), N_("sent"), N_("status"), N_("outcome"), N_("detail")):
        table.add_column(_(col))
    for i in items:
        final = i.confirmation in (local_pb2.CONFIRMATION_UNSPECIFIED, local_pb2.CONFIRMATION_FINAL)
        table.add_row(str(i.outbox_id), i.kind, i.recipient, i.rule_id, _when(i.created_at_ms),
                      _(enums.confirmed(enums.OUTBOX_STATUSES[i.status], i.confirmation)), i.outcome or "-",
                      escape(i.detail) if final else "-")  # the detail words an outcome: only once it is final
    out.print(table if items else "outbox is empty")
