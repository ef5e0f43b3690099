"""``olievlek liaison``, ``disclosure`` and ``directory``: hit/no-hit queries and disclosure on request.

Identifiers are read from a CSV file, from stdin or from a prompt, never from
the command line; the output names rows by number, never by identifier.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from olievlek.errors import ConfigError
from olievlek.i18n import N_, _
from olievlek.v1 import local_pb2

from . import enums
from .cases import SocketOpt, _sent
from .console import err, out
from .identity_input import FIELDS, from_json, read_identity
from .local_client import call

liaison_app = typer.Typer(help="Ask the directory whether a person is known (federal liaison, justice house).",
                          no_args_is_help=True)
disclosure_app = typer.Typer(help="Decide on disclosure requests about persons this node holds.",
                             no_args_is_help=True)
directory_app = typer.Typer(help="This node's entries in the broker's reference directory.", no_args_is_help=True)

CHUNK = 100  # identities per local request: the progress bar moves per chunk
FIELD_NAMES = enums.DISCLOSABLE
DENIALS = enums.DENIALS
_OUTCOME = {local_pb2.QUERY_OUTCOME_HIT: "hit", local_pb2.QUERY_OUTCOME_NO_HIT: "no hit",
            local_pb2.QUERY_OUTCOME_INVALID: "invalid"}

PurposeOpt = Annotated[str, typer.Option("--purpose", help="The bundle's purpose, e.g. hit_no_hit_check.")]
BasisOpt = Annotated[str, typer.Option("--legal-basis", help="One of this node's legal-basis codes.")]
FileRefOpt = Annotated[str, typer.Option("--file-ref", help="Your file reference, in the bundle's pattern.")]
ItemOpt = Annotated[int, typer.Option("--item", help="Inbox item id of the disclosure request.")]
FieldsOpt = Annotated[list[str] | None, typer.Option(
    "--field", help=f"A field (repeatable): {', '.join(FIELD_NAMES)}.")]


def _csv_identities(text: str, source: str) -> list[local_pb2.Identity]:
    reader = csv.DictReader(io.StringIO(text))
    unknown = set(reader.fieldnames or ()) - set(FIELDS)
    if not reader.fieldnames or unknown:
        raise ConfigError(f"{source}: the header must name columns among {', '.join(FIELDS)}"
                          + (f"; unknown: {sorted(unknown)}" if unknown else ""))
    return [local_pb2.Identity(**{k: (v or "").strip() for k, v in row.items() if k in FIELDS}) for row in reader]


def read_identities(from_file: Path | None) -> list[local_pb2.Identity]:
    """A CSV file (a header, one person per row), a JSON object, piped stdin of either, or one prompt."""
    if from_file is not None and from_file.suffix.lower() == ".csv":
        try:
            return _csv_identities(from_file.read_text(), str(from_file))
        except OSError as exc:
            raise ConfigError(_("cannot read {from_file}: {strerror}")
                                .format(from_file=from_file, strerror=exc.strerror)) from exc
    if from_file is None and not sys.stdin.isatty():
        text = sys.stdin.read()
        return [from_json(text, "stdin")] if text.lstrip().startswith("{") else _csv_identities(text, "stdin")
    return [read_identity(from_file, names=False)]


@liaison_app.command("query")
def liaison_query(
    socket: SocketOpt, purpose: PurposeOpt, legal_basis: BasisOpt, file_ref: FileRefOpt,
    from_file: Annotated[Path | None, typer.Option(
        "--from-file", help="CSV (header: national_number,...) or a JSON identity; else stdin or a prompt.")] = None,
) -> None:
    """Is any of these persons followed up? Hit (with the holders' contacts) or no hit, per row."""
    identities = read_identities(from_file)
    rows: list[local_pb2.LiaisonRow] = []
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("querying", total=len(identities))
        for start in range(0, len(identities), CHUNK):
            chunk = identities[start:start + CHUNK]
            r = call(socket, local_pb2.LocalRequest(liaison_query=local_pb2.LiaisonQueryRequest(
                identities=chunk, purpose=purpose, legal_basis=legal_basis, file_ref=file_ref, first_row=start + 1)))
            rows.extend(r.liaison_query.rows)
            progress.advance(task, len(chunk))
    table = Table(title=_("Query {file_ref}").format(file_ref=file_ref))
    for col in (N_("row"), N_("answer"), N_("contacts"), N_("hit"), N_("why")):
        table.add_column(_(col))
    for row in rows:
        table.add_row(str(row.row), _OUTCOME[row.outcome], ", ".join(row.contacts),
                      str(row.hit_id) if row.hit_id else "", escape(row.error))
    out.print(table)
    count = {o: sum(1 for r in rows if r.outcome == v) for v, o in _OUTCOME.items()}
    out.print(_("{value} rows: {value2} hit, {value3} no hit, {value4} invalid")
                .format(value=len(rows), value2=count['hit'], value3=count['no hit'], value4=count['invalid']))


@liaison_app.command("disclose")
def liaison_disclose(
    socket: SocketOpt, purpose: PurposeOpt, legal_basis: BasisOpt, file_ref: FileRefOpt,
    hit: Annotated[int, typer.Option("--hit", help="The hit number a query showed.")],
    field: FieldsOpt = None,
    contact: Annotated[str, typer.Option(help="Which holder's contact to ask (default: the first).")] = "",
) -> None:
    """Ask the holder of a hit for more; the holder's regisseur approves (perhaps fewer fields) or denies."""
    r = call(socket, local_pb2.LocalRequest(disclosure_ask=local_pb2.DisclosureAskRequest(
        hit_id=hit, contact_id=contact, fields=[enums.parse(FIELD_NAMES, "field", f) for f in field or []],
        purpose=purpose, legal_basis=legal_basis, file_ref=file_ref))).alert_move
    _sent(r, _("disclosure request about hit {hit}").format(hit=hit))


@disclosure_app.command("approve")
def disclosure_approve(socket: SocketOpt, item: ItemOpt, field: FieldsOpt = None) -> None:
    """Approve a request: all fields asked, or only the --field ones."""
    r = call(socket, local_pb2.LocalRequest(disclosure_decide=local_pb2.DisclosureDecideRequest(
        item_id=item, approve=True, fields=[enums.parse(FIELD_NAMES, "field", f) for f in field or []]))).alert_move
    _sent(r, _("approval of request {item}").format(item=item))


@disclosure_app.command("deny")
def disclosure_deny(
    socket: SocketOpt, item: ItemOpt,
    reason: Annotated[str, typer.Option(help=f"Why: {', '.join(DENIALS)}.")],
) -> None:
    """Deny a request with a reason code; the requester gets the code and nothing else."""
    r = call(socket, local_pb2.LocalRequest(disclosure_decide=local_pb2.DisclosureDecideRequest(
        item_id=item, reason=enums.parse(DENIALS, "reason", reason)))).alert_move
    _sent(r, _("denial of request {item}").format(item=item))


@directory_app.command("verify")
def directory_verify(socket: SocketOpt) -> None:
    """Re-verify the broker's copy of this node's entries: signatures and content. Exit 1 on a problem."""
    r = call(socket, local_pb2.LocalRequest(directory_verify=local_pb2.DirectoryVerifyRequest())).directory_verify
    out.print(_("{entries} entries at the broker ({expected} registered here), {statements} signed coverage "
                "statements checked")
                .format(entries=r.entries, expected=r.expected, statements=r.statements))
    for problem in r.problems:
        out.print(_("[bold red]problem[/] {value}").format(value=escape(problem)), highlight=False)
    if r.problems:
        raise typer.Exit(1)
