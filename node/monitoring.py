"""A municipality's quarterly figures for the monitor: computed here, suppressed here, then sent.

Only finished calendar quarters are reported, each once (a second report of a quarter would let two
versions be differenced; the stored one is sent again instead). The figures (``docs/monitoring.md``):

- ``phase``: cases open at the quarter's end, by the phase they were in then (margin: open cases);
- ``concern`` / ``agency``: the same cases by concern category and by agency at the table
  (multi-valued; their margin is the phase table's);
- ``duration``: cases closed in the quarter by how long they ran (bands, never averages);
- ``phase_time``: phase changes in the quarter by the phase left and the time spent in it;
- ``flow``: opened, closed, move alerts sent / received / taken over within a month, handovers
  received / accepted / accepted before the release month / returned, erasures on time / late.

Suppression (``olievlek.suppression``) runs over this quarter and what this node published before, so
no suppressed figure can be recovered from the tables, their shared margin, or the stock identity
linking consecutive quarters. No pseudonym is read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

from olievlek import logs, wire
from olievlek.clock import now_ms
from olievlek.envelope import body_of
from olievlek.i18n import _
from olievlek.identity import OrgId
from olievlek.kinds import MessageKind
from olievlek.policy import Bundle
from olievlek.report_check import CATEGORIES, DIMENSIONS, TABLE_OF, quarter_end_ms
from olievlek.statuses import InboxStatus
from olievlek.storage.sqlite import Txn
from olievlek.suppression import FLOW_CATEGORY, TOTAL, Cell, Figures, Link, margin, period_of, protect
from olievlek.v1 import envelope_pb2, local_pb2, summary_pb2

from .outbox import OutboxSender
from .request_error import RequestError
from .store import NodeStore, OutboxRow

log = logs.get("node.monitoring")

PUBLISHED, UNSUPPRESSED = "published", "unsuppressed"
HISTORY = "history"  # a published report of a joiner, resent to its cooperation's aggregator
DAY_MS = 86_400_000
MONTH_MS = 30 * DAY_MS
BANDS_MS = (MONTH_MS, 3 * MONTH_MS, 6 * MONTH_MS, 12 * MONTH_MS)  # band n: under BANDS_MS[n-1]; 5: longer
ERASURE_GRACE_MS = 2 * DAY_MS  # the retention timer runs daily
FLOW = FLOW_CATEGORY


def quarter_bounds(year: int, quarter: int) -> tuple[int, int]:
    start = dt.datetime(year, 3 * quarter - 2, 1, tzinfo=dt.UTC)
    return int(start.timestamp() * 1000), quarter_end_ms(year, quarter)


def band(ms: int) -> int:
    return next((i + 1 for i, limit in enumerate(BANDS_MS) if ms < limit), len(BANDS_MS) + 1)


def _month_start(year: int, month: int) -> int:
    return int(dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Cooperation:
    """A group whose members combine their figures before suppression (bundle ``monitoring.combined``)."""

    group: str
    aggregator: str
    members: tuple[str, ...]
    rule_id: str  # the rule that lets members send their figures to the aggregator


def cooperation(bundle: Bundle, org_id: str) -> Cooperation | None:
    """This organisation's cooperation that combines figures, from the bundle (None: reports alone)."""
    entry = bundle.combined.get(OrgId(org_id))
    if entry is None:
        return None
    group, aggregator = entry
    members = tuple(sorted(str(m) for m, (g, _a) in bundle.combined.items() if g == group))
    return Cooperation(group, str(aggregator), members, bundle.cooperation_rule(org_id, str(aggregator)))


