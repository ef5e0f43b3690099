"""``olievlek up``: a whole federation on loopback and the move-alert scenario.

Gent opens a case; the person moves to Antwerpen; Antwerpen's inbox shows the
summary pending identification; Antwerpen's regisseur enters the person's
number and the node matches it; Leuven receives nothing; Gent then tries to
send a summary no rule allows and the refusal names the field and rule; the
erasure propagates; the justice house hands a released person over; the federal
liaison asks the directory about three persons (hit, known but not covered, no
hit) and asks Gent to disclose more, which Gent approves in part.
Exit 0 when every expectation holds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.panel import Panel

from olievlek.errors import OlievlekError
from olievlek.kinds import MessageKind
from olievlek.lifecycle import private_files
from olievlek.statuses import InboxStatus
from olievlek.v1 import local_pb2, summary_pb2

from .console import out
from .federation import LIAISON_BASIS, Federation
from .local_client import call

# A fictional person; the number is valid (mod-97, pre-2000 rule) but invented.
DEMO_IDENTITY = local_pb2.Identity(
    national_number="93.05.18-223.61", given_names="Demo", family_name="Persoon"
)
# A second fictional person, released from prison, followed up by the justice house.
RELEASED_IDENTITY = local_pb2.Identity(
    national_number="85.07.30-033.28", given_names="Vrij", family_name="Gelaten"
)
# Three more for the liaison: one who agreed to hit/no-hit checks, one who did not, one nobody knows.
CONSENTING_IDENTITY = local_pb2.Identity(national_number="90.01.01-123.95", given_names="Wel", family_name="Akkoord")
UNCOVERED_IDENTITY = local_pb2.Identity(national_number="77.04.12-456.53", given_names="Niet", family_name="Akkoord")
UNKNOWN_IDENTITY = local_pb2.Identity(national_number="66.11.22-987.10")
FILE_REF = "fed-2026-7"
NIS = {"gent": 44021, "antwerpen": 11002, "leuven": 24062}


def _inbox(fed: Federation, org: str) -> list[local_pb2.InboxItem]:
    req = local_pb2.LocalRequest(inbox_list=local_pb2.InboxListRequest())
    return list(call(fed.socket(org), req).inbox_list.items)


def _wait_for(pred: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


class Scenario:
    """The demo's steps with their expectations."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.failures: list[str] = []

    def expect(self, ok: bool, what: str) -> None:
        out.print(f"  {'[green]✔[/]' if ok else '[red]✘[/]'} {what}")
        if not ok:
            self.failures.append(what)

    def run(self) -> bool:
        fed = self.fed
        out.rule("1. Gent's LIVC opens a case")
        case_id = call(fed.socket("gent"), local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
            identity=DEMO_IDENTITY, phase=summary_pb2.PHASE_FOLLOW_UP,
            concerns=[summary_pb2.CONCERN_CATEGORY_RIGHT_WING, summary_pb2.CONCERN_CATEGORY_POLARISATION],
            risk_level=summary_pb2.RISK_LEVEL_MEDIUM,
            agencies=[summary_pb2.AGENCY_ROLE_POLICE, summary_pb2.AGENCY_ROLE_CAW],
        ))).case_open.case_id
        self.expect(case_id > 0, f"case {case_id} opened at Gent (identity stays in Gent's node)")

        out.rule("2. The person moves to Antwerpen (NIS 11002): Gent sends a move alert")
        r = call(fed.socket("gent"), local_pb2.LocalRequest(alert_move=local_pb2.AlertMoveRequest(
            case_id=case_id, destination_nis=NIS["antwerpen"]))).alert_move
        self.expect(r.status == local_pb2.OUTBOX_STATUS_ACCEPTED,
                    f"broker accepted the alert for {r.recipient} under rule {r.rule_id}")

        out.rule("3. Antwerpen's inbox")
        arrived = _wait_for(lambda: len(_inbox(fed, "antwerpen")) == 1)
        items = _inbox(fed, "antwerpen")
        self.expect(arrived, "one summary arrived at Antwerpen")
        if items:
            self.expect(items[0].status == InboxStatus.PENDING_IDENTIFICATION,
                        f"item {items[0].item_id} from {items[0].sender} is pending identification")

        out.rule("4. Antwerpen's regisseur enters the person's number")
        ident = call(fed.socket("antwerpen"), local_pb2.LocalRequest(identify=local_pb2.IdentifyRequest(
            identity=local_pb2.Identity(national_number=DEMO_IDENTITY.national_number)))).identify
        self.expect(len(ident.matched_item_ids) == 1,
                    f"the node matched item(s) {list(ident.matched_item_ids)} to the person")
        self.expect(all(i.status == InboxStatus.IDENTIFIED for i in _inbox(fed, "antwerpen")),
                    "inbox shows it identified")

        out.rule("5. Leuven (NIS 24062) was not involved")
        self.expect(_inbox(fed, "leuven") == [], "Leuven's inbox is empty")

        out.rule("6. Gent tries to share the agencies at the table with Leuven")
        r = call(fed.socket("gent"), local_pb2.LocalRequest(alert_move=local_pb2.AlertMoveRequest(
            case_id=case_id, destination_nis=NIS["leuven"], include_fields=["agencies"]))).alert_move
        self.expect(r.status == local_pb2.OUTBOX_STATUS_REFUSED,
                    escape(f"refused: [{r.refusal_code}] {r.refusal_detail}"))
        self.expect(r.refusal_field == "summary.agencies" and r.rule_id == "move-alert",
                    f"the refusal names field {r.refusal_field!r} and rule {r.rule_id!r}")
        self.expect(_inbox(fed, "leuven") == [], "Leuven still received nothing")

        out.rule("7. The person asks Gent to erase their data: the erasure propagates")
        shown = call(fed.socket("gent"), local_pb2.LocalRequest(case_show=local_pb2.CaseShowRequest(
            case_id=case_id, purpose=local_pb2.ACCESS_PURPOSE_ACCESS_REQUEST))).case_show
        self.expect(shown.identity.family_name == DEMO_IDENTITY.family_name,
                    "Gent's regisseur opens the case for the access request (written to Gent's access log)")
        erased = call(fed.socket("gent"), local_pb2.LocalRequest(subject_erase=local_pb2.EraseRequest(
            case_id=case_id, reason=summary_pb2.ERASURE_REASON_SUBJECT_REQUEST, confirm_open=True))).erasure
        told = [list(e.notified) for e in erased.erased]
        self.expect(told == [["antwerpen"]], f"Gent destroyed the case's data key; erasure notice to {told}")
        self.expect(_wait_for(lambda: _inbox(fed, "antwerpen") == []),
                    "Antwerpen erased what Gent had sent (a tombstone stays) and acknowledged")

        self._handover()
        self._liaison()
        self._monitoring()

        out.rule("11. Every decision above is a leaf of the signed log, cosigned by the witness")
        time.sleep(1.5)  # the broker pushes its latest checkpoint to the witness every 0.5 s
        for org in ("gent", "antwerpen", "leuven", "jh-antwerpen", "fed-liaison", "vvsg"):
            proc = subprocess.run([sys.executable, "-m", "olievlek", "audit", "verify", "--node-config",
                                   str(fed.node_dir(org) / "node.yaml")],
                                  capture_output=True, text=True, timeout=60, check=False)
            last = (proc.stdout.strip().splitlines() or ["(no output)"])
            self.expect(proc.returncode == 0, escape(f"{org}: " + " / ".join(line.strip() for line in last)))
        kept = fed.workdir / "checkpoint.txt"
        proc = subprocess.run([sys.executable, "-m", "olievlek", "audit", "checkpoint", "--node-config",
                               str(fed.node_dir("gent") / "node.yaml"), "--out", str(kept)],
                              capture_output=True, text=True, timeout=60, check=False)
        self.expect(proc.returncode == 0 and kept.exists(),
                    f"the latest cosigned checkpoint, as anyone can keep it ({kept}):")
        if kept.exists():
            out.print(escape(kept.read_text()), highlight=False)
        return not self.failures

    def _handover(self) -> None:
        fed = self.fed
        out.rule("8. The justice house hands a person released in March 2027 over to Antwerpen")
        jh, antwerpen = fed.socket("jh-antwerpen"), fed.socket("antwerpen")
        case_id = call(jh, local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
            identity=RELEASED_IDENTITY, phase=summary_pb2.PHASE_FOLLOW_UP,
            concerns=[summary_pb2.CONCERN_CATEGORY_ISLAMIST], risk_level=summary_pb2.RISK_LEVEL_HIGH,
            agencies=[summary_pb2.AGENCY_ROLE_JUSTICE_HOUSE]))).case_open.case_id
        r = call(jh, local_pb2.LocalRequest(handover=local_pb2.HandoverRequest(
            case_id=case_id, destination_nis=NIS["antwerpen"], expected_year=2027, expected_month=3,
            needs=[summary_pb2.FOLLOW_UP_NEED_HOUSING, summary_pb2.FOLLOW_UP_NEED_EMPLOYMENT]))).alert_move
        self.expect(r.status == local_pb2.OUTBOX_STATUS_ACCEPTED, f"handover accepted by the broker (rule {r.rule_id})")
        self.expect(_wait_for(lambda: any(i.kind == MessageKind.HANDOVER for i in _inbox(fed, "antwerpen"))),
                    "the handover waits at Antwerpen, pending identification")
        ident = call(antwerpen, local_pb2.LocalRequest(identify=local_pb2.IdentifyRequest(
            identity=RELEASED_IDENTITY))).identify
        [item] = ident.matched_item_ids or [0]
        decided = call(antwerpen, local_pb2.LocalRequest(inbox_decide=local_pb2.InboxDecisionRequest(
            item_id=item))).inbox_decide
        self.expect(decided.case_id > 0, f"Antwerpen identified the person and accepted: case {decided.case_id} "
                    "opened in pre-analysis")

        def outcome() -> str:
            items = call(jh, local_pb2.LocalRequest(outbox_list=local_pb2.OutboxListRequest())).outbox_list.items
            return items[-1].outcome if items else ""

        self.expect(_wait_for(lambda: outcome() == "accepted"), "the justice house sees the handover accepted")


    def _liaison(self) -> None:
        fed = self.fed
        gent, liaison = fed.socket("gent"), fed.socket("fed-liaison")
        out.rule("9. The federal liaison asks: is any of these three persons followed up?")
        covered = call(gent, local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
            identity=CONSENTING_IDENTITY, phase=summary_pb2.PHASE_FOLLOW_UP,
            concerns=[summary_pb2.CONCERN_CATEGORY_LEFT_WING], risk_level=summary_pb2.RISK_LEVEL_LOW,
            agencies=[summary_pb2.AGENCY_ROLE_POLICE]))).case_open.case_id
        call(gent, local_pb2.LocalRequest(agreement=local_pb2.AgreementRequest(agreement=local_pb2.Agreement(
            case_id=covered, recipient_kinds=["federal_liaison"],
            purposes=["hit_no_hit_check", "disclosure_on_request"],
            valid_until_ms=int(time.time() * 1000) + 365 * 86_400_000, evidence_ref="gent-2026-0099"))))
        call(gent, local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
            identity=UNCOVERED_IDENTITY, phase=summary_pb2.PHASE_FOLLOW_UP,
            concerns=[summary_pb2.CONCERN_CATEGORY_ISLAMIST], risk_level=summary_pb2.RISK_LEVEL_MEDIUM)))
        self.expect(_wait_for(lambda: _settled(fed, "gent")),
                    "Gent registered both persons in the broker's directory (pseudonym, contact, signed coverage)")
        rows = call(liaison, local_pb2.LocalRequest(liaison_query=local_pb2.LiaisonQueryRequest(
            identities=[local_pb2.Identity(national_number=i.national_number)
                        for i in (CONSENTING_IDENTITY, UNCOVERED_IDENTITY, UNKNOWN_IDENTITY)],
            purpose="hit_no_hit_check", legal_basis=LIAISON_BASIS, file_ref=FILE_REF))).liaison_query.rows
        hit, uncovered, unknown = rows
        self.expect(hit.outcome == local_pb2.QUERY_OUTCOME_HIT and list(hit.contacts) == ["gent-livc"],
                    f"row 1: hit, contact {list(hit.contacts)} only (agreement recorded at Gent)")
        self.expect(uncovered.outcome == local_pb2.QUERY_OUTCOME_NO_HIT,
                    "row 2: no hit - known to Gent, but no agreement covers the liaison (Gent's log says why)")
        self.expect(unknown.outcome == local_pb2.QUERY_OUTCOME_NO_HIT, "row 3: no hit - nobody follows this person")

        out.rule("   The liaison asks Gent for phase, concerns and risk; Gent approves phase and concerns")
        asked = call(liaison, local_pb2.LocalRequest(disclosure_ask=local_pb2.DisclosureAskRequest(
            hit_id=hit.hit_id, purpose="disclosure_on_request", legal_basis=LIAISON_BASIS, file_ref=FILE_REF,
            fields=[summary_pb2.DISCLOSABLE_FIELD_PHASE, summary_pb2.DISCLOSABLE_FIELD_CONCERNS,
                    summary_pb2.DISCLOSABLE_FIELD_RISK_LEVEL]))).alert_move
        self.expect(asked.status == local_pb2.OUTBOX_STATUS_ACCEPTED,
                    f"the broker routed the request to {asked.recipient}: its directory entry covers the liaison")
        self.expect(_wait_for(lambda: any(i.kind == MessageKind.DISCLOSURE_REQUEST for i in _inbox(fed, "gent"))),
                    "Gent's regisseur sees the request in the inbox")
        [request] = [i for i in _inbox(fed, "gent") if i.kind == MessageKind.DISCLOSURE_REQUEST]
        call(gent, local_pb2.LocalRequest(disclosure_decide=local_pb2.DisclosureDecideRequest(
            item_id=request.item_id, approve=True,
            fields=[summary_pb2.DISCLOSABLE_FIELD_PHASE, summary_pb2.DISCLOSABLE_FIELD_CONCERNS])))
        answered = lambda: any(i.kind == MessageKind.DISCLOSURE_RESPONSE for i in _inbox(fed, "fed-liaison"))  # noqa: E731
        self.expect(_wait_for(answered), "the answer arrived at the liaison")
        [answer] = [i for i in _inbox(fed, "fed-liaison") if i.kind == MessageKind.DISCLOSURE_RESPONSE]
        s = answer.summary
        self.expect(bool(s.phase and s.concerns) and not s.risk_level and not s.agencies,
                    "it holds exactly the approved fields: phase and concerns, no risk level, no agencies")


    def _monitoring(self) -> None:
        fed = self.fed
        out.rule("10. A monitoring round: Gent and Antwerpen report 2026Q3, VVSG renders the dashboard")
        opened = 0
        for org, count, month, concern in (("gent", 7, 7, summary_pb2.CONCERN_CATEGORY_RIGHT_WING),
                                           ("gent", 5, 8, summary_pb2.CONCERN_CATEGORY_ISLAMIST),
                                           ("antwerpen", 2, 9, summary_pb2.CONCERN_CATEGORY_POLARISATION)):
            for i in range(count):  # cases carried over from the paper file, opened last quarter
                first9 = f"6{month}01{i:02d}{len(org):02d}1"
                number = first9 + f"{97 - int(first9) % 97:02d}"
                call(fed.socket(org), local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
                    identity=local_pb2.Identity(national_number=number, given_names="Dossier", family_name="Papier"),
                    phase=summary_pb2.PHASE_FOLLOW_UP, concerns=[concern], opened_year=2026, opened_month=month)))
                opened += 1
        reports = {org: call(fed.socket(org), local_pb2.LocalRequest(monitor_report=local_pb2.MonitorReportRequest(
            year=2026, quarter=3, send=True))).monitor_report for org in ("gent", "antwerpen")}
        for org, r in reports.items():
            withheld = sum(c.suppressed for c in r.report.cells)
            self.expect(r.status == "accepted", f"{org} sent its 2026Q3 report: {withheld} of {len(r.report.cells)} "
                        "figures withheld")
        self.expect(all(c.suppressed for c in reports["antwerpen"].report.cells
                        if c.dimension == summary_pb2.AGGREGATE_DIMENSION_PHASE),
                    "Antwerpen's two carried-over cases appear in no figure")
        monitor = fed.socket("vvsg")
        self.expect(_wait_for(lambda: len(call(monitor, local_pb2.LocalRequest(
            monitor_list=local_pb2.MonitorListRequest())).monitor_list.reports) == 2), "VVSG received both reports")
        dash = fed.workdir / "dashboard"
        proc = subprocess.run([sys.executable, "-m", "olievlek", "report", "dashboard", "--socket", str(monitor),
                               "--out", str(dash)], capture_output=True, text=True, timeout=120, check=False)
        self.expect(proc.returncode == 0 and (dash / "dashboard.html").exists(),
                    f"dashboard written (in Dutch): {dash / 'dashboard.html'}")


