"""``olievlek user``: a node administrator manages who may use the node, and in which role.

Giving a role takes two administrators: ``user add`` asks, another administrator ``user confirm``s
(``user pending`` lists what waits). ``user grants`` is the grant log the data-protection officer reads,
each entry checked against the node's countersignature.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from olievlek.node.access import GRANT_CONTEXT, GrantMode, grant_statement
from rich.table import Table

from olievlek.errors import ConfigError
from olievlek.i18n import N_, _
from olievlek.v1 import local_pb2, summary_pb2

from . import enums
from .cases import SocketOpt
from .console import out
from .local_client import call

user_app = typer.Typer(help="Local users of this node and their roles (node administrators only).",
                       no_args_is_help=True)

ROLES = enums.names(local_pb2.UserRole, "USER_ROLE_")
UidOpt = Annotated[int, typer.Option("--uid", help="The user's numeric uid on this host.")]
RoleOpt = Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.")]


def _user(uid: int, role: str, agency: str | None) -> local_pb2.User:
    no_agency = summary_pb2.AGENCY_ROLE_UNSPECIFIED
    return local_pb2.User(uid=uid, role=enums.parse(ROLES, "role", role),
                          agency=enums.parse(enums.AGENCIES, "agency", agency) if agency else no_agency)


def _table(users: list[local_pb2.User]) -> Table:
    table = Table(title=_("Users"))
    for col in (N_("uid"), N_("role"), N_("agency")):
        table.add_column(_(col))
    for u in users:
        table.add_row(str(u.uid), enums.name_of(ROLES, u.role), enums.name_of(enums.AGENCIES, u.agency))
    return table


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M") if ms else "-"


def _granted(r: local_pb2.UserGrantResponse) -> None:
    q = r.request
    what = {"request": q.request_id, "uid": q.user.uid, "role": enums.name_of(ROLES, q.user.role)}
    if q.state == local_pb2.ROLE_REQUEST_STATE_PENDING:
        out.print(_("role request {request}: uid {uid} as {role} waits for another administrator, who confirms it "
                    "with `olievlek user confirm --request {request}`").format(**what))
    elif q.mode == local_pb2.GRANT_MODE_SINGLE_ADMINISTRATOR:
        out.print(_("role request {request}: uid {uid} is {role} (single administrator: countersigned in the grant "
                    "log, `olievlek user grants`)").format(**what))
    else:
        out.print(_("role request {request}: uid {uid} is {role}, confirmed by uid {by}").format(
            **what, by=q.confirmed_by))
    out.print(_table(list(r.users)))


@user_app.command("add")
def user_add(
    socket: SocketOpt, uid: UidOpt, role: RoleOpt,
    agency: Annotated[str | None, typer.Option(help="A table member's agency at the table.")] = None,
) -> None:
    """Ask for a role for a local user; another administrator confirms it."""
    r = call(socket, local_pb2.LocalRequest(user_add=local_pb2.UserAddRequest(user=_user(uid, role, agency))))
    _granted(r.user_grant)


@user_app.command("confirm")
def user_confirm(
    socket: SocketOpt,
    request: Annotated[int, typer.Option("--request", help="The role request's number (`olievlek user pending`).")],
) -> None:
    """Confirm another administrator's role request, which grants the role."""
    r = call(socket, local_pb2.LocalRequest(user_confirm=local_pb2.UserConfirmRequest(request_id=request)))
    _granted(r.user_grant)


@user_app.command("pending")
def user_pending(socket: SocketOpt) -> None:
    """Role requests that wait for a second administrator."""
    requests = list(call(socket, local_pb2.LocalRequest(user_pending=local_pb2.UserPendingRequest()))
                    .role_requests.requests)
    table = Table(title=_("Role requests"))
    for col in (N_("request"), N_("uid"), N_("role"), N_("agency"), N_("requested by"), N_("when"), N_("expires")):
        table.add_column(_(col))
    for q in requests:
        table.add_row(str(q.request_id), str(q.user.uid), enums.name_of(ROLES, q.user.role),
                      enums.name_of(enums.AGENCIES, q.user.agency), str(q.requested_by), _when(q.requested_at_ms),
                      _when(q.expires_at_ms))
    out.print(table if requests else _("no role requests wait"))