class Monitoring:
    """Computes, protects, keeps and sends this node's quarterly figures."""

    def __init__(self, org_id: str, store: NodeStore, outbox: OutboxSender, monitor: str, rule_id: str,
                 regions: dict[str, str], cooperation: Cooperation | None = None,
                 aggregators: dict[str, str] | None = None) -> None:
        self._regions = regions
        self._aggregators = aggregators or {}
        self._coop = cooperation
        self._org_id = org_id
        self._store = store
        self._outbox = outbox
        self._monitor = monitor
        self._rule_id = rule_id
        self._reporting = asyncio.Lock()
        outbox.register(MessageKind.REPORT_AGGREGATE, self.build_report)

    @property
    def _source(self) -> str:
        """Whose figures this node publishes: its own, or (as a cooperation's aggregator) the group's."""
        return self._coop.group if self._coop else self._org_id

    @property
    def _member(self) -> bool:
        """A member of a cooperation that combines figures, other than its aggregator."""
        return self._coop is not None and self._coop.aggregator != self._org_id

    async def raw(self, year: int, quarter: int, source: str = "") -> Figures:
        """The quarter's unsuppressed figures (they leave the node only to its cooperation's aggregator)."""
        start, end = quarter_bounds(year, quarter)
        period, src = period_of(year, quarter), source or self._org_id
        values: dict[Cell, int] = {}

        def add(table: str, category: int, n: int = 1) -> None:
            cell = Cell(src, period, table, category)
            values[cell] = values.get(cell, 0) + n

        for table, categories in CATEGORIES.items():
            for c in categories:
                add(table, int(c), 0)  # every category is reported, zeros included (they are suppressed)
        db = self._store.db
        changes: dict[int, list[tuple[int, int, int]]] = {}
        for case_id, at, frm, to in await db.fetchall(
                "SELECT case_id, at_ms, from_phase, to_phase FROM phase_changes ORDER BY at_ms, id"):
            changes.setdefault(int(case_id), []).append((int(at), int(frm), int(to)))
        for row in await db.fetchall("SELECT id, phase, concerns, agencies, opened_year, opened_month, closed_ms,"
                                     " erased_ms FROM cases"):
            case_id, phase, concerns, agencies, oy, om, closed, erased = row
            opened = _month_start(int(oy), int(om))
            ended = closed if closed is not None else erased  # erased while open ends it too
            if start <= opened < end:
                add("flow", FLOW["opened"])
            if ended is not None and start <= int(ended) < end:
                add("flow", FLOW["closed"])  # also the duration table's margin
                add("duration", band(int(ended) - opened))
            if opened < end and (ended is None or int(ended) >= end):
                add("phase", TOTAL)
                add("phase", self._phase_at(changes.get(int(case_id), []), int(phase), end))
                for c in json.loads(concerns):
                    add("concern", int(c))
                for a in json.loads(agencies):
                    add("agency", int(a))
            since = opened
            for at, frm, _to in changes.get(int(case_id), []):
                if start <= at < end:
                    add("phase_time", TOTAL)
                    add("phase_time", frm * 10 + band(at - since))
                since = at
        await self._flows(add, start, end)
        return Figures(values)

    @staticmethod
    def _phase_at(changes: list[tuple[int, int, int]], current: int, when: int) -> int:
        before = [to for at, _frm, to in changes if at < when]
        after = [frm for at, frm, _to in changes if at >= when]
        return before[-1] if before else after[0] if after else current

    async def _flows(self, add: Callable[..., None], start: int, end: int) -> None:
        db = self._store.db
        sent = await db.fetchone("SELECT COUNT(*) FROM outbox WHERE kind = 'alert.move' AND created_ms >= ?"
                                 " AND created_ms < ? AND status IN ('accepted', 'expired', 'rejected')", (start, end))
        add("flow", FLOW["alerts_sent"], int(sent[0]) if sent else 0)
        for kind, status, received, decided, raw in await db.fetchall(
                "SELECT kind, status, received_ms, decided_ms, envelope FROM inbox WHERE kind IN"
                " ('alert.move', 'handover') AND received_ms >= ? AND received_ms < ?", (start, end)):
            accepted = status == InboxStatus.ACCEPTED and decided is not None
            if kind == MessageKind.ALERT_MOVE:
                add("flow", FLOW["alerts_received"])
                if accepted and int(decided) - int(received) <= MONTH_MS:
                    add("flow", FLOW["alerts_taken_over_within_a_month"])
                continue
            add("flow", FLOW["handovers_received"])
            if accepted:
                add("flow", FLOW["handovers_accepted"])
                body = body_of(bytes(raw))
                release = body.handover.expected_month
                if int(decided) < _month_start(release.year, release.month):
                    add("flow", FLOW["handovers_accepted_before_release"])
        # A returned handover leaves only its tombstone and the item.status this node sent about it.
        returned = await db.fetchone(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'item.status' AND created_ms >= ? AND created_ms < ?"
            " AND json_extract(intent, '$.item_kind') = 'handover' AND json_extract(intent, '$.outcome') = 'returned'",
            (start, end))
        n = int(returned[0]) if returned else 0
        add("flow", FLOW["handovers_returned"], n)
        add("flow", FLOW["handovers_received"], n)
        for at, until in await db.fetchall(
                "SELECT e.at_ms, c.retain_until_ms FROM erasures e JOIN cases c ON c.id = e.case_id"
                " WHERE e.reason = ? AND e.at_ms >= ? AND e.at_ms < ?",
                (summary_pb2.ERASURE_REASON_RETENTION_ENDED, start, end)):
            late = until is not None and int(at) > int(until) + ERASURE_GRACE_MS
            add("flow", FLOW["erasures_late" if late else "erasures_on_time"])

    async def report(self, req: local_pb2.MonitorReportRequest) -> local_pb2.MonitorReportResponse:
        """The quarter's suppressed report; computed and kept once, sent when asked."""
        if not (2000 <= req.year <= 2100 and 1 <= req.quarter <= 4):
            raise RequestError("bad_quarter", _("give the quarter as YYYYQn, e.g. 2026Q3"))
        _start, end = quarter_bounds(req.year, req.quarter)
        if end > now_ms():
            raise RequestError("quarter_not_over", _("{year}Q{quarter} is not over; only finished quarters are "
                                                     "reported (a later report of the same quarter could be "
                                                     "differenced)")
                                                     .format(year=req.year, quarter=req.quarter))
        period = period_of(req.year, req.quarter)
        kind = UNSUPPRESSED if self._member else PUBLISHED
        if self._member and not (self._coop and self._coop.rule_id):
            raise RequestError("no_monitor", _("the bundle names no monitor organisation and rule for reports"))
        async with self._reporting:  # one quarter at a time: each one's protection sees the one before
            report = await self._kept(period, kind)
            if report is None:
                later = await self._store.db.fetchone("SELECT MAX(period) FROM monitoring_reports WHERE kind = ?",
                                                      (kind,))
                if later is not None and later[0] is not None and int(later[0]) > period:
                    raise RequestError("out_of_order", _("a later quarter was reported already; quarters are "
                                                         "reported in order, so each one's suppression knows "
                                                         "everything published before it"))
                # A look without sending stores nothing: the quarter stays open to a real report.
                if self._member:
                    report = await self._unsuppressed(req.year, req.quarter, period, keep=req.send)
                else:
                    report = await self._protect(req.year, req.quarter, period, keep=req.send)
        outbox_id, status, recipient = 0, "", ""
        if req.send:
            outbox_id = await self._send(period, kind)
            await self._outbox.wait(outbox_id, 10.0)
            row = await self._store.outbox(outbox_id)
            status, recipient = (row.status, row.recipient) if row else ("", "")
        return local_pb2.MonitorReportResponse(report=report, outbox_id=outbox_id, status=status, recipient=recipient)

    async def _kept(self, period: int, kind: str) -> summary_pb2.AggregateReport | None:
        row = await self._store.db.fetchone("SELECT report FROM monitoring_reports WHERE period = ? AND kind = ?",
                                            (period, kind))
        return summary_pb2.AggregateReport.FromString(bytes(row[0])) if row else None

    @property
    def _members(self) -> str:
        return ",".join(self._coop.members) if self._coop else ""

    async def _history(self, period: int) -> tuple[Figures, frozenset[Cell], tuple[Link, ...]]:
        """What this node published before, and what must be withheld now because of how it was published.

        Earlier reports of the same population keep this source, so the stock identity links them. A
        report of another population (before a member joined or left, or before this node combined
        for its cooperation) gets a source of its own; but the monitor still sees both under one name,
        and the difference of their stocks is the joiner's or leaver's count: so the first quarter after
        a change withholds the open-case margin (and what gives it away).

        At an aggregator, a joiner's own published reports (sent with its first figures for the group) are
        history too, under the joiner's name: the monitor holds them. When the group only gained members,
        the stock identity holds across the change - the group as it was plus the joiners, plus opened,
        minus closed - and the check takes it (``Link``); without it the withheld margin came back."""
        history = Figures()
        previous = ""
        for at, members, raw in await self._store.db.fetchall(
                "SELECT period, members, report FROM monitoring_reports WHERE kind = ? ORDER BY period",
                (PUBLISHED,)):
            source = self._source if members == self._members else f"{self._source}~{members}"
            _add_report(history, source, int(at), summary_pb2.AggregateReport.FromString(bytes(raw)))
            if int(at) == period - 1:
                previous = members
        changed = period - 1 in {c.period for c in history.values} and previous != self._members
        links: tuple[Link, ...] = ()
        if self._coop is not None and changed:
            joiners = sorted(set(self._coop.members) - set(previous.split(",")) - {self._org_id})
            for joiner in joiners:
                for report in await self._joiner_history(joiner):
                    _add_report(history, joiner, period_of(report.year, report.quarter), report)
            if set(previous.split(",")) <= set(self._coop.members):  # only joined: nobody's cases left
                links = (Link(self._source, period, (f"{self._source}~{previous}", *joiners)),)
        return history, frozenset({margin(self._source, period, "phase")} if changed else ()), links

    async def _joiner_history(self, joiner: str) -> list[summary_pb2.AggregateReport]:
        """The reports a member published before it joined, as it sent them to this aggregator."""
        reports = [body_of(raw).aggregate_report
                   for _key, raw in await self._store.received_of_kind(joiner, MessageKind.REPORT_AGGREGATE)]
        return [r for r in reports if r.history]

    async def _protect(self, year: int, quarter: int, period: int, keep: bool) -> summary_pb2.AggregateReport:
        raw = await self._combined(year, quarter, period) if self._coop else await self.raw(year, quarter)
        history, forced, links = await self._history(period)
        protected = protect(raw, period, history, forced, links)
        report = summary_pb2.AggregateReport(year=year, quarter=quarter,
                                             source=self._coop.group if self._coop else "")
        for cell in sorted(raw.values):
            hidden = cell in protected.suppressed
            report.cells.add(dimension=DIMENSIONS[cell.table], category=cell.category,
                             count=0 if hidden else raw.values[cell], suppressed=hidden)
        return await self._keep(period, PUBLISHED, report, keep)

    async def _unsuppressed(self, year: int, quarter: int, period: int, keep: bool) -> summary_pb2.AggregateReport:
        """A cooperation member's figures for its aggregator, before suppression (the group agreed to it)."""
        raw = await self.raw(year, quarter)
        report = summary_pb2.AggregateReport(year=year, quarter=quarter)
        for cell in sorted(raw.values):
            report.cells.add(dimension=DIMENSIONS[cell.table], category=cell.category, count=raw.values[cell])
        return await self._keep(period, UNSUPPRESSED, report, keep)

    async def _combined(self, year: int, quarter: int, period: int) -> Figures:
        """At a cooperation's aggregator: its own figures plus every other member's, as the group's.

        Raises:
            RequestError: a member's figures for the quarter have not arrived yet.
        """
        assert self._coop is not None
        group = self._coop.group
        total: dict[Cell, int] = {}
        for cell, value in (await self.raw(year, quarter, group)).values.items():
            total[cell] = value
        arrived: set[str] = set()
        for sender, raw in await self._store.db.fetchall(
                "SELECT sender, envelope FROM inbox WHERE kind = ? ORDER BY id", (MessageKind.REPORT_AGGREGATE,)):
            body = body_of(bytes(raw))
            r = body.aggregate_report
            if (sender not in self._coop.members or sender in arrived or (r.year, r.quarter) != (year, quarter)
                    or body.rule_id != self._coop.rule_id or r.source or r.history):
                continue  # the first unsuppressed report of each member, under the cooperation's rule
            arrived.add(sender)
            for c in r.cells:
                if c.dimension not in TABLE_OF or c.suppressed:
                    log.warning("monitoring.member_cell_skipped", member=sender, dimension=int(c.dimension))
                    continue
                key = Cell(group, period, TABLE_OF[c.dimension], c.category)
                total[key] = total.get(key, 0) + c.count
        missing = sorted(set(self._coop.members) - arrived - {self._org_id})
        if missing:
            raise RequestError("members_missing", _("the figures of {missing} for this quarter have not arrived; "
                                                    "the group is reported when every member's are in")
                               .format(missing=", ".join(missing)))
        return Figures(total)

    async def _keep(self, period: int, kind: str, report: summary_pb2.AggregateReport, keep: bool
                    ) -> summary_pb2.AggregateReport:
        encoded = wire.encode(report)
        if not keep:
            return report
        members = self._members if kind == PUBLISHED else ""

        async def op(tx: Txn) -> None:
            await tx.execute("INSERT OR IGNORE INTO monitoring_reports (period, kind, members, report, at_ms)"
                             " VALUES (?, ?, ?, ?, ?)", (period, kind, members, encoded, now_ms()))
        await self._store.writer.write(op)
        kept = await self._kept(period, kind)  # a concurrent first report wins; both computed the same
        assert kept is not None
        log.info("monitoring.report", period=period, cells=len(kept.cells),
                 suppressed=sum(c.suppressed for c in kept.cells))
        return kept

    async def _send(self, period: int, kind: str) -> int:
        """A published report to the monitor; a cooperation member's unsuppressed one to its aggregator only,
        after the reports it published before it joined (once each: the group's protection needs them)."""
        recipient, rule = (self._monitor, self._rule_id)
        if kind == UNSUPPRESSED:
            assert self._coop is not None
            recipient, rule = self._coop.aggregator, self._coop.rule_id
            for earlier in await self._published_periods():
                await self._enqueue(f"history-{earlier}-{recipient}", recipient, rule, earlier, HISTORY)
        if not recipient or not rule:
            raise RequestError("no_monitor", _("the bundle names no monitor organisation and rule for reports"))
        # One report per quarter and recipient: resending reuses the key, so it is one envelope.
        outbox_id = await self._enqueue(f"report-{period}-{recipient}", recipient, rule, period, kind)
        self._outbox.kick()
        return outbox_id

    async def _enqueue(self, key: str, recipient: str, rule: str, period: int, kind: str) -> int:
        async def op(tx: Txn) -> int:
            row = await tx.fetchone("SELECT id FROM outbox WHERE idem_key = ?", (key,))
            if row is not None:
                return int(row[0])
            return await self._store.add_intent_txn(tx, key, MessageKind.REPORT_AGGREGATE, recipient, rule,
                                                    {"period": period, "kind": kind}, now_ms())
        outbox_id: int = await self._store.writer.write(op)
        return outbox_id

    async def _published_periods(self) -> list[int]:
        rows = await self._store.db.fetchall("SELECT period FROM monitoring_reports WHERE kind = ? ORDER BY period",
                                             (PUBLISHED,))
        return [int(r[0]) for r in rows]

    async def build_report(self, row: OutboxRow) -> envelope_pb2.EnvelopeBody:
        kind = row.intent.get("kind", PUBLISHED)
        if kind != PUBLISHED and (self._coop is None or row.recipient != self._coop.aggregator):
            raise RequestError("unsuppressed", "an unsuppressed report goes to the cooperation's aggregator only")
        report = await self._kept(int(row.intent["period"]), PUBLISHED if kind == HISTORY else kind)
        if report is None:
            raise RequestError("no_report", _("the quarter's report is not kept here"))
        if kind == HISTORY:
            report.history = True
        return envelope_pb2.EnvelopeBody(
            kind=envelope_pb2.MESSAGE_KIND_REPORT_AGGREGATE, sender=self._org_id, recipients=[row.recipient],
            purpose=envelope_pb2.PURPOSE_MONITORING_AND_EVALUATION, rule_id=row.rule_id, aggregate_report=report)

    async def received(self) -> local_pb2.MonitorListResponse:
        """At the monitor: every report received."""
        rows = await self._store.db.fetchall("SELECT sender, envelope FROM inbox WHERE kind = ? ORDER BY id",
                                             (MessageKind.REPORT_AGGREGATE,))
        out = local_pb2.MonitorListResponse(regions=self._regions, aggregators=self._aggregators)
        for sender, raw in rows:
            body = body_of(bytes(raw))
            out.reports.add(sender=sender, report=body.aggregate_report)
        return out


def _add_report(history: Figures, source: str, period: int, report: summary_pb2.AggregateReport) -> None:
    for cell in report.cells:
        key = Cell(source, period, TABLE_OF.get(cell.dimension, "unknown"), cell.category)
        history.values[key] = cell.count
        if cell.suppressed:
            history.suppressed.add(key)
