"""The broker's reference directory in use: registrations, hit/no-hit queries, holder routing.

- ``directory.register`` / ``directory.withdraw`` are decided like any envelope
  and then applied to the directory in the accepting transaction instead of
  being queued (``registration``); each coverage statement is verified once,
  here, and one that fails is ignored, logged and counted in the leaf.
- ``query.hit`` comes through the ``Query`` call and is answered from the
  directory alone: one indexed read for the whole batch, then for every row
  the same steps (its entries, one coverage check each, one fixed-width row),
  so neither the answer's size nor a holder's availability says anything. A
  known person whose coverage does not include the querier is "no hit" to the
  querier; the holder's own leaf (not visible to the querier) says why.
- A rule routed to the pseudonym's holder (``disclosure.request``) is allowed
  only when the named recipient's entry covers the sender (``holder_check``);
  otherwise the sender is told "no hit" and the holder's leaf keeps the reason.

This module does not import grpc.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from olievlek import envelope, logs
from olievlek.directory import NO_HIT, Cover, covered, encode_row, needle, open_statement
from olievlek.errors import PolicyDenied, Refused, StoreUnavailable, WireError
from olievlek.identity import ID_PATTERN, OrgIdentity, OrgKind
from olievlek.kinds import MessageKind
from olievlek.policy import Request
from olievlek.policy.from_envelope import request_from_envelope
from olievlek.policy.model import QueryBudget, Relation, Rule
from olievlek.statuses import Decision
from olievlek.v1 import broker_pb2, envelope_pb2, pseudonymiser_pb2, summary_pb2

from . import outliers
from .storage import directory
from .storage.directory import Registration
from .storage.operations import (
    AdmitEntry,
    ChargeBudget,
    CloseRequestsBefore,
    DecisionRecord,
    DirectoryChange,
    Leaf,
    NoteRequest,
    Record,
    Register,
    Withdraw,
)

if TYPE_CHECKING:
    from .service import BrokerService, _Plan

log = logs.get("broker.directory")

NO_HIT_DETAIL = ("no hit: the recipient has no directory entry for this pseudonym that covers your organisation "
                 "kind and purpose")


# The kinds by which an organisation asks about a directory entry: a flag under any other rule covers nothing.
ASKING_KINDS = frozenset({MessageKind.QUERY_HIT, MessageKind.DISCLOSURE_REQUEST})


def _periods(now_ms: int) -> tuple[str, str]:
    day = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    return f"d:{day:%Y-%m-%d}", f"m:{day:%Y-%m}"


def _hour_and_day(now_ms: int) -> tuple[str, str]:
    at = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    return f"h:{at:%Y-%m-%dT%H}", f"d:{at:%Y-%m-%d}"


class DirectoryService:
    """Directory decisions; shares the send path's checks and audit log through ``BrokerService``."""

    def __init__(self, service: BrokerService) -> None:
        self._svc = service

    # -- registration -------------------------------------------------------
    def changes(self, opened: envelope.OpenedEnvelope, now: int, plan: _Plan) -> DirectoryChange | None:
        """What an accepted envelope changes in the directory or the open disclosure requests (None: nothing)."""
        sender, body = opened.body.sender, opened.body
        if opened.kind.name == MessageKind.DIRECTORY_WITHDRAW:
            pseudonym = bytes(body.directory_withdraw.subject_pseudonym)
            return Withdraw(sender, pseudonym)
        if opened.kind.name in (MessageKind.DISCLOSURE_REQUEST, MessageKind.DISCLOSURE_RESPONSE):
            asking = opened.kind.name == MessageKind.DISCLOSURE_REQUEST
            requester, holder = (sender, body.recipients[0]) if asking else (body.recipients[0], sender)
            p = bytes(body.disclosure_request.subject_pseudonym if asking
                      else body.disclosure_response.subject_pseudonym)
            return NoteRequest(requester, holder, p, now, asking)
        if opened.kind.name != MessageKind.DIRECTORY_REGISTER:
            return None
        reg = opened.body.directory_register
        signer_der = envelope_pb2.Envelope.FromString(opened.raw).signer_certificate
        identity, key = self._svc.trust.verify_signer(signer_der)
        policy = self._svc.bundle.directory_policy
        covers: list[Cover] = []
        evidence: list[summary_pb2.SignedCoverage] = []
        ignored: list[str] = []
        kept: dict[tuple[str, str, str], int] = {}
        for i, signed in enumerate(reg.coverage):
            try:
                statement = open_statement(signed, key)
                problem = self._statement_problem(statement, sender, identity.kind, bytes(reg.subject_pseudonym), now)
            except Refused as exc:
                problem = exc.message
            triple = (statement.recipient_kind, statement.purpose, statement.rule_id) if not problem else ("", "", "")
            if not problem and triple in kept:
                problem = f"the same flag as coverage[{kept[triple]}]"
            if not problem and len(covers) >= policy.max_coverage:
                problem = f"beyond the bundle's {policy.max_coverage} statements per entry"
            if problem:
                ignored.append(f"coverage[{i}]: {problem}")
                continue
            kept[triple] = i
            covers.append(Cover(statement.recipient_kind, statement.purpose, statement.rule_id,
                                statement.expires_at_ms))
            evidence.append(signed)
        plan.inputs |= {"coverage": len(covers), "ignored": ignored}
        if ignored:
            log.warning("directory.flags_ignored", holder=sender, ignored=ignored)
        entry = Registration(bytes(reg.subject_pseudonym), sender, reg.contact_id, covers, evidence)
        plan.admit = AdmitEntry(sender, entry.pseudonym, policy.entry_limit(identity.kind), _hour_and_day(now))
        return Register(entry, now)

    def _statement_problem(self, st: summary_pb2.CoverageStatement, sender: str, holder_kind: OrgKind,
                           pseudonym: bytes, now: int) -> str:
        """Why a statement cannot count (empty: it counts). A flag must name a rule under which its recipient
        kind may ask this holder's kind (a query or a disclosure request), and end with the bundle."""
        if bytes(st.subject_pseudonym) != pseudonym:
            return "statement is about another pseudonym than the entry"
        if st.holder != sender:
            return f"statement names holder {st.holder!r}, not the sender {sender!r}"
        rule = self._svc.bundle.rules.get(st.rule_id)
        if rule is None or not rule.allows:
            return f"rule {st.rule_id!r} is not an allow rule of the bundle"
        if rule.purpose != st.purpose:
            return f"rule {rule.id!r} is for purpose {rule.purpose}, not {st.purpose}"
        kinds = {o.kind.value for o in (self._svc.bundle.org(s) for s in rule.senders) if o is not None}
        if st.recipient_kind not in kinds:
            return f"rule {rule.id!r} has no senders of kind {st.recipient_kind!r}"
        if not rule.kinds & ASKING_KINDS:
            return f"rule {rule.id!r} lets nobody ask about an entry ({', '.join(sorted(rule.kinds))})"
        if rule.recipient_kinds is not None and holder_kind not in rule.recipient_kinds:
            return f"rule {rule.id!r} does not ask {holder_kind.value} holders"
        if st.expires_at_ms <= now:
            return "statement has expired"
        bundle_end = int(self._svc.bundle.expires.timestamp() * 1000)
        if st.expires_at_ms > bundle_end:
            return f"statement outlives the bundle (it expires {self._svc.bundle.expires:%Y-%m-%d})"
        return ""

    # -- routing to a holder ----------------------------------------------
    def assume_holder(self, req: Request) -> Request:
        """The policy decides first, as if the recipient held the pseudonym; the directory after."""
        rule = self._svc.bundle.rules.get(req.rule_id)
        if rule is None or rule.relation != Relation.PSEUDONYM_HOLDER:
            return req
        return dataclasses.replace(req, holder_asserted=True)

    async def route_to_holder(self, opened: envelope.OpenedEnvelope, rule: Rule, origin: OrgIdentity,
                              now: int) -> None:
        """Allow a request the policy allowed only if the named recipient's entry covers the sender.

        A routed request is a question too ("does gent hold this person for me?"): it costs one row of
        the sender's query budget, whatever the answer. Exactly one holder-side leaf is written, visible
        to the recipient only when it holds the pseudonym, so neither the caller's leaf index nor the
        answer's words depend on whether the person is known.

        Raises:
            Refused: BUDGET_EXCEEDED; or NO_HIT, the same words whether the recipient holds nothing or
                holds without coverage.
        """
        [recipient] = opened.body.recipients or [""]
        pseudonym = bytes(getattr(opened.payload, "subject_pseudonym", b""))
        covers = await self._svc.store.entry_of(pseudonym, recipient)
        ok = covers is not None and covered(covers, needle(origin.kind.value, rule.purpose, rule.id), now)
        budget = self._svc.bundle.directory_policy.budget(origin.kind)
        meta: dict[str, object] = {"event": "routing.pad"}
        if covers is not None:
            meta = {"event": "routing.holder", "holder": recipient, "sender": opened.body.sender, "rule": rule.id,
                    "covered": ok}
        sender = opened.body.sender
        charged, _head = await self._svc.committer.submit(ChargeBudget(
            sender, _periods(now), 1, (budget.per_day, budget.per_month),
            (_leaf(meta, self._svc.viewer_of(recipient) if covers is not None else None, now),)))
        if isinstance(charged, directory.OverBudget):
            raise _over_budget(sender, charged, 1, rule.id)
        if not ok:
            raise Refused(NO_HIT_DETAIL, refusal_code=broker_pb2.REFUSAL_CODE_NO_HIT, field="recipients",
                          rule_id=rule.id)

    async def close_stale_requests(self, now: int) -> int:
        """Forget open disclosure requests older than the longest time-to-live of a request rule: an
        answer could no longer be delivered, so it may no longer be sent."""
        request_rules = [r for r in self._svc.bundle.rules.values()
                         if MessageKind.DISCLOSURE_REQUEST in r.kinds]
        ttl_ms = max((r.ttl_hours for r in request_rules), default=0) * 3_600_000
        if not ttl_ms or not await self._svc.store.has_requests_before(now - ttl_ms):
            return 0  # the usual case: no commit for nothing

        closed, _head = await self._svc.committer.submit(CloseRequestsBefore(now - ttl_ms))
        if closed:
            log.info("directory.requests_closed", count=closed)
        return int(closed)

    async def check_response(self, opened: envelope.OpenedEnvelope) -> None:
        """A disclosure.response answers an open request of its recipient to its sender, about its pseudonym.

        Raises:
            PolicyDenied: there is no such request (nothing may be pushed unasked).
        """
        if opened.kind.name != MessageKind.DISCLOSURE_RESPONSE:
            return
        [requester] = opened.body.recipients or [""]
        pseudonym = bytes(opened.body.disclosure_response.subject_pseudonym)
        if not await self._svc.store.open_request(requester, opened.body.sender, pseudonym):
            raise PolicyDenied(f"no open disclosure request of {requester} to {opened.body.sender} about this "
                               "pseudonym: a disclosure answers a request, it is never pushed",
                               field="subject_pseudonym")

    # -- hit/no-hit --------------------------------------------------------
    async def query(self, origin: OrgIdentity, raw: bytes) -> broker_pb2.QueryResponse:
        """Answer a query.hit envelope from the directory alone; refusals are answers too."""
        from .service import _Plan  # the send path's plan type; imported late to avoid a cycle

        svc, now = self._svc, self._svc.now()
        plan = _Plan(raw=raw)
        lookup: asyncio.Future[dict[bytes, list[directory.Entry]]] | None = None
        try:
            env, body, kind = envelope.parse(raw)
            plan.kind_name, plan.rule_id = kind.name, body.rule_id
            if kind.name != MessageKind.QUERY_HIT:
                raise WireError(f"the Query call takes query.hit, not {kind.name}", field="kind")
            svc.check_sender(origin, body.sender)
            # The read starts now and runs while the signature and the policy are checked; if they
            # refuse, its result is dropped unseen. Every batch is read the same way, known or not.
            lookup = asyncio.ensure_future(self._svc.store.lookup(list(body.hit_query.subject_pseudonyms)))
            rule, budget = self._check(origin, raw, env, body, kind, now, plan)
        except Exception as exc:  # every input ends in a recorded decision, never an UNKNOWN
            if lookup is not None:
                lookup.cancel()
            if isinstance(exc, StoreUnavailable):
                raise  # the database's doing, not the input's: the caller asks again
            refusal = exc if isinstance(exc, Refused) else Refused(
                f"the query could not be processed ({type(exc).__name__})",
                refusal_code=broker_pb2.REFUSAL_CODE_MALFORMED)
            return broker_pb2.QueryResponse(refusal=(await svc.refuse(origin, plan, refusal, now)).refusal)
        query, rows = body.hit_query, len(body.hit_query.subject_pseudonyms)
        answer, per_holder = self._answer(list(query.subject_pseudonyms), await lookup,
                                          needle(origin.kind.value, rule.purpose, rule.id), now)
        hits = sum(1 for r in answer if r[0] == 1)
        meta: dict[str, object] = {"event": "query", "sender": body.sender, "kind": MessageKind.QUERY_HIT,
                                   "rule": rule.id,
                                   "decision": Decision.ACCEPTED, "rows": rows, "hits": hits,
                                   "file_ref": query.file_ref, "legal_basis": query.legal_basis,
                                   "env": envelope.env_of(raw).hex(), "bundle": svc.bundle.digest}
        record = DecisionRecord(now, body.sender, MessageKind.QUERY_HIT, rule.id, Decision.ACCEPTED, "", "", ())
        # One leaf for every organisation that could hold an entry, in a fixed order: a holder concerned sees
        # its own; the others are padding nobody sees. The count never varies, so the querier's leaf index says
        # nothing about who was found.
        leaves = []
        for holder in self._possible_holders(rule):
            if holder in per_holder:
                held_hits, refused = per_holder[holder]
                # The querier's file reference stays in its own leaf (it and the officers read it): a holder -
                # perhaps one that planted the entry - learns who asked, when, why and on which legal basis, not
                # which of the querier's files it is about.
                leaves.append(_leaf({"event": "query.holder", "holder": holder, "sender": body.sender,
                                     "rule": rule.id, "purpose": rule.purpose, "legal_basis": query.legal_basis,
                                     "hits": held_hits, "not_covered": refused}, svc.viewer_of(holder), now))
            else:
                leaves.append(_leaf({"event": "query.pad"}, None, now))
        charged, head = await svc.committer.submit(ChargeBudget(
            body.sender, _periods(now), rows, (budget.per_day, budget.per_month), tuple(leaves),
            Record(record, meta, (str(origin),))))
        if isinstance(charged, directory.OverBudget):
            over_budget = _over_budget(body.sender, charged, rows, rule.id)
            return broker_pb2.QueryResponse(refusal=(await svc.refuse(origin, plan, over_budget, now)).refusal)
        index, leaf = charged[-1].index, charged[-1].leaf
        log.info("query.answered", sender=body.sender, rule=rule.id, rows=rows, hits=hits, leaf=index)
        return broker_pb2.QueryResponse(answer=broker_pb2.QueryAnswer(
            result=summary_pb2.QueryResult(rows=answer), audit=await svc.audit_proof(index, head, leaf)))

    def _possible_holders(self, rule: Rule) -> list[str]:
        kinds = rule.recipient_kinds or frozenset()
        return sorted(str(o.id) for o in self._svc.bundle.orgs.values() if o.kind in kinds)

    async def refuse_malformed(self, origin: OrgIdentity, exc: Refused, raw: bytes) -> broker_pb2.QueryResponse:
        """A Query whose request does not follow the wire contract: refused and logged like any other."""
        return broker_pb2.QueryResponse(refusal=(await self._svc.refuse_input(origin, "query", exc, raw)).refusal)

    def _check(self, origin: OrgIdentity, raw: bytes, env: envelope_pb2.Envelope, body: envelope_pb2.EnvelopeBody,
               kind: Any, now: int, plan: _Plan) -> tuple[Rule, QueryBudget]:
        """Signer and signature, clock, policy, file reference and legal basis, batch size.

        Raises:
            Refused: naming what is wrong.
        """
        svc = self._svc
        opened = envelope.verify(raw, env, body, kind, svc.trust)
        svc.check_clock(body.created_at_ms, now)
        request = request_from_envelope(opened)
        plan.inputs = {"fields": sorted(request.present_fields), "purpose": request.purpose}
        decision = svc.bundle.decide(request)
        decision.raise_if_denied()
        assert decision.rule is not None
        rule = decision.rule
        plan.rule_id = rule.id
        self._check_references(body.hit_query)
        budget = svc.bundle.directory_policy.budget(origin.kind)
        rows = len(body.hit_query.subject_pseudonyms)
        if rows > budget.batch:
            raise Refused(f"a query may hold at most {budget.batch} pseudonyms for {origin.kind.value}; "
                          f"this one holds {rows}", refusal_code=broker_pb2.REFUSAL_CODE_BUDGET_EXCEEDED,
                          field="subject_pseudonyms", rule_id=rule.id)
        return rule, budget

    @staticmethod
    def _answer(pseudonyms: list[bytes], found: dict[bytes, list[directory.Entry]], want: str, now: int
                ) -> tuple[list[bytes], dict[str, list[int]]]:
        """One row per pseudonym, and per holder [hits, known-but-not-covered] for the holders' leaves."""
        per_holder: dict[str, list[int]] = {}
        # Many entries share a covers string (same rule, same expiry) and many rows the same contacts:
        # each is decided and encoded once per query.
        decided: dict[str, bool] = {}
        encoded: dict[tuple[str, ...], bytes] = {(): NO_HIT}
        rows = []
        for p in pseudonyms:
            contacts: list[str] = []
            for holder, contact, covers in found.get(p, ()):
                ok = decided.get(covers)
                if ok is None:
                    ok = decided[covers] = covered(covers, want, now)
                if ok:
                    contacts.append(contact)
                per_holder.setdefault(holder, [0, 0])[0 if ok else 1] += 1
            key = tuple(contacts)
            row = encoded.get(key)
            if row is None:
                row = encoded[key] = encode_row(contacts)
            rows.append(row)
        return rows, per_holder

    def _check_references(self, query: summary_pb2.HitQuery) -> None:
        pattern = self._svc.bundle.file_ref_pattern
        if pattern is None or not re.fullmatch(pattern, query.file_ref):
            raise PolicyDenied(f"file_ref does not follow the bundle's pattern {pattern!r}", field="file_ref")
        if not ID_PATTERN.fullmatch(query.legal_basis):
            raise PolicyDenied("legal_basis must be a code such as law-30-07-2018-art5, never free text",
                               field="legal_basis")

    async def report(self, days: int) -> broker_pb2.DirectoryReportResponse:
        """Per holder (every organisation whose kind may register): entries, new entries today and on each of
        the ``days`` before, the operators' routing evaluations for it over that time, its quota, and flags.
        Only for the bundle's data-protection officers (the caller's gate checks that)."""
        svc, now = self._svc, self._svc.now()
        today = dt.datetime.fromtimestamp(now / 1000, dt.UTC).date()
        window = [today - dt.timedelta(days=d) for d in range(days, 0, -1)]
        since = dt.datetime.combine(window[0] if window else today, dt.time(), dt.UTC)
        entries, per_day = await svc.store.holder_counts(f"d:{since:%Y-%m-%d}")
        evaluations = await svc.store.evaluations_since(int(since.timestamp() * 1000), pseudonymiser_pb2.DOMAIN_ROUTING)
        registering = {k for r in svc.bundle.rules.values() if r.allows and MessageKind.DIRECTORY_REGISTER in r.kinds
                       for k in (o.kind for o in (svc.bundle.org(s) for s in r.senders) if o is not None)}
        holders = sorted({str(o.id) for o in svc.bundle.orgs.values() if o.kind in registering} | set(entries))
        out = broker_pb2.DirectoryReportResponse(generated_at_ms=now, days=days)
        for holder in holders:
            counts = per_day.get(holder, {})
            org = svc.bundle.org(holder)
            quota = svc.bundle.directory_policy.entry_limit(org.kind).entries if org is not None else 0
            facts = outliers.HolderFacts(holder, entries.get(holder, 0), counts.get(f"d:{today:%Y-%m-%d}", 0),
                                         tuple(counts.get(f"d:{d:%Y-%m-%d}", 0) for d in window),
                                         evaluations.get(holder, 0), quota)
            out.holders.append(outliers.activity(facts))
        log.info("directory.report", holders=len(holders), flagged=sum(1 for h in out.holders if h.flags))
        return out

    async def own_entries(self, origin: OrgIdentity, after: bytes, limit: int) -> broker_pb2.DirectoryEntriesResponse:
        """The caller's own entries; nobody can list or page anyone else's (a liaison holds none)."""
        if origin.kind != OrgKind.MUNICIPALITY:
            return broker_pb2.DirectoryEntriesResponse()
        rows = await self._svc.store.own_entries(str(origin.org_id), after, limit)
        return broker_pb2.DirectoryEntriesResponse(entries=[
            broker_pb2.DirectoryEntry(subject_pseudonym=p, contact_id=c, registered_at_ms=at, covers=cv, coverage=ev)
            for p, c, at, cv, ev in rows], next_after=rows[-1][0] if len(rows) == limit else b"")


