"""At the monitor: a quarterly report is checked before it is kept, and kept once per sender and quarter.

The checks a report can be put to on its own are in ``olievlek.report_check``; this adds what needs the
monitor's own store: a second report of a quarter from the same sender is refused (a published quarter is
final - two versions could be differenced, ``docs/monitoring.md``). A redelivery of the same envelope (same
sender and idempotency key) is not a second report: the inbox deduplicates it. A refused report is refused
as a delivery (the sender's outbox shows the code; the broker logs the rejection) and logged here.
"""

from __future__ import annotations

from collections.abc import Sequence

from olievlek import logs
from olievlek.envelope import OpenedEnvelope, body_of
from olievlek.kinds import MessageKind
from olievlek.policy import Bundle
from olievlek.report_check import ReportProblem, ReportRefused, check_report
from olievlek.v1 import summary_pb2

from .store import NewDelivery, NodeStore

log = logs.get("node.report_gate")


def _quarter(report: summary_pb2.AggregateReport) -> tuple[int, int, str]:
    return report.year, report.quarter, report.source


class ReportGate:
    def __init__(self, store: NodeStore, bundle: Bundle) -> None:
        self._store = store
        self._bundle = bundle

    async def check(self, opened: OpenedEnvelope, pending: Sequence[NewDelivery], now_ms: int) -> None:
        """``pending``: deliveries of this batch not stored yet (a second report may be among them).

        Raises:
            ReportRefused: the report breaks a check (logged with its code and sender).
        """
        sender, report = opened.body.sender, opened.body.aggregate_report
        try:
            check_report(sender, report, self._bundle.combined, self._bundle.monitoring, now_ms)
            await self._first(sender, opened.body.idempotency_key, report, pending)
        except ReportRefused as exc:
            log.warning("report.refused", sender=sender, year=report.year, quarter=report.quarter,
                        problem=exc.problem.value)
            raise

    async def _first(self, sender: str, key: str, report: summary_pb2.AggregateReport,
                     pending: Sequence[NewDelivery]) -> None:
        kept = await self._store.received_of_kind(sender, MessageKind.REPORT_AGGREGATE)
        kept += [(d.idem_key, d.envelope) for d in pending
                 if d.sender == sender and d.kind == MessageKind.REPORT_AGGREGATE]
        for other_key, raw in kept:
            if other_key != key and _quarter(body_of(raw).aggregate_report) == _quarter(report):
                raise ReportRefused(ReportProblem.SECOND_REPORT,
                                    f"{sender} reported {report.year}Q{report.quarter} before; a published quarter "
                                    "is final (an error is carried into the next quarter)")
