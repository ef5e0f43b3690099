"""The holder's side of disclosure on request: a regisseur approves (possibly fewer fields) or denies.

A ``disclosure.request`` reaches the holder's inbox only when the broker's
directory confirmed this node holds the pseudonym with coverage for the
requester. The regisseur sees it in ``olievlek inbox`` and decides with
``olievlek disclosure approve|deny``: one transaction records the decision and
queues the ``disclosure.response`` intent, which is built from the case as it
is when sealed and carries exactly the approved fields (never one the rule does
not let through: that is refused here, naming the rule). A request nobody
decides within the expiry time is denied with reason ``expired`` by the node
itself, and can no longer be approved.

When the person withdraws an agreement, every approved disclosure to a kind
that agreement covered gets an ``erasure.notice`` (reason: agreement withdrawn).
"""

from __future__ import annotations

import functools

from olievlek import logs, wire
from olievlek.clock import now_ms
from olievlek.envelope import body_of
from olievlek.i18n import _
from olievlek.identity import OrgKind
from olievlek.kinds import MessageKind
from olievlek.policy import Bundle
from olievlek.statuses import InboxStatus, OutboxStatus
from olievlek.storage.sqlite import Txn
from olievlek.v1 import envelope_pb2, local_pb2, summary_pb2

from .directory import DirectoryHolder
from .outbox import OutboxSender
from .request_error import RequestError
from .store import NodeStore, OutboxRow

log = logs.get("node.disclosure")

_FIELD: dict[int, str] = {  # DisclosableField -> the response's field
    summary_pb2.DISCLOSABLE_FIELD_PHASE: "phase", summary_pb2.DISCLOSABLE_FIELD_CONCERNS: "concerns",
    summary_pb2.DISCLOSABLE_FIELD_RISK_LEVEL: "risk_level", summary_pb2.DISCLOSABLE_FIELD_AGENCIES: "agencies",
    summary_pb2.DISCLOSABLE_FIELD_MONTH_OPENED: "month_opened",
}


def request_of(envelope_bytes: bytes) -> summary_pb2.DisclosureRequest:
    return body_of(envelope_bytes).disclosure_request