def _leaf(meta: dict[str, object], viewer: str | None, at: int) -> Leaf:
    """A leaf visible to ``viewer`` (an exact identity) and the data-protection officers; to nobody else when
    ``viewer`` is None."""
    return Leaf(meta, (viewer,) if viewer else (), at)


def over_limit(holder: str, over: directory.OverLimit, rule_id: str) -> Refused:
    if over.what == "entries":
        return Refused(f"{holder} keeps {over.used} directory entries, the bundle's most for it is {over.limit}; "
                       "withdraw one first", refusal_code=broker_pb2.REFUSAL_CODE_BUDGET_EXCEEDED,
                       field="subject_pseudonym", rule_id=rule_id)
    span = "hour" if over.what.startswith("h:") else "day"
    return Refused(f"{holder} registered {over.used} new directory entries this {span} ({over.what[2:]}), the "
                   f"bundle's most is {over.limit}; try again later", refusal_code=broker_pb2.REFUSAL_CODE_RATE_LIMITED,
                   field="subject_pseudonym", rule_id=rule_id)


def _over_budget(sender: str, over: directory.OverBudget, asked: int, rule_id: str) -> Refused:
    period, used, limit = over.period, over.used, over.limit
    return Refused(f"the query budget of {sender} for {period[2:]} is {limit} pseudonyms; {used} used, this asks "
                   f"{asked}", refusal_code=broker_pb2.REFUSAL_CODE_BUDGET_EXCEEDED, field="subject_pseudonyms",
                   rule_id=rule_id)
