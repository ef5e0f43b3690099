"""Who may do what at a node: local users (by uid, from SO_PEERCRED), their roles, need-to-know.

- *regisseur*: every case of the node, alerts, the inbox;
- *table member*: only the cases they are assigned to (``case assign``);
- *node administrator*: users, the outbox and the access log, retention runs; never case contents.

A uid may hold several roles. The uids in the configuration's ``administrators``
(default: the account that runs the node) are administrators without being
registered, and the configuration's ``users`` (the first regisseur, set at
install) are registered at start-up, so a fresh node can be set up; everyone
else must be added with ``olievlek user add``. A refusal names the operation
and the roles that may do it, and is written to the request log with outcome
``forbidden``.

No administrator grants a role alone. ``user add`` makes a *request*; it is
granted only when another administrator confirms it (``user confirm``) - one
who was an administrator when the request was made (the request keeps who
could confirm it), is not the requester and is not the user concerned. So an
administrator who creates a second account cannot make it a regisseur, nor
make it an administrator to confirm with. A node configured with
``single_administrator: true`` grants at once while the requester is its only
administrator, but every grant is countersigned with the node's signing key in
its grant log, which ``user grants`` lists for the data-protection officer.
Taking a role away needs nobody's confirmation. Every refusal has a
``GrantRefusal`` code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

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
    "user_confirm": frozenset({ADMINISTRATOR}),
    "user_pending": frozenset({ADMINISTRATOR}),
    # The grant log, as the access log: the data-protection officer reads it with either role.
    "user_grants": frozenset({REGISSEUR, ADMINISTRATOR}),
}

# How long a role request waits for its confirmation: a stale request is not confirmed by surprise.
ROLE_REQUEST_TTL_S = 7 * 24 * 3600.0
# Domain separation: a grant's countersignature can never be taken for an envelope signature.
GRANT_CONTEXT = b"olievlek/v1/role-grant\0"


class GrantRefusal(StrEnum):
    """The stable codes of a refused role grant or confirmation."""

    OWN_ROLES = "own_roles"  # nobody gives (or confirms) a role to themselves
    NO_SECOND_ADMINISTRATOR = "no_second_administrator"  # nobody else could confirm it
    OWN_REQUEST = "own_request"  # the requester cannot be the confirmer
    ADMINISTRATOR_AFTER_REQUEST = "administrator_after_request"  # became an administrator after the request
    UNKNOWN_ROLE_REQUEST = "unknown_role_request"
    REQUEST_DECIDED = "request_decided"  # already granted
    REQUEST_EXPIRED = "request_expired"


class RoleRequestState(StrEnum):
    """A role request as the store keeps it."""

    PENDING = "pending"
    GRANTED = "granted"
    EXPIRED = "expired"


class GrantMode(StrEnum):
    """How a role came to be granted (the grant log's ``mode``)."""

    CONFIRMED = "confirmed"  # by a second administrator
    SINGLE_ADMINISTRATOR = "single_administrator"  # at once, countersigned and listed for the DPO


class GrantRefused(RequestError):
    """A role grant or confirmation is refused; written to the request log with its code."""

    def __init__(self, code: GrantRefusal | str, message: str) -> None:
        super().__init__(str(code), message)


def grant_statement(org_id: str, user: local_pb2.User, requested_by: int, confirmed_by: int | None,
                    mode: GrantMode, at_ms: int) -> bytes:
    """The canonical statement of one grant that the node countersigns (sorted-key JSON, no spaces)."""
    return json.dumps({
        "node": org_id, "uid": user.uid, "role": role_name(user.role),
        "agency": summary_pb2.AgencyRole.Name(user.agency) if user.agency else "",
        "requested_by": requested_by, "confirmed_by": confirmed_by, "mode": mode.value, "at_ms": at_ms,
    }, sort_keys=True, separators=(",", ":")).encode()


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
