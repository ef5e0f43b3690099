"""``olievlek user``: a node administrator manages who may use the node, and in which role."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

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


@user_app.command("add")
def user_add(
    socket: SocketOpt, uid: UidOpt, role: RoleOpt,
    agency: Annotated[str | None, typer.Option(help="A table member's agency at the table.")] = None,
) -> None:
    """Give a local user a role at this node."""
    r = call(socket, local_pb2.LocalRequest(user_add=local_pb2.UserAddRequest(user=_user(uid, role, agency))))
    out.print(_table(list(r.user_list.users)))


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