def _settled(fed: Federation, org: str) -> bool:
    items = call(fed.socket(org), local_pb2.LocalRequest(outbox_list=local_pb2.OutboxListRequest())).outbox_list.items
    return all(i.status not in (local_pb2.OUTBOX_STATUS_QUEUED, local_pb2.OUTBOX_STATUS_PENDING) for i in items)


def up(
    keep: Annotated[bool, typer.Option("--keep", help="Leave the federation running until Ctrl-C.")] = False,
    workdir: Annotated[Path | None, typer.Option(help="Work directory (default: a fresh temporary one).")] = None,
) -> None:
    """Start a local federation (broker, witness, two pseudonymisers, Gent, Antwerpen, Leuven, the
    justice house of Antwerpen and a federal liaison) on loopback and play the scenario."""
    private_files()  # the CA key, every node's key-encryption key and the databases are in here
    wd = workdir or Path(tempfile.mkdtemp(prefix="olv-"))
    fed = Federation(wd)
    out.print(Panel.fit(f"olievlek local federation in [bold]{wd}[/]\nlogs: {wd / 'logs'}", title="olievlek up"))
    ok = False
    try:
        fed.create()
        witness = fed.start_witness()
        out.print(f"witness run by vvsg on https://127.0.0.1:{witness} (tlog-witness: the broker pushes its "
                  "checkpoints, the witness cosigns consistent ones)")
        port = fed.start_broker()
        out.print(f"broker listening on 127.0.0.1:{port} (mTLS)")
        for share, p in zip((1, 2), fed.start_pseudonymisers(), strict=True):
            out.print(f"pseudonymiser share {share} on 127.0.0.1:{p} (its own key share, generated there)")
        for spec in fed.nodes:
            fed.start_node(spec)
            out.print(f"node {spec.org_id} ({spec.kind}) up, socket {fed.socket(spec.org_id)}")
        ok = Scenario(fed).run()
        out.print(Panel.fit("[green]scenario passed[/]" if ok else "[red]scenario failed[/]"))
        if keep:
            out.print("federation running; press Ctrl-C to stop")
            # Block first so the signal is taken by sigwait, not raised as KeyboardInterrupt.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except OlievlekError as exc:
        out.print(f"[red]error[/] {exc.diagnostics()}")
    finally:
        fed.stop()
        out.print("federation stopped")
    if not ok:
        raise typer.Exit(1)