def _signer_key(answer: bytes, sign_cert: Path | None) -> ed25519.Ed25519PublicKey:
    """The key the countersignatures must verify under: the node's certificate as given, else as it sent it."""
    try:
        cert = (x509.load_pem_x509_certificate(sign_cert.read_bytes()) if sign_cert is not None
                else x509.load_der_x509_certificate(answer))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the node's signing certificate: {exc}") from None
    key = cert.public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError("the node's signing certificate is not an Ed25519 envelope-signing certificate")
    return key


def _countersigned(key: ed25519.Ed25519PublicKey, g: local_pb2.RoleGrant) -> bool:
    """The signature verifies, and over a statement of exactly this entry (not another grant's)."""
    try:
        key.verify(g.signature, GRANT_CONTEXT + g.statement)
    except InvalidSignature:
        return False
    user = local_pb2.User(uid=g.user.uid, role=g.user.role, agency=g.user.agency)
    alone = g.mode == local_pb2.GRANT_MODE_SINGLE_ADMINISTRATOR
    expected = grant_statement(json.loads(g.statement).get("node", ""), user, g.requested_by,
                               None if alone else g.confirmed_by,
                               GrantMode.SINGLE_ADMINISTRATOR if alone else GrantMode.CONFIRMED, g.at_ms)
    return expected == g.statement


@user_app.command("grants")
def user_grants(
    socket: SocketOpt,
    sign_cert: Annotated[Path | None, typer.Option(
        "--sign-cert", help="The node's envelope-signing certificate (PEM) to check the countersignatures "
        "with (default: the one the node sends).")] = None,
) -> None:
    """Every role granted, by whom, countersigned by the node (for the DPO). Exit 1 if one does not verify."""
    r = call(socket, local_pb2.LocalRequest(user_grants=local_pb2.UserGrantsRequest())).user_grants
    key = _signer_key(r.signer_certificate, sign_cert)
    table = Table(title=_("Grant log"))
    for col in (N_("when"), N_("request"), N_("uid"), N_("role"), N_("agency"), N_("requested by"),
                N_("confirmed by"), N_("countersignature")):
        table.add_column(_(col))
    bad = 0
    for g in r.grants:
        ok = _countersigned(key, g)
        bad += not ok
        confirmed = (_("nobody: single administrator") if g.mode == local_pb2.GRANT_MODE_SINGLE_ADMINISTRATOR
                     else str(g.confirmed_by))
        table.add_row(_when(g.at_ms), str(g.request_id), str(g.user.uid), enums.name_of(ROLES, g.user.role),
                      enums.name_of(enums.AGENCIES, g.user.agency), str(g.requested_by), confirmed,
                      _("valid") if ok else _("[bold red]INVALID[/]"))
    out.print(table if r.grants else _("no roles granted through the node"))
    if bad:
        out.print(_("{count} countersignature(s) do not verify: the grant log was altered").format(count=bad))
        raise typer.Exit(1)


@user_app.command("remove")
def user_remove(socket: SocketOpt, uid: UidOpt, role: RoleOpt) -> None:
    """Take a role away from a local user."""
    r = call(socket, local_pb2.LocalRequest(user_remove=local_pb2.UserRemoveRequest(user=_user(uid, role, None))))
    out.print(_table(list(r.user_list.users)))


@user_app.command("list")
def user_list(socket: SocketOpt) -> None:
    """Registered users and their roles."""
    r = call(socket, local_pb2.LocalRequest(user_list=local_pb2.UserListRequest()))
    out.print(_table(list(r.user_list.users)) if r.user_list.users else "no registered users")
