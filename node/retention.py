"""Closure, retention and erasure at the holder, and its propagation to every recipient.

Retention is counted from a case's closure, per lawful-basis code (node
configuration ``retention_days``). ``run`` erases closed cases past their date;
``erase`` erases one case on request (an open case only with confirmation).
Erasing is one transaction through the node's single writer: the subject's
wrapped data key is destroyed (crypto-shredding), its sealed fields, blind
index and pseudonyms deleted (``secure_delete`` is on), the alerts' bytes
dropped, a tombstone kept, and one ``erasure.notice`` intent queued for every
organisation that was sent a summary — so the notices go out even after a
crash. Then the WAL is checkpointed and truncated until SQLite reports no busy
frame. Recipients erase what they hold about the pseudonym, keep tombstones
and acknowledge; the broker's audit log holds each notice and each ack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from olievlek import faults, logs, wire
from olievlek.clock import now_ms
from olievlek.i18n import _
from olievlek.identity import OrgKind
from olievlek.kinds import MessageKind
from olievlek.policy import Bundle
from olievlek.statuses import CaseStatus
from olievlek.storage.sqlite import Txn
from olievlek.v1 import envelope_pb2, local_pb2, summary_pb2

from .directory import DirectoryHolder
from .outbox import OutboxSender
from .request_error import RequestError
from .store import NodeStore, OutboxRow

if TYPE_CHECKING:
    from .disclosure import Disclosures

log = logs.get("node.retention")

DAY_MS = 86_400_000
MAX_EXTENSION_DAYS = 3650  # one extension; a longer hold is a new, logged decision


class Retention:
    """The lifecycle end of a case."""

    def __init__(self, org_id: str, store: NodeStore, bundle: Bundle, outbox: OutboxSender,
                 retention_days: dict[str, int], directory: DirectoryHolder, disclosures: Disclosures) -> None:
        self._directory = directory
        self._disclosures = disclosures
        self._org_id = org_id
        self._store = store
        self._bundle = bundle
        self._outbox = outbox
        self._days = retention_days
        outbox.register(MessageKind.ERASURE_NOTICE, self.build_notice)

    async def close(self, req: local_pb2.CaseCloseRequest) -> local_pb2.CaseCloseResponse:
        status = await self._store.case_status(req.case_id)
        if status is None:
            raise RequestError("unknown_case", _("there is no case {case_id}").format(case_id=req.case_id))
        if status[0] != CaseStatus.OPEN:
            raise RequestError("not_open", _("case {case_id} is {value}")
                                             .format(case_id=req.case_id, value=status[0]))
        now = now_ms()
        until = now + self._days[status[1]] * DAY_MS
        async def op(tx: Txn) -> int:
            closed = await self._store.close_case_txn(tx, req.case_id, now, until)
            return await self._directory.sync_case_txn(tx, req.case_id, now) if closed else 0

        self._directory.kick(await self._store.writer.write(op))
        log.info("case.closed", case_id=req.case_id, basis=status[1], retain_until_ms=until)
        return local_pb2.CaseCloseResponse(case_id=req.case_id, retain_until_ms=until)

    async def extend(self, uid: int, req: local_pb2.RetentionExtendRequest) -> local_pb2.RetentionDueResponse:
        if req.reason == local_pb2.RETENTION_REASON_UNSPECIFIED or not 1 <= req.days <= MAX_EXTENSION_DAYS:
            raise RequestError("missing_reason", _("give --days (1 to {MAX_EXTENSION_DAYS}) and a --reason code to "
                                                   "keep a case longer")
                                                   .format(MAX_EXTENSION_DAYS=MAX_EXTENSION_DAYS))
        status = await self._store.case_status(req.case_id)
        if status is None or status[0] != CaseStatus.CLOSED:
            raise RequestError("not_closed", _("case {case_id} is not a closed case awaiting erasure")
                                               .format(case_id=req.case_id))
        until = await self._store.extend_retention(req.case_id, req.days, req.reason, uid, now_ms())
        log.info("retention.extended", case_id=req.case_id, days=req.days, uid=uid,
                 reason=local_pb2.RetentionReason.Name(req.reason))
        return local_pb2.RetentionDueResponse(items=[local_pb2.RetentionItem(
            case_id=req.case_id, status=CaseStatus.CLOSED, retain_until_ms=until)])

    async def due(self, req: local_pb2.RetentionDueRequest) -> local_pb2.RetentionDueResponse:
        rows = await self._store.retention_due(now_ms() + req.within_days * DAY_MS)
        return local_pb2.RetentionDueResponse(items=[
            local_pb2.RetentionItem(case_id=c, status=s, closed_ms=closed, retain_until_ms=until)
            for c, s, closed, until in rows])

    async def run(self, uid: int) -> local_pb2.ErasureResponse:
        """Erase every closed case whose retention has ended."""
        done = []
        for case_id, *_rest in await self._store.retention_due(now_ms()):
            erased = await self._erase(case_id, summary_pb2.ERASURE_REASON_RETENTION_ENDED, uid, due_only=True)
            if erased is not None:  # None: extended or erased meanwhile
                done.append(erased)
        await self._finish(done)
        return local_pb2.ErasureResponse(erased=done)

    async def erase(self, uid: int, req: local_pb2.EraseRequest) -> local_pb2.ErasureResponse:
        status = await self._store.case_status(req.case_id)
        if status is None or status[0] == CaseStatus.ERASED:
            raise RequestError("unknown_case", _("there is no case {case_id} to erase").format(case_id=req.case_id))
        if req.reason == summary_pb2.ERASURE_REASON_UNSPECIFIED:
            raise RequestError("missing_reason", _("give a --reason for the erasure"))
        if status[0] == CaseStatus.OPEN and not req.confirm_open:
            raise RequestError("case_open", _("case {case_id} is still open; erase it only with --confirm-open")
                                              .format(case_id=req.case_id))
        erased = await self._erase(req.case_id, req.reason, uid, due_only=False)
        if erased is None:
            raise RequestError("unknown_case", _("case {case_id} was erased meanwhile").format(case_id=req.case_id))
        done = [erased]
        await self._finish(done)
        return local_pb2.ErasureResponse(erased=done)

    async def _erase(self, case_id: int, reason: int, uid: int, due_only: bool) -> local_pb2.ErasureDone | None:
        now = now_ms()
        store = self._store

        async def op(tx: Txn) -> list[str] | None:
            pseudonyms = await store.case_pseudonyms_txn(tx, case_id)  # before they are shredded
            erased = await store.erase_case_txn(tx, case_id, now, due_only)
            if erased is None:
                return None
            pseudonym, recipients = erased
            for recipient in recipients:
                org = self._bundle.org(recipient)
                rules = self._bundle.rules_for(MessageKind.ERASURE_NOTICE, self._org_id,
                                               org.kind if org else OrgKind.MUNICIPALITY)
                rule_id = rules[0].id if rules else ""
                await store.add_intent_txn(tx, wire.new_token(), MessageKind.ERASURE_NOTICE, recipient, rule_id,
                                           {"pseudonym": pseudonym.hex(), "reason": reason}, now)
            # What was disclosed on request is erased too, under the pseudonym each answer carried.
            disclosed = await self._disclosures.erase_disclosed_txn(tx, case_id, pseudonyms, None, now, reason)
            await self._disclosures.forget_txn(tx, case_id, pseudonyms, now)
            recipients = sorted(set(recipients) | set(disclosed))
            await store.record_erasure_txn(tx, case_id, now, reason, uid, recipients)
            await self._directory.sync_case_txn(tx, case_id, now)  # withdraw its entries
            faults.point("node.erasure_before_commit")
            return recipients

        notified = await store.writer.write(op)
        if notified is None:
            return None
        log.info("case.erased", case_id=case_id, uid=uid, reason=summary_pb2.ErasureReason.Name(reason),  # type: ignore[arg-type]
                 notified=notified)
        return local_pb2.ErasureDone(case_id=case_id, notified=notified)

    async def _finish(self, done: list[local_pb2.ErasureDone]) -> None:
        if not done:
            return
        await self._store.db.checkpoint_truncate()  # erased content leaves the WAL too
        self._outbox.kick()

    async def build_notice(self, row: OutboxRow) -> envelope_pb2.EnvelopeBody:
        return envelope_pb2.EnvelopeBody(
            kind=envelope_pb2.MESSAGE_KIND_ERASURE_NOTICE, sender=self._org_id, recipients=[row.recipient],
            purpose=envelope_pb2.PURPOSE_ERASURE_PROPAGATION, rule_id=row.rule_id,
            erasure_notice=summary_pb2.ErasureNotice(subject_pseudonym=bytes.fromhex(row.intent["pseudonym"]),
                                                     reason=int(row.intent["reason"])),  # type: ignore[arg-type]
        )
