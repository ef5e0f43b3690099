"""The recipient's decision on a move alert or handover: accept it (a case opens) or return it.

An item waits *pending identification* until the regisseur has entered the
person's identifier and it matched. ``accept`` opens a case in phase
pre-analysis for the matched subject, from the sender's summary; ``return``
erases the item (its tombstone stays) as "not our municipality", optionally
suggesting where the person lives. Either way one transaction records the
decision and the intent to tell the sender (``item.status``: the sender's own
idempotency key and the outcome, never a pseudonym), so the sender's regisseur
sees *accepted* or *returned*.
"""

from __future__ import annotations

import datetime as dt

from olievlek import logs, wire
from olievlek.clock import now_ms
from olievlek.envelope import body_of
from olievlek.i18n import _
from olievlek.identity import OrgKind
from olievlek.kinds import MessageKind
from olievlek.policy import Bundle
from olievlek.statuses import InboxStatus
from olievlek.storage.sqlite import Txn
from olievlek.v1 import envelope_pb2, local_pb2, summary_pb2

from .casefile import CaseFile
from .directory import DirectoryHolder
from .outbox import OutboxSender
from .request_error import RequestError
from .store import NodeStore, OutboxRow

log = logs.get("node.intake")

DECIDABLE = (MessageKind.ALERT_MOVE, MessageKind.HANDOVER)


def _summary(envelope: bytes) -> summary_pb2.CaseSummary:
    body = body_of(envelope)
    payload = body.move_alert if body.WhichOneof("payload") == "move_alert" else body.handover
    return payload.summary


class Intake:
    """Accept or return what arrived."""

    def __init__(self, org_id: str, store: NodeStore, bundle: Bundle, outbox: OutboxSender,
                 casefile: CaseFile, directory: DirectoryHolder) -> None:
        self._org_id = org_id
        self._directory = directory
        self._casefile = casefile
        self._store = store
        self._bundle = bundle
        self._outbox = outbox
        outbox.register(MessageKind.ITEM_STATUS, self.build_status)

    async def decide(self, req: local_pb2.InboxDecisionRequest) -> local_pb2.InboxDecisionResponse:
        item = await self._store.inbox_item(req.item_id)
        undecided = (InboxStatus.PENDING_IDENTIFICATION, InboxStatus.IDENTIFIED)
        if item is None or item.kind not in DECIDABLE or item.status not in undecided:
            raise RequestError("unknown_item", _("there is no undecided move alert or handover {item_id}")
                                                 .format(item_id=req.item_id))
        if not req.return_it and item.status != InboxStatus.IDENTIFIED:
            raise RequestError("not_identified", _("item {item_id} is not matched to a person yet; enter the "
                                                   "identifier first (`olievlek inbox identify`)")
                                                   .format(item_id=req.item_id))
        if req.suggested_nis and self._bundle.org_serving(req.suggested_nis) is None:
            raise RequestError("unknown_nis", _("NIS code {suggested_nis} is not served by any organisation")
                                                .format(suggested_nis=req.suggested_nis))
        sender = self._bundle.org(item.sender)
        rules = self._bundle.rules_for(MessageKind.ITEM_STATUS, self._org_id,
                                       sender.kind if sender else OrgKind.MUNICIPALITY)
        if not rules:
            raise RequestError("no_rule", _("no rule of the bundle lets this node tell {sender} its decision")
                                            .format(sender=item.sender))
        outcome = summary_pb2.ITEM_OUTCOME_RETURNED if req.return_it else summary_pb2.ITEM_OUTCOME_ACCEPTED
        summary, now, store = _summary(item.envelope), now_ms(), self._store
        copy: tuple[local_pb2.Identity, list[tuple[str, bytes]]] | None = None
        if not req.return_it:  # the case gets its own subject (own data key), so erasing it touches nothing else
            assert item.subject_id is not None
            identity, _fields = await self._casefile.identity(item.subject_id)
            copy = identity, await store.subject_pseudonyms(item.subject_id)
        org = self._bundle.org(self._org_id)
        contact = org.contacts[0].id if org and org.contacts else ""
        status = InboxStatus.RETURNED if req.return_it else InboxStatus.ACCEPTED

        async def op(tx: Txn) -> int:
            # Checked again inside the transaction: a concurrent decision on the same item loses here.
            key = await store.decide_item_txn(tx, item.id, status, None, now)
            if key is None:
                raise RequestError("already_decided", _("item {id} was decided meanwhile").format(id=item.id))
            case_id = 0
            if copy is not None:
                today = dt.date.today()
                subject_id = await self._casefile.new_subject_txn(tx, copy[0].national_number, copy[0], copy[1])
                case_id = await store.insert_case_txn(
                    tx, subject_id, summary_pb2.PHASE_PRE_ANALYSIS, list(summary.concerns), summary.risk_level,
                    list(summary.agencies), contact, today.year, today.month, "default")
                await tx.execute("UPDATE inbox SET case_id = ? WHERE id = ?", (case_id, item.id))
                await self._directory.sync_case_txn(tx, case_id, now)  # registers only in a registering phase
            await store.add_intent_txn(tx, wire.new_token(), MessageKind.ITEM_STATUS, item.sender, rules[0].id,
                                       {"item_key": key, "outcome": outcome, "nis": req.suggested_nis,
                                        "item_kind": item.kind}, now)
            return case_id

        case_id = await store.writer.write(op)
        if req.return_it:
            await store.db.checkpoint_truncate()  # nothing of a returned item stays, in the WAL either
        self._outbox.kick()
        log.info("inbox.decided", item=item.id, status=status, case_id=case_id, sender=item.sender)
        return local_pb2.InboxDecisionResponse(item_id=item.id, case_id=case_id, status=status)

    async def build_status(self, row: OutboxRow) -> envelope_pb2.EnvelopeBody:
        status = summary_pb2.ItemStatus(item_key=row.intent["item_key"], outcome=row.intent["outcome"],
                                        suggested_nis=row.intent["nis"])
        return envelope_pb2.EnvelopeBody(
            kind=envelope_pb2.MESSAGE_KIND_ITEM_STATUS, sender=self._org_id, recipients=[row.recipient],
            purpose=envelope_pb2.PURPOSE_CONTINUITY_OF_FOLLOW_UP, rule_id=row.rule_id, item_status=status)
