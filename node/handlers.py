"""What the node does for its local users: open cases, send alerts, read and match the inbox.

Identifiers arrive here only over the local socket, are validated and
pseudonymised, and are stored in this node's own database; no error message
or log line carries one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

from google.protobuf import json_format

from olievlek import logs, wire
from olievlek.clock import now_ms
from olievlek.envelope import Signer, body_of
from olievlek.errors import ConfigError
from olievlek.i18n import _
from olievlek.identity import ID_PATTERN, OrgKind
from olievlek.kinds import PURPOSES, MessageKind
from olievlek.normalise import identity_inputs
from olievlek.nrn import normalise_national_number
from olievlek.policy import Bundle
from olievlek.statuses import CaseStatus, Confirmation, OutboxStatus
from olievlek.storage.sqlite import Txn
from olievlek.v1 import broker_pb2, envelope_pb2, local_pb2, summary_pb2

from . import evidence
from .access import (
    GRANT_CONTEXT,
    Caller,
    GrantMode,
    GrantRefusal,
    GrantRefused,
    RoleRequestState,
    grant_statement,
)
from .casefile import CaseFile
from .directory import DirectoryHolder
from .disclosure import Disclosures
from .evidence import Item
from .outbox import OutboxSender
from .pseudonym_client import PseudonymClient
from .request_error import RequestError
from .store import CaseRow, GrantSeal, NodeStore, OutboxRow, RoleRequestRow
from .witness_watch import WitnessWatch

# Outbox states as the local API reports them; "failed" (could not be built) reads as refused.
_STATUS = {
    OutboxStatus.QUEUED: local_pb2.OUTBOX_STATUS_QUEUED, OutboxStatus.PENDING: local_pb2.OUTBOX_STATUS_PENDING,
    OutboxStatus.ACCEPTED: local_pb2.OUTBOX_STATUS_ACCEPTED, OutboxStatus.REFUSED: local_pb2.OUTBOX_STATUS_REFUSED,
    OutboxStatus.FAILED: local_pb2.OUTBOX_STATUS_REFUSED, OutboxStatus.EXPIRED: local_pb2.OUTBOX_STATUS_EXPIRED,
    OutboxStatus.CANCELLED: local_pb2.OUTBOX_STATUS_REFUSED,  # the case was erased before it was sent
    OutboxStatus.REJECTED: local_pb2.OUTBOX_STATUS_REJECTED,
}
assert set(_STATUS) == set(OutboxStatus)
CONFIRMATION = {None: local_pb2.CONFIRMATION_UNSPECIFIED,
                Confirmation.PROVISIONAL: local_pb2.CONFIRMATION_AWAITING_WITNESSES,
                Confirmation.FINAL: local_pb2.CONFIRMATION_FINAL,
                Confirmation.UNCONFIRMED: local_pb2.CONFIRMATION_UNCONFIRMED}

_REQUEST_STATE = {RoleRequestState.PENDING: local_pb2.ROLE_REQUEST_STATE_PENDING,
                  RoleRequestState.GRANTED: local_pb2.ROLE_REQUEST_STATE_GRANTED,
                  RoleRequestState.EXPIRED: local_pb2.ROLE_REQUEST_STATE_EXPIRED}
_GRANT_MODE = {GrantMode.CONFIRMED: local_pb2.GRANT_MODE_CONFIRMED,
               GrantMode.SINGLE_ADMINISTRATOR: local_pb2.GRANT_MODE_SINGLE_ADMINISTRATOR}

log = logs.get("node")

ALERT_WAIT_S = 10.0
FINAL_WAIT_S = 5.0  # then how long an answered alert waits for the witnesses (only while they are fresh)


class NodeHandlers:
    """The local API's operations."""

    def __init__(self, org_id: str, kind: OrgKind, store: NodeStore, bundle: Bundle, signer: Signer,
                 pseudonymiser: PseudonymClient, outbox: OutboxSender, casefile: CaseFile,
                 directory: DirectoryHolder, disclosures: Disclosures,
                 bases: frozenset[str] = frozenset({"default"}), witness: WitnessWatch | None = None) -> None:
        self.org_id = org_id
        self.kind = kind
        self.store = store
        self.bundle = bundle
        self.signer = signer
        self.pseudonymiser = pseudonymiser
        self.outbox = outbox
        self.casefile = casefile
        self.bases = bases
        self.directory = directory
        self.disclosures = disclosures
        self.witness = witness
        outbox.register(MessageKind.ALERT_MOVE, self.build_alert_move)
        outbox.register(MessageKind.HANDOVER, self.build_handover)

    async def _pseudonyms(self, identity: local_pb2.Identity) -> list[tuple[str, bytes]]:
        """(kind, pseudonym) for every identifier given: the number first, then the fallback identity."""
        inputs = identity_inputs(identity.national_number, identity.family_name, identity.given_names,
                                 identity.birth_date)
        combined = await self.pseudonymiser.pseudonymise(inputs)
        return [(i.kind, p) for i, p in zip(inputs, combined.pseudonyms, strict=True)]

    def _contact(self, requested: str) -> str:
        org = self.bundle.org(self.org_id)
        if org is None or not org.contacts:
            raise ConfigError(f"organisation {self.org_id} has no registered contact in the bundle")
        if not requested:
            return org.contacts[0].id
        if requested not in org.contact_ids:
            raise RequestError("unknown_contact", _("contact id {requested!r} is not registered for {org_id}")
                                                    .format(requested=requested, org_id=self.org_id))
        return requested

    async def case_open(self, req: local_pb2.CaseOpenRequest) -> local_pb2.CaseOpenResponse:
        # A person without a Belgian number is held on the fallback identity alone.
        number = normalise_national_number(req.identity.national_number) if req.identity.national_number else ""
        if not req.identity.family_name.strip():
            raise RequestError("missing_name", _("a family name is required to open a case"))
        if req.phase == summary_pb2.PHASE_UNSPECIFIED:
            raise RequestError("missing_phase", _("a phase is required"))
        contact = self._contact(req.contact_id)
        basis = req.lawful_basis or "default"
        if basis not in self.bases:
            raise RequestError("unknown_basis",
                               _("lawful basis {basis!r} is not configured; one of {value}")
                                 .format(basis=basis, value=sorted(self.bases)))
        today = dt.date.today()
        year, month = (req.opened_year, req.opened_month) if req.opened_year else (today.year, today.month)
        if not (2000 <= year and 1 <= month <= 12 and (year, month) <= (today.year, today.month)):
            raise RequestError("bad_month", _("the month a case was opened is YYYY-MM, not in the future"))
        reported = await self.store.db.fetchone("SELECT MAX(period) FROM monitoring_reports")  # either kind
        if reported is not None and reported[0] is not None and year * 4 + (month - 1) // 3 <= int(reported[0]):
            # It would be open at the end of a reported quarter without ever having been counted as opened.
            raise RequestError("month_reported", _("that month lies in a quarter already reported to the monitor; "
                                                   "give the month the case is entered here"))
        pseudonyms = await self._pseudonyms(req.identity)  # network: before the transaction
        async with self.store.db.transaction() as tx:
            subject_id = await self.casefile.new_subject_txn(tx, number, req.identity, pseudonyms)
            case_id = await self.store.insert_case_txn(
                tx, subject_id, req.phase, list(req.concerns), req.risk_level, list(req.agencies), contact,
                year, month, basis,
            )
            queued = await self.directory.sync_case_txn(tx, case_id, now_ms())
        self.directory.kick(queued)
        log.info("case.opened", case_id=case_id)
        return local_pb2.CaseOpenResponse(case_id=case_id)

    @staticmethod
    def _summary(row: CaseRow, include: set[str]) -> summary_pb2.CaseSummary:
        summary = summary_pb2.CaseSummary(
            subject_pseudonym=row.pseudonym, phase=row.phase, concerns=row.concerns,
            risk_level=row.risk_level, contact_id=row.contact_id,
            month_opened=summary_pb2.YearMonth(year=row.opened_year, month=row.opened_month),
        )
        if "agencies" in include:
            summary.agencies.extend(row.agencies)
        return summary

    def _rule_for(self, kind: str, requested: str, recipient_kind: OrgKind) -> str:
        rules = self.bundle.rules_for(kind, self.org_id, recipient_kind)
        if requested:
            # Only a rule of the bundle is ever put on the wire (never an arbitrary string).
            if requested not in self.bundle.rules:
                raise RequestError("unknown_rule", _("that rule id is not in the bundle; see `olievlek policy flows`"))
            return requested
        if not rules:
            raise RequestError(
                "no_rule", _("no rule of the bundle lets {kind} send {kind2} to {recipient_kind}")
                             .format(kind=self.kind, kind2=kind, recipient_kind=recipient_kind)
            )
        return rules[0].id

    async def alert_move(self, req: local_pb2.AlertMoveRequest) -> local_pb2.AlertMoveResponse:
        """Commit the intent to alert the destination; the outbox worker builds, signs and sends it."""
        unknown = set(req.include_fields) - {"agencies"}
        if unknown:
            raise RequestError("unknown_field", _("cannot include {value}; only 'agencies' is optional")
                                                  .format(value=sorted(unknown)))
        return await self._send_about_case(MessageKind.ALERT_MOVE, req.case_id, req.destination_nis, req.rule_id,
                                           {"include": sorted(set(req.include_fields))}, req.no_wait)

    async def handover(self, req: local_pb2.HandoverRequest) -> local_pb2.AlertMoveResponse:
        """A justice house or prison service hands follow-up over to the municipality of release."""
        if not (1 <= req.expected_month <= 12 and 2000 <= req.expected_year <= 2100):
            raise RequestError("bad_month", _("give the expected release month as YYYY-MM"))
        return await self._send_about_case(MessageKind.HANDOVER, req.case_id, req.destination_nis, "",
                                           {"year": req.expected_year, "month": req.expected_month,
                                            "needs": sorted(set(req.needs))}, req.no_wait)

    async def _send_about_case(self, kind: str, case_id: int, nis: int, rule: str, extra: dict[str, object],
                               no_wait: bool) -> local_pb2.AlertMoveResponse:
        if await self.store.case(case_id) is None:
            raise RequestError("unknown_case", _("there is no case {case_id}").format(case_id=case_id))
        dest = self.bundle.org_serving(nis)
        if dest is None:
            raise RequestError("unknown_nis", _("NIS code {nis} is not served by any organisation").format(nis=nis))
        if dest.id == self.org_id:
            raise RequestError("own_municipality", _("NIS code {nis} is served by this node").format(nis=nis))
        rule_id = self._rule_for(kind, rule, dest.kind)
        intent = {"case_id": case_id, **extra}
        key = wire.new_token()

        async def op(tx: Txn) -> int:
            # Checked again inside the transaction: an erasure that committed first leaves nothing to send.
            if not await self.store.case_is_open_txn(tx, case_id):
                raise RequestError("unknown_case", _("case {case_id} was erased").format(case_id=case_id))
            return await self.store.add_intent_txn(tx, key, kind, dest.id, rule_id, intent, now_ms())

        outbox_id = await self.store.writer.write(op)
        log.info("summary.queued", kind=kind, outbox_id=outbox_id, recipient=dest.id, rule=rule_id)
        self.outbox.kick()
        return await self.outbox_result(outbox_id, no_wait)

    async def outbox_result(self, outbox_id: int, no_wait: bool) -> local_pb2.AlertMoveResponse:
        """An outbox entry's status, after waiting (bounded) for the broker's answer unless ``no_wait``."""
        if not no_wait:
            await self.outbox.wait(outbox_id, ALERT_WAIT_S)
            await self._wait_final(outbox_id)
        return await self._outbox_status(outbox_id)

    async def _wait_final(self, outbox_id: int) -> None:
        """While the witnesses keep up, wait a little for them to cover the answer: the regisseur then reads a
        final outcome, not "awaiting witnesses"."""
        if self.witness is None:
            return
        await self.witness.first_check(1.0)
        if not self.witness.fresh:
            return
        deadline = time.monotonic() + FINAL_WAIT_S
        while time.monotonic() < deadline:
            if await evidence.confirmation(self.store.db, Item.OUTBOX, outbox_id) != Confirmation.PROVISIONAL:
                return
            self.witness.kick()
            await asyncio.sleep(0.2)

    @staticmethod
    def _info(row: CaseRow) -> local_pb2.CaseInfo:
        return local_pb2.CaseInfo(case_id=row.id, phase=row.phase, concerns=row.concerns, risk_level=row.risk_level,
                                  agencies=row.agencies, contact_id=row.contact_id, opened_year=row.opened_year,
                                  opened_month=row.opened_month)

    async def _visible_case(self, caller: Caller, case_id: int) -> CaseRow:
        """The case, if the caller may see it (need-to-know); an unknown and a hidden case read the same."""
        row = await self.store.case(case_id)
        if row is None or not (caller.sees_every_case() or await self.store.is_assigned(case_id, caller.uid)):
            raise RequestError("unknown_case", _("there is no case {case_id} that you are assigned to")
                                                 .format(case_id=case_id))
        return row

    async def case_show(self, caller: Caller, req: local_pb2.CaseShowRequest) -> local_pb2.CaseShowResponse:
        """A case with its subject's identity, opened for a stated purpose and logged."""
        if req.purpose == local_pb2.ACCESS_PURPOSE_UNSPECIFIED:
            raise RequestError("missing_purpose", _("say why you open this case's identity (--purpose)"))
        row = await self._visible_case(caller, req.case_id)
        uid = caller.uid
        identity, fields = await self.casefile.identity(row.subject_id)
        notes = await self.casefile.notes(row.id)
        fields += ["notes"] if notes else []
        await self.store.log_access(uid, row.id, fields, req.purpose, now_ms())
        log.info("case.shown", case_id=row.id, uid=uid, fields=fields,
                 purpose=local_pb2.AccessPurpose.Name(req.purpose))
        status = await self.store.case_status(row.id)
        history = [local_pb2.PhaseChange(at_ms=at, uid=u, from_phase=f, to_phase=t)  # type: ignore[arg-type]
                   for at, u, f, t in await self.store.phase_changes(row.id)]
        return local_pb2.CaseShowResponse(case=self._info(row), identity=identity, notes=notes, history=history,
                                          status=status[0] if status else "")

    async def case_update(self, caller: Caller, req: local_pb2.CaseUpdateRequest) -> local_pb2.CaseInfo:
        """Phase (dated, by whom), concerns, risk, agencies, and a sealed note, in one transaction."""
        row = await self._visible_case(caller, req.case_id)
        status = await self.store.case_status(row.id)
        if status is None or status[0] != CaseStatus.OPEN:
            raise RequestError("not_open", _("case {id} is {value}; it cannot change")
                                             .format(id=row.id, value=status[0] if status else 'unknown'))
        if req.phase == summary_pb2.PHASE_CLOSED:
            raise RequestError("use_close", _("close a case with `olievlek case close`: that starts its retention"))
        add_note = await self.casefile.note_sealer(row.id) if req.note.strip() else None
        now, store = now_ms(), self.store

        async def op(tx: Txn) -> int:
            await store.update_case_txn(tx, row.id, caller.uid, now, req.phase, list(req.concerns) or None,
                                        req.risk_level, list(req.agencies) or None)
            if add_note is not None:
                await add_note(tx, caller.uid, req.note.strip(), now)
            return await self.directory.sync_case_txn(tx, row.id, now)

        self.directory.kick(await store.writer.write(op))
        log.info("case.updated", case_id=row.id, uid=caller.uid, phase=req.phase, note=add_note is not None)
        updated = await store.case(row.id)
        assert updated is not None
        return self._info(updated)

    async def subject_export(self, caller: Caller, req: local_pb2.SubjectExportRequest
                             ) -> local_pb2.SubjectExportResponse:
        """Everything held about a case's subject (GDPR art. 15), as JSON; the read is logged."""
        row = await self._visible_case(caller, req.case_id)
        identity, fields = await self.casefile.identity(row.subject_id)
        await self.store.log_access(caller.uid, row.id, fields, local_pb2.ACCESS_PURPOSE_ACCESS_REQUEST, now_ms())
        sent = [{"kind": k, "recipient": r, "rule": rule, "status": st, "created_ms": at}
                for k, r, rule, st, at in await self.store.sent_about_case(row.id)]
        notes = await self.casefile.notes(row.id)
        status = await self.store.case_status(row.id)
        doc = {
            "holder": self.org_id, "case": json_format.MessageToDict(self._info(row)),
            "status": status[0] if status else "", "lawful_basis": status[1] if status else "",
            "identity": json_format.MessageToDict(identity),
            "notes": [json_format.MessageToDict(n) for n in notes],
            "phase_history": [{"at_ms": at, "uid": u, "from": f, "to": t}
                              for at, u, f, t in await self.store.phase_changes(row.id)],
            "agreements": [{"id": r[0], "recipient_kinds": r[2], "purposes": r[3], "valid_until_ms": r[4],
                            "evidence_ref": r[5], "recorded_ms": r[6], "withdrawn_ms": r[7]}
                           for r in await self.store.agreements(row.id)],
            "received_items": [{"from": f, "kind": k, "received_ms": at}
                               for f, k, at in await self.store.received_for_case(row.id)],
            "sent_summaries": sent,
            "access_log": [{"at_ms": at, "uid": uid, "fields": f, "purpose": local_pb2.AccessPurpose.Name(p)}  # type: ignore[arg-type]
                           for at, uid, _c, f, p in await self.store.access_log(row.id)],
        }
        log.info("subject.exported", case_id=row.id, uid=caller.uid)
        return local_pb2.SubjectExportResponse(document=json.dumps(doc, indent=2, sort_keys=True).encode())

    async def agreement(self, caller: Caller, req: local_pb2.AgreementRequest) -> local_pb2.AgreementResponse:
        """Record, withdraw or list a person's agreements on a case (kinds and purposes of the bundle)."""
        a = req.agreement
        case_id = await self.store.agreement_case(a.agreement_id) if req.withdraw else a.case_id
        if case_id is None:
            raise RequestError("unknown_agreement", _("there is no agreement {agreement_id} in force")
                                                      .format(agreement_id=a.agreement_id))
        await self._visible_case(caller, case_id)
        if req.withdraw:
            queued = await self.store.writer.write(lambda tx: self._withdraw_agreement_txn(tx, a.agreement_id, case_id))
            if queued is None:
                raise RequestError("unknown_agreement", _("there is no agreement {agreement_id} in force")
                                                          .format(agreement_id=a.agreement_id))
            self.directory.kick(queued)
            log.info("agreement.withdrawn", agreement=a.agreement_id, uid=caller.uid, notices=queued)
        elif not req.list:
            unknown = sorted(set(a.recipient_kinds) - {k.value for k in OrgKind} | set(a.purposes) - set(PURPOSES))
            if unknown or not a.recipient_kinds or not a.purposes:
                raise RequestError("bad_scope", _("give recipient kinds and purposes of the bundle; unknown: {unknown}")
                                                  .format(unknown=unknown))
            if a.valid_until_ms <= now_ms():
                raise RequestError("expired", _("the agreement's validity must end in the future"))
            if not ID_PATTERN.fullmatch(a.evidence_ref) or sum(c.isdigit() for c in a.evidence_ref) >= 9:
                raise RequestError("bad_evidence_ref", _("the evidence reference must be a record id such as "
                                                         "gent-2026-0042, never free text"))
            agreement_id = await self.store.record_agreement(
                a.case_id, sorted(set(a.recipient_kinds)), sorted(set(a.purposes)), a.valid_until_ms,
                a.evidence_ref, caller.uid, now_ms(), self._refresh_entries)
            self.outbox.kick()
            log.info("agreement.recorded", agreement=agreement_id, case_id=a.case_id, uid=caller.uid)
        return local_pb2.AgreementResponse(agreements=[
            local_pb2.Agreement(agreement_id=r[0], case_id=r[1], recipient_kinds=r[2].split(","),
                                purposes=r[3].split(","), valid_until_ms=r[4], evidence_ref=r[5], recorded_ms=r[6],
                                withdrawn_ms=r[7] or 0)
            for r in await self.store.agreements(case_id)])

    async def _refresh_entries(self, tx: Txn, case_id: int) -> None:
        await self.directory.sync_case_txn(tx, case_id, now_ms(), refresh=True)

    async def _withdraw_agreement_txn(self, tx: Txn, agreement_id: int, case_id: int) -> int | None:
        """Withdraw, re-register with the narrower coverage at once, and have what was disclosed on the
        agreement erased; all in one transaction. None when there was no such agreement in force."""
        now = now_ms()
        kinds = await self.store.withdraw_agreement_txn(tx, agreement_id, now)
        if kinds is None:
            return None
        queued = await self.directory.sync_case_txn(tx, case_id, now, refresh=True)
        told = await self.disclosures.erase_disclosed_txn(
            tx, case_id, await self.store.case_pseudonyms_txn(tx, case_id), kinds, now,
            summary_pb2.ERASURE_REASON_AGREEMENT_WITHDRAWN)
        return queued + len(told) + 1  # the denials of pending requests, if any, are in the outbox too

    async def case_list(self, caller: Caller) -> local_pb2.CaseListResponse:
        """Cases without identifying fields (nothing to log): all for a regisseur, else the assigned ones."""
        rows = await self.store.cases(None if caller.sees_every_case() else caller.uid)
        return local_pb2.CaseListResponse(cases=[self._info(r) for r in rows])

    async def case_assign(self, req: local_pb2.CaseAssignRequest) -> local_pb2.CaseAssignResponse:
        if await self.store.case(req.case_id) is None:
            raise RequestError("unknown_case", _("there is no case {case_id}").format(case_id=req.case_id))
        roles = {r for r, _ in await self.store.roles_of(req.uid)}
        if not req.remove and local_pb2.USER_ROLE_TABLE_MEMBER not in roles:
            raise RequestError("not_a_table_member", _("uid {uid} is not a table member of this node")
                                                       .format(uid=req.uid))
        uids = await self.store.assign(req.case_id, req.uid, not req.remove)
        log.info("case.assigned", case_id=req.case_id, uid=req.uid, removed=req.remove)
        return local_pb2.CaseAssignResponse(case_id=req.case_id, uids=uids)

    async def user_remove(self, caller: Caller, user: local_pb2.User) -> local_pb2.UserListResponse:
        """Take a role away: at once, it only narrows who reads what (giving one is ``user_request``)."""
        self._check_user(caller, user, False)
        await self.store.set_user(user.uid, user.role, user.agency, False, now_ms())
        log.info("user.removed", uid=user.uid, role=local_pb2.UserRole.Name(user.role))
        return await self.user_list()

    @staticmethod
    def _check_user(caller: Caller, user: local_pb2.User, present: bool) -> None:
        if user.uid == caller.uid:
            # Otherwise an administrator (who may never read case contents) could make themselves regisseur.
            raise GrantRefused(GrantRefusal.OWN_ROLES, _("nobody changes their own roles; ask another administrator"))
        if user.role == local_pb2.USER_ROLE_UNSPECIFIED:
            raise RequestError("missing_role", _("a role is required: regisseur, table-member or administrator"))
        if present and user.role == local_pb2.USER_ROLE_TABLE_MEMBER and not user.agency:
            raise RequestError("missing_agency", _("a table member sits at the table for an agency (--agency)"))

    async def user_request(self, caller: Caller, user: local_pb2.User, configured: frozenset[int],
                           single_administrator: bool, ttl_ms: int) -> local_pb2.UserGrantResponse:
        """Ask for a role for a user: it waits for a second administrator's confirmation; in single-administrator
        mode, while the caller is the only administrator who could confirm, it is granted at once and
        countersigned in the grant log.

        ``configured`` are the configuration's administrators (not registered in the store).

        Raises:
            GrantRefused: the caller's own roles, or nobody else could ever confirm it.
        """
        self._check_user(caller, user, True)
        now = now_ms()
        await self.store.expire_role_requests(now)
        # Who may confirm: the administrators of this moment, except the requester and the user concerned.
        confirmers = (configured | await self.store.administrators()) - {caller.uid, user.uid}
        if not confirmers and not single_administrator:
            raise GrantRefused(GrantRefusal.NO_SECOND_ADMINISTRATOR, _(
                "no role is granted by one administrator alone, and this node has no other administrator to "
                "confirm it; configure a second one (or, for a node with one administrator, "
                "single_administrator: true)"))
        seal = self._seal(user, caller.uid, None, GrantMode.SINGLE_ADMINISTRATOR, now) if not confirmers else None
        request_id = await self.store.request_role(user.uid, user.role, user.agency, caller.uid, confirmers, now,
                                                   now + ttl_ms, seal)
        if seal is not None:
            # The node's log too: the data-protection officer's monitoring sees a grant nobody else confirmed.
            log.warning("user.granted_alone", request=request_id, uid=user.uid, by=caller.uid,
                        role=local_pb2.UserRole.Name(user.role))
        else:
            log.info("user.role_requested", request=request_id, uid=user.uid, by=caller.uid,
                     role=local_pb2.UserRole.Name(user.role))
        return await self._grant_response(request_id)

    async def user_confirm(self, caller: Caller, req: local_pb2.UserConfirmRequest) -> local_pb2.UserGrantResponse:
        """A second administrator confirms a pending role request, which grants it.

        Raises:
            GrantRefused: no such request, already decided or expired, the caller's own request or own role, or
                the caller became an administrator after the request was made.
        """
        now = now_ms()
        await self.store.expire_role_requests(now)
        row = await self.store.role_request(req.request_id)
        if row is None:
            raise GrantRefused(GrantRefusal.UNKNOWN_ROLE_REQUEST, _("there is no role request {request}")
                               .format(request=req.request_id))
        if row.state == RoleRequestState.EXPIRED:
            raise GrantRefused(GrantRefusal.REQUEST_EXPIRED, _("role request {request} expired unconfirmed; ask for "
                                                               "the role again").format(request=row.id))
        if row.state != RoleRequestState.PENDING:
            raise GrantRefused(GrantRefusal.REQUEST_DECIDED, _("role request {request} was already granted")
                               .format(request=row.id))
        if caller.uid == row.requested_by:
            raise GrantRefused(GrantRefusal.OWN_REQUEST, _(
                "uid {uid} made role request {request}; another administrator must confirm it")
                .format(uid=caller.uid, request=row.id))
        if caller.uid == row.uid:
            raise GrantRefused(GrantRefusal.OWN_ROLES, _("nobody changes their own roles; ask another administrator"))
        if caller.uid not in row.confirmers:
            # Else an administrator could make a second account administrator and confirm with it.
            raise GrantRefused(GrantRefusal.ADMINISTRATOR_AFTER_REQUEST, _(
                "uid {uid} was not an administrator when role request {request} was made; only an administrator "
                "who was one then may confirm it").format(uid=caller.uid, request=row.id))
        user = local_pb2.User(uid=row.uid, role=row.role, agency=row.agency)  # type: ignore[arg-type]
        seal = self._seal(user, row.requested_by, caller.uid, GrantMode.CONFIRMED, now)
        await self.store.confirm_role(row.id, caller.uid, seal, now)
        log.info("user.role_granted", request=row.id, uid=row.uid, requested_by=row.requested_by,
                 confirmed_by=caller.uid, role=local_pb2.UserRole.Name(row.role))  # type: ignore[arg-type]
        return await self._grant_response(row.id)

    def _seal(self, user: local_pb2.User, requested_by: int, confirmed_by: int | None, mode: GrantMode,
              at_ms: int) -> GrantSeal:
        """The node's countersignature of a grant, with its envelope-signing key (under its own context)."""
        statement = grant_statement(self.org_id, user, requested_by, confirmed_by, mode, at_ms)
        return GrantSeal(statement, self.signer.key.sign(GRANT_CONTEXT + statement))

    @staticmethod
    def _role_request(row: RoleRequestRow) -> local_pb2.RoleRequest:
        mode = (local_pb2.GRANT_MODE_UNSPECIFIED if row.state != RoleRequestState.GRANTED
                else local_pb2.GRANT_MODE_CONFIRMED if row.confirmed_by is not None
                else local_pb2.GRANT_MODE_SINGLE_ADMINISTRATOR)
        return local_pb2.RoleRequest(
            request_id=row.id, user=local_pb2.User(uid=row.uid, role=row.role, agency=row.agency),  # type: ignore[arg-type]
            requested_by=row.requested_by, requested_at_ms=row.requested_ms, state=_REQUEST_STATE[row.state],
            confirmed_by=row.confirmed_by or 0, decided_at_ms=row.decided_ms or 0, expires_at_ms=row.expires_ms,
            mode=mode)

    async def _grant_response(self, request_id: int) -> local_pb2.UserGrantResponse:
        row = await self.store.role_request(request_id)
        assert row is not None
        return local_pb2.UserGrantResponse(request=self._role_request(row), users=(await self.user_list()).users)

    async def user_pending(self) -> local_pb2.RoleRequestList:
        await self.store.expire_role_requests(now_ms())
        return local_pb2.RoleRequestList(requests=[
            self._role_request(r) for r in await self.store.role_requests(RoleRequestState.PENDING)])

    async def user_grants(self) -> local_pb2.UserGrantsResponse:
        """The grant log with its countersignatures, and the certificate they verify under."""
        return local_pb2.UserGrantsResponse(signer_certificate=self.signer.cert_der, grants=[
            local_pb2.RoleGrant(grant_id=g.id, request_id=g.request_id, at_ms=g.at_ms,
                                user=local_pb2.User(uid=g.uid, role=g.role, agency=g.agency),  # type: ignore[arg-type]
                                requested_by=g.requested_by, confirmed_by=g.confirmed_by or 0, mode=_GRANT_MODE[g.mode],
                                statement=g.seal.statement, signature=g.seal.signature)
            for g in await self.store.role_grants()])

    async def user_list(self) -> local_pb2.UserListResponse:
        return local_pb2.UserListResponse(users=[
            local_pb2.User(uid=u, role=r, agency=a)  # type: ignore[arg-type]
            for u, r, a in await self.store.users()])

    async def access_log(self, req: local_pb2.AccessLogRequest) -> local_pb2.AccessLogResponse:
        return local_pb2.AccessLogResponse(entries=[
            local_pb2.AccessLogEntry(at_ms=at, uid=uid, case_id=case, fields=fields, purpose=purpose)  # type: ignore[arg-type]
            for at, uid, case, fields, purpose in await self.store.access_log(req.case_id)])

    async def build_alert_move(self, row: OutboxRow) -> envelope_pb2.EnvelopeBody:
        """The envelope of an alert.move intent, from the case as it is now."""
        case = await self.store.case(int(row.intent["case_id"]))
        if case is None:
            raise RequestError("unknown_case", _("case {value} no longer exists")
                                                 .format(value=row.intent['case_id']))
        return envelope_pb2.EnvelopeBody(
            kind=envelope_pb2.MESSAGE_KIND_ALERT_MOVE, sender=self.org_id, recipients=[row.recipient],
            purpose=envelope_pb2.PURPOSE_CONTINUITY_OF_FOLLOW_UP, rule_id=row.rule_id,
            move_alert=summary_pb2.MoveAlert(summary=self._summary(case, set(row.intent["include"]))),
        )

    async def build_handover(self, row: OutboxRow) -> envelope_pb2.EnvelopeBody:
        case = await self.store.case(int(row.intent["case_id"]))
        if case is None:
            raise RequestError("unknown_case", _("case {value} no longer exists")
                                                 .format(value=row.intent['case_id']))
        summary = self._summary(case, {"agencies"})
        summary.ClearField("month_opened")  # the release month says what matters; the rule takes no more
        return envelope_pb2.EnvelopeBody(
            kind=envelope_pb2.MESSAGE_KIND_HANDOVER, sender=self.org_id, recipients=[row.recipient],
            purpose=envelope_pb2.PURPOSE_REINTEGRATION_AFTER_RELEASE, rule_id=row.rule_id,
            handover=summary_pb2.Handover(
                summary=summary,
                expected_month=summary_pb2.YearMonth(year=row.intent["year"], month=row.intent["month"]),
                needs=row.intent["needs"]),
        )

    async def _outbox_status(self, outbox_id: int) -> local_pb2.AlertMoveResponse:
        row = await self.store.outbox(outbox_id)
        assert row is not None
        out = local_pb2.AlertMoveResponse(
            outbox_id=outbox_id, recipient=row.recipient, rule_id=row.rule_id, status=_STATUS[row.status],
            confirmation=CONFIRMATION[await evidence.confirmation(self.store.db, Item.OUTBOX, outbox_id)])
        if row.status == OutboxStatus.REFUSED and row.response is not None:
            refusal = broker_pb2.SendResponse.FromString(row.response).refusal
            out.refusal_code = broker_pb2.RefusalCode.Name(refusal.code).removeprefix("REFUSAL_CODE_").lower()
            out.refusal_detail = refusal.detail
            out.refusal_field = refusal.field
            out.rule_id = refusal.rule_id or row.rule_id
        elif row.status in (OutboxStatus.FAILED, OutboxStatus.EXPIRED, OutboxStatus.REJECTED):
            out.refusal_detail = row.detail
        return out

    async def outbox_list(self) -> local_pb2.OutboxListResponse:
        confirmed = await evidence.confirmations(self.store.db, Item.OUTBOX)
        return local_pb2.OutboxListResponse(items=[
            local_pb2.OutboxItem(outbox_id=r.id, kind=r.kind, recipient=r.recipient, rule_id=r.rule_id,
                                 status=_STATUS[r.status], created_at_ms=r.created_ms, attempts=r.attempts,
                                 detail=r.detail, outcome=r.outcome, confirmation=CONFIRMATION[confirmed.get(r.id)])
            for r in await self.store.all_outbox()])

    async def inbox_list(self) -> local_pb2.InboxListResponse:
        await self.disclosures.expire_due()
        items = []
        confirmed = await evidence.confirmations(self.store.db, Item.INBOX)
        for row in await self.store.inbox():
            body = body_of(row.envelope)
            item = local_pb2.InboxItem(
                item_id=row.id, sender=row.sender, kind=row.kind, received_at_ms=row.received_ms,
                status=row.status, matched_subject_id=row.subject_id or 0,
                confirmation=CONFIRMATION[confirmed.get(row.id, Confirmation.FINAL)],
            )
            which = body.WhichOneof("payload")
            if which == "move_alert":
                item.summary.CopyFrom(body.move_alert.summary)
            elif which == "disclosure_request":
                asked = body.disclosure_request
                item.fields.extend(asked.requested)
                item.file_ref, item.legal_basis = asked.file_ref, asked.legal_basis
                item.expires_at_ms = row.received_ms + self.disclosures.expiry_ms
            elif which == "disclosure_response":
                answer = body.disclosure_response
                item.decision, item.reason = answer.decision, answer.reason
                item.fields.extend(answer.approved)
                item.summary.CopyFrom(summary_pb2.CaseSummary(
                    subject_pseudonym=answer.subject_pseudonym, phase=answer.phase, concerns=answer.concerns,
                    risk_level=answer.risk_level, contact_id=answer.contact_id, month_opened=answer.month_opened))
            items.append(item)
        return local_pb2.InboxListResponse(items=items)

    async def identify(self, req: local_pb2.IdentifyRequest) -> local_pb2.IdentifyResponse:
        pseudonyms = await self._pseudonyms(req.identity)  # network: before the transaction
        number = normalise_national_number(req.identity.national_number) if req.identity.national_number else ""
        async with self.store.db.transaction() as tx:
            hits = []
            for kind, p in pseudonyms:
                row = await tx.fetchone(
                    "SELECT 1 FROM inbox WHERE pseudonym = ? AND status = 'pending_identification'", (p,)
                )
                if row is not None:
                    hits.append(kind)
            if not hits:
                # Minimisation: an identity that matches nothing is not kept.
                return local_pb2.IdentifyResponse()
            subject_id = await self.casefile.new_subject_txn(tx, number, req.identity, pseudonyms)
            matched: list[int] = []
            for _kind, p in pseudonyms:
                matched += await self.store.match_inbox_txn(tx, p, subject_id)
        probable = "nrn" not in hits
        log.info("inbox.identified", items=matched, probable=probable)
        return local_pb2.IdentifyResponse(matched_item_ids=matched, subject_id=subject_id, probable=probable)