class Disclosures:
    """Decisions on disclosure requests, their expiry, and erasure after an agreement is withdrawn."""

    def __init__(self, org_id: str, store: NodeStore, bundle: Bundle, outbox: OutboxSender,
                 expiry_ms: int, directory: DirectoryHolder) -> None:
        self._directory = directory
        self._org_id = org_id
        self._store = store
        self._bundle = bundle
        self._outbox = outbox
        self.expiry_ms = expiry_ms
        outbox.register(MessageKind.DISCLOSURE_RESPONSE, self.build_response)

    def _rule(self, recipient: str) -> str:
        org = self._bundle.org(recipient)
        rules = self._bundle.rules_for(MessageKind.DISCLOSURE_RESPONSE, self._org_id,
                                       org.kind if org else OrgKind.FEDERAL_LIAISON)
        if not rules:
            raise RequestError("no_rule", _("no rule of the bundle lets this node answer {recipient}")
                                            .format(recipient=recipient))
        return rules[0].id

    async def decide(self, req: local_pb2.DisclosureDecideRequest) -> int:
        """Approve or deny a pending request; returns the response's outbox id."""
        await self.expire_due()
        item = await self._store.inbox_item(req.item_id)
        if item is None or item.kind != MessageKind.DISCLOSURE_REQUEST:
            raise RequestError("unknown_item", _("there is no disclosure request {item_id} in the inbox")
                                                 .format(item_id=req.item_id))
        if item.status != InboxStatus.PENDING_DECISION:
            raise RequestError("not_pending", _("disclosure request {item_id} is {status}; it can no longer be decided")
                                                .format(item_id=req.item_id, status=item.status))
        asked = request_of(item.envelope)
        pseudonym = bytes(asked.subject_pseudonym)
        rule_id = self._rule(item.sender)
        case_id = await self._held_case(pseudonym)
        if req.approve:
            fields = sorted(set(req.fields) or set(asked.requested))
            extra = set(fields) - set(asked.requested)
            if extra:
                raise RequestError("not_requested", "approve at most the fields asked for; not asked: "
                                   + ", ".join(_FIELD[f] for f in sorted(extra)))
            allowed = self._bundle.rules[rule_id].leaves[MessageKind.DISCLOSURE_RESPONSE]
            for f in fields:
                if _FIELD[f] not in allowed:
                    raise RequestError("field_not_allowed", _("rule {rule_id!r} never lets {field} go to {sender}")
                                       .format(rule_id=rule_id, field=_FIELD[f], sender=item.sender))
            await self._check_covered(item.sender, pseudonym, item.envelope)
            intent: dict[str, object] = {"decision": "approved", "fields": fields}
        else:
            if req.reason == summary_pb2.DENIAL_REASON_UNSPECIFIED:
                raise RequestError("missing_reason", _("a denial needs a --reason code"))
            intent = {"decision": "denied", "reason": int(req.reason)}
        status = InboxStatus.APPROVED if req.approve else InboxStatus.DENIED
        outbox_id = await self._store.writer.write(
            lambda tx: self._decide_txn(tx, item.id, status, case_id, pseudonym, item.sender, rule_id, intent))
        if outbox_id is None:
            raise RequestError("not_pending", _("disclosure request {item_id} was decided meanwhile")
                                                .format(item_id=req.item_id))
        log.info("disclosure.decided", item=item.id, decision=status, outbox_id=outbox_id)
        self._outbox.kick()
        return int(outbox_id)

    async def _check_covered(self, requester: str, pseudonym: bytes, raw: bytes) -> None:
        """Approval only while the entry still covers the requester (an agreement may have gone meanwhile).

        Raises:
            RequestError: not held any more, or not covered for the requester's kind under the request's rule.
        """
        org = self._bundle.org(requester)
        rule = self._bundle.rules.get(body_of(raw).rule_id)
        try:
            _contact, statements = await self._directory.statements(pseudonym, now_ms())
        except RequestError:
            statements = []
        if org is None or rule is None or not self._directory.covers(statements, org.kind.value, rule, now_ms()):
            raise RequestError("not_covered", _("this node's directory entry no longer covers the requester (closed, "
                                                "or the agreement was withdrawn); deny with --reason no-lawful-basis"))

    async def _held_case(self, pseudonym: bytes) -> int | None:
        row = await self._store.db.fetchone("SELECT case_id FROM directory_entries WHERE pseudonym = ?", (pseudonym,))
        return int(row[0]) if row else None

    async def _decide_txn(self, tx: Txn, item_id: int, status: InboxStatus, case_id: int | None, pseudonym: bytes,
                          requester: str, rule_id: str, intent: dict[str, object]) -> int | None:
        now = now_ms()
        await tx.execute("UPDATE inbox SET status = ?, decided_ms = ?, case_id = ? WHERE id = ?"
                         " AND status = 'pending_decision'", (status, now, case_id, item_id))
        changed = await tx.fetchone("SELECT changes()")
        if not changed or int(changed[0]) == 0:
            return None
        full = {**intent, "case_id": case_id, "item_id": item_id, "pseudonym": pseudonym.hex()}
        return await self._store.add_intent_txn(tx, wire.new_token(), MessageKind.DISCLOSURE_RESPONSE, requester,
                                                rule_id, full, now)

    async def expire_due(self) -> int:
        """Deny, with reason expired, every request older than the expiry time; returns how many."""
        cutoff = now_ms() - self.expiry_ms
        rows = await self._store.db.fetchall(
            "SELECT id, sender, envelope FROM inbox WHERE kind = 'disclosure.request' AND status = 'pending_decision'"
            " AND received_ms <= ?", (cutoff,))
        done = 0
        intent: dict[str, object] = {"decision": "denied", "reason": int(summary_pb2.DENIAL_REASON_EXPIRED)}
        for item_id, sender, raw in rows:
            try:  # one bad row (a requester the bundle no longer knows) must not stop the sweep
                pseudonym, rule_id = bytes(request_of(bytes(raw)).subject_pseudonym), self._rule(sender)
            except RequestError as exc:
                log.warning("disclosure.expiry_skipped", item=int(item_id), reason=exc.message)
                continue
            got = await self._store.writer.write(functools.partial(
                self._decide_txn, item_id=int(item_id), status=InboxStatus.EXPIRED, case_id=None, pseudonym=pseudonym,
                requester=str(sender), rule_id=rule_id, intent=intent))
            done += got is not None
        if done:
            log.info("disclosure.expired", count=done)
            self._outbox.kick()
        return done

    async def erase_disclosed_txn(self, tx: Txn, case_id: int, pseudonyms: list[bytes], kinds: set[str] | None,
                                  now: int, reason: int) -> list[str]:
        """Take back what was disclosed about a case to organisations of ``kinds`` (all: None): approved
        answers not built yet are cancelled, those sent get an erasure notice about the pseudonym they
        carried, and pending requests about the case's pseudonyms are denied. Returns who is told."""
        rows = await tx.fetchall(
            "SELECT id, recipient, json_extract(intent, '$.pseudonym'), status FROM outbox WHERE kind = ?"
            " AND json_extract(intent, '$.case_id') = ? AND json_extract(intent, '$.decision') = 'approved'"
            " AND status IN ('queued', 'pending', 'accepted')", (MessageKind.DISCLOSURE_RESPONSE, case_id))
        told: set[tuple[str, str]] = set()
        for outbox_id, recipient, pseudonym, status in rows:
            org = self._bundle.org(recipient)
            if org is None or (kinds is not None and org.kind.value not in kinds):
                continue
            if status == OutboxStatus.QUEUED:  # never built: nothing left the node
                await tx.execute("UPDATE outbox SET status = 'cancelled' WHERE id = ? AND status = 'queued'",
                                 (outbox_id,))
                continue
            if (recipient, pseudonym) in told:
                continue
            told.add((recipient, pseudonym))
            rules = self._bundle.rules_for(MessageKind.ERASURE_NOTICE, self._org_id, org.kind)
            await self._store.add_intent_txn(tx, wire.new_token(), MessageKind.ERASURE_NOTICE, recipient,
                                             rules[0].id if rules else "", {"pseudonym": pseudonym, "reason": reason},
                                             now)
        await self._deny_pending_txn(tx, pseudonyms, kinds, now)
        return sorted({r for r, _ in told})

    async def _deny_pending_txn(self, tx: Txn, pseudonyms: list[bytes], kinds: set[str] | None, now: int) -> None:
        """Deny the undecided requests about these pseudonyms from organisations of ``kinds`` (all: None)."""
        marks = ",".join("?" * len(pseudonyms))
        rows = await tx.fetchall(
            f"SELECT id, sender, pseudonym FROM inbox WHERE kind = 'disclosure.request' AND status = 'pending_decision'"  # noqa: S608
            f" AND pseudonym IN ({marks})", tuple(pseudonyms)) if pseudonyms else []
        intent: dict[str, object] = {"decision": "denied", "reason": int(summary_pb2.DENIAL_REASON_NO_LAWFUL_BASIS)}
        for item_id, sender, pseudonym in rows:
            org = self._bundle.org(sender)
            if org is None or (kinds is not None and org.kind.value not in kinds):
                continue
            await self._decide_txn(tx, int(item_id), InboxStatus.DENIED, None, bytes(pseudonym), sender,
                                   self._rule(sender), intent)

    @staticmethod
    async def forget_txn(tx: Txn, case_id: int, pseudonyms: list[bytes], now: int) -> None:
        """After a case's erasure: no pseudonym of it stays in disclosure records here (tombstones stay)."""
        await tx.execute("UPDATE outbox SET envelope = NULL, intent = json_remove(intent, '$.pseudonym') WHERE"
                         " kind = ? AND json_extract(intent, '$.case_id') = ? AND status NOT IN ('queued', 'pending')",
                         (MessageKind.DISCLOSURE_RESPONSE, case_id))
        for p in pseudonyms:
            await NodeStore.tombstone_inbox_txn(tx, "request", (p,), now)

    async def build_response(self, row: OutboxRow) -> envelope_pb2.EnvelopeBody:
        i = row.intent
        response = summary_pb2.DisclosureResponse(subject_pseudonym=bytes.fromhex(i["pseudonym"]))
        if i["decision"] == "approved":
            case = await self._store.case(int(i["case_id"]))
            if case is None:
                raise RequestError("unknown_case", _("case {value} no longer exists").format(value=i['case_id']))
            response.decision = summary_pb2.DISCLOSURE_DECISION_APPROVED
            response.approved.extend(i["fields"])
            response.contact_id = case.contact_id
            values = {"phase": case.phase, "risk_level": case.risk_level}
            for f in i["fields"]:
                name = _FIELD[f]
                if name in values:
                    setattr(response, name, values[name])
                elif name == "month_opened":
                    response.month_opened.year, response.month_opened.month = case.opened_year, case.opened_month
                else:
                    getattr(response, name).extend(case.concerns if name == "concerns" else case.agencies)
        else:
            response.decision = summary_pb2.DISCLOSURE_DECISION_DENIED
            response.reason = i["reason"]
        return envelope_pb2.EnvelopeBody(
            kind=envelope_pb2.MESSAGE_KIND_DISCLOSURE_RESPONSE, sender=self._org_id, recipients=[row.recipient],
            purpose=envelope_pb2.PURPOSE_DISCLOSURE_ON_REQUEST, rule_id=row.rule_id, disclosure_response=response)
