"""Who may do what at a node: local users (by uid, from SO_PEERCRED), their roles, need-to-know.

- *regisseur*: every case of the node, alerts, the inbox;
- *table member*: only the cases they are assigned to (``case assign``);
- *node administrator*: users, the outbox and the access log, retention runs; never case contents.

A uid may hold several roles. The uids in the configuration's ``administrators``
(default: the account that runs the node) are administrators without being
registered, so a fresh node can be set up; everyone else must be added with
``olievlek user add``. A refusal names the operation and the roles that may
do it, and is written to the request log with outcome ``forbidden``.
"""

from __future__ import annotations

from dataclasses import dataclass

from olievlek.errors import ConfigError
from olievlek.i18n import _
from olievlek.v1 import local_pb2, summary_pb2

from .request_error import RequestError

REGISSEUR = local_pb2.USER_ROLE_REGISSEUR
TABLE_MEMBER = local_pb2.USER_ROLE_TABLE_MEMBER
ADMINISTRATOR = local_pb2.USER_ROLE_ADMINISTRATOR

ALLOWED: dict[str, frozenset[int]] = {
    "case_open": frozenset({REGISSEUR}),
    "case_show": frozenset({REGISSEUR, TABLE_MEMBER}),
    "case_list": frozenset({REGISSEUR, TABLE_MEMBER}),
    "case_assign": frozenset({REGISSEUR}),
    "alert_move": frozenset({REGISSEUR}),
    "inbox_list": frozenset({REGISSEUR}),
    "identify": frozenset({REGISSEUR}),
    "outbox_list": frozenset({REGISSEUR, ADMINISTRATOR}),
    "access_log": frozenset({REGISSEUR, ADMINISTRATOR}),
    "user_add": frozenset({ADMINISTRATOR}),
    "user_remove": frozenset({ADMINISTRATOR}),
    "user_list": frozenset({ADMINISTRATOR}),
    "case_close": frozenset({REGISSEUR}),
    "case_update": frozenset({REGISSEUR}),
    "agreement": frozenset({REGISSEUR}),
    "retention_extend": frozenset({REGISSEUR}),
    "retention_due": frozenset({REGISSEUR, ADMINISTRATOR}),
    "retention_run": frozenset({REGISSEUR, ADMINISTRATOR}),
    "subject_erase": frozenset({REGISSEUR}),
    "subject_export": frozenset({REGISSEUR}),
    "handover": frozenset({REGISSEUR}),
    "inbox_decide": frozenset({REGISSEUR}),
    "liaison_query": frozenset({REGISSEUR}),
    "disclosure_ask": frozenset({REGISSEUR}),
    "disclosure_decide": frozenset({REGISSEUR}),
    "directory_verify": frozenset({REGISSEUR, ADMINISTRATOR}),
    "monitor_report": frozenset({REGISSEUR}),
    "monitor_list": frozenset({REGISSEUR}),
}


def role_name(role: int) -> str:
    return local_pb2.UserRole.Name(role).removeprefix("USER_ROLE_").lower().replace("_", " ")  # type: ignore[arg-type]


class Forbidden(RequestError):
    def __init__(self, message: str) -> None:
        super().__init__("forbidden", message)


@dataclass(frozen=True, slots=True)
class Caller:
    """The local user behind one request."""

    uid: int
    roles: frozenset[int]
    agencies: frozenset[int]

    def may(self, role: int) -> bool:
        return role in self.roles

    def sees_every_case(self) -> bool:
        return REGISSEUR in self.roles


def authorise(caller: Caller, op: str) -> None:
    """Raises Forbidden unless one of the caller's roles may run ``op``."""
    allowed = ALLOWED.get(op, frozenset())
    if caller.roles & allowed:
        return
    if not caller.roles:
        raise Forbidden(_("uid {uid} is not a user of this node; a node administrator adds users with "
                          "`olievlek user add`").format(uid=caller.uid))
    needed = _(" or ").join(sorted(role_name(r) for r in allowed)) or _("nobody")
    held = ", ".join(sorted(role_name(r) for r in caller.roles))
    raise Forbidden(_("uid {uid} ({roles}) may not {op}; that needs {needed}").format(
        uid=caller.uid, roles=held, op=op, needed=needed))


def parse_user(uid: int, role: str, agency: str) -> local_pb2.User:
    """A user from configuration words: ``regisseur``/``table-member``/``administrator``, ``police``...

    Raises:
        ConfigError: an unknown role or agency.
    """
    try:
        role_value = local_pb2.UserRole.Value("USER_ROLE_" + role.upper().replace("-", "_"))
        agency_value = summary_pb2.AgencyRole.Value("AGENCY_ROLE_" + agency.upper().replace("-", "_")) if agency else 0
    except ValueError:
        raise ConfigError(f"user {uid}: unknown role {role!r} or agency {agency!r}") from None
    return local_pb2.User(uid=uid, role=role_value, agency=agency_value)  # type: ignore[arg-type]
