"""The holder's side of the reference directory: register, refresh, withdraw, re-verify.

A case in a phase the bundle registers (``directory.register_phases``) has one
directory entry per pseudonym of its subject (every identifier it has). The
transaction that changes a case (open, phase change, agreement recorded or
withdrawn, closure, erasure) also queues the ``directory.register`` or
``directory.withdraw`` intents it implies (``sync_case_txn``), so the directory
follows the case even across a crash. The register envelope is built when the
outbox seals it, from the case as it is then: the contact, and one signed
coverage statement per (querying kind, purpose, rule) that the rule's lawful
basis covers and, where the rule requires the person's agreement for that kind
and purpose, an agreement in force covers too (it expires with the agreement).

``verify`` fetches this holder's entries from the broker and checks every
statement's signature and content against what this node registered: the
broker cannot add, keep or widen an entry without it showing here.
"""

from __future__ import annotations

from olievlek import logs, wire
from olievlek.clock import now_ms
from olievlek.directory import Cover, covers_string, open_statement, sign_statement
from olievlek.envelope import Signer
from olievlek.errors import Refused
from olievlek.i18n import _
from olievlek.identity import OrgKind
from olievlek.kinds import MessageKind
from olievlek.policy import Bundle
from olievlek.policy.model import Relation, Rule
from olievlek.storage.sqlite import Txn
from olievlek.v1 import envelope_pb2, local_pb2, summary_pb2

from .broker_client import BrokerClient
from .outbox import OutboxSender
from .request_error import RequestError
from .store import NodeStore, OutboxRow

log = logs.get("node.directory")

DIRECTORY = "directory"  # the outbox's recipient column for what the broker's directory consumes
ANSWERED_KINDS = frozenset({MessageKind.QUERY_HIT, MessageKind.DISCLOSURE_REQUEST})
PAGE = 1000
BUNDLE_META = "directory_bundle"  # the bundle the entries' coverage was last computed under


def _phase_name(phase: int) -> str:
    return summary_pb2.Phase.Name(phase).removeprefix("PHASE_").lower()  # type: ignore[arg-type]


class DirectoryHolder:
    """Keeps this node's directory entries in step with its cases."""

    def __init__(self, org_id: str, kind: OrgKind, store: NodeStore, bundle: Bundle, signer: Signer,
                 outbox: OutboxSender, client: BrokerClient) -> None:
        self._org_id = org_id
        self._kind = kind
        self._store = store
        self._bundle = bundle
        self._signer = signer
        self._outbox = outbox
        self._client = client
        self._phases = bundle.directory_policy.register_phases
        outbox.register(MessageKind.DIRECTORY_REGISTER, self.build_register)
        outbox.register(MessageKind.DIRECTORY_WITHDRAW, self.build_withdraw)

    def _rule(self, kind: str) -> str:
        for rule in self._bundle.rules.values():
            if (rule.allows and kind in rule.kinds and rule.relation == Relation.DIRECTORY
                    and self._org_id in rule.senders):
                return rule.id
        return ""

    async def sync_case_txn(self, tx: Txn, case_id: int, now: int, refresh: bool = False) -> int:
        """Queue what the case's state implies for the directory; returns how many intents.

        A case adds its pseudonyms while it is open in a registering phase and removes them otherwise.
        An entry is (re-)registered while any case still holds its pseudonym (``refresh``: again, for
        new coverage), with the union of their coverage, and withdrawn when none does. Works from
        ``directory_entries`` when the subject's pseudonyms are already gone (erasure)."""
        if not self._rule(MessageKind.DIRECTORY_REGISTER):
            return 0  # this organisation does not register (not a holder kind in the bundle)
        row = await tx.fetchone("SELECT status, phase, subject_id FROM cases WHERE id = ?", (case_id,))
        want = row is not None and row[0] == "open" and _phase_name(int(row[1])) in self._phases
        have = {bytes(r[0]) for r in await tx.fetchall(
            "SELECT pseudonym FROM directory_entries WHERE case_id = ?", (case_id,))}
        current: set[bytes] = set()
        if want:
            assert row is not None
            current = {bytes(r[0]) for r in await tx.fetchall(
                "SELECT pseudonym FROM subject_pseudonyms WHERE subject_id = ?", (row[2],))}
        changed = (current - have) | (have - current) | (current if refresh else set())
        for p in current - have:
            await tx.execute("INSERT INTO directory_entries (pseudonym, case_id, registered_ms) VALUES (?, ?, ?)",
                             (p, case_id, now))
        for p in have - current:
            await tx.execute("DELETE FROM directory_entries WHERE pseudonym = ? AND case_id = ?", (p, case_id))
        for p in sorted(changed):
            held = await tx.fetchone("SELECT 1 FROM directory_entries WHERE pseudonym = ?", (p,))
            kind = MessageKind.DIRECTORY_REGISTER if held else MessageKind.DIRECTORY_WITHDRAW
            await self._intent(tx, kind, {"pseudonym": p.hex()}, now)
        return len(changed)

    async def refresh_all(self) -> int:
        """Re-register every entry when the bundle changed: coverage follows the rules in force."""
        seen = await self._store.meta(BUNDLE_META)
        if seen == self._bundle.digest.encode():
            return 0

        async def op(tx: Txn) -> int:
            cases = [int(r[0]) for r in await tx.fetchall("SELECT DISTINCT case_id FROM directory_entries")]
            queued = sum([await self.sync_case_txn(tx, c, now_ms(), refresh=True) for c in cases])
            await tx.execute("INSERT OR REPLACE INTO node_meta (name, value) VALUES (?, ?)",
                             (BUNDLE_META, self._bundle.digest.encode()))
            return queued

        queued = await self._store.writer.write(op)
        self.kick(queued)
        log.info("directory.refreshed", bundle=self._bundle.digest, intents=queued)
        return queued

    async def _intent(self, tx: Txn, kind: str, intent: dict[str, object], now: int) -> None:
        await self._store.add_intent_txn(tx, wire.new_token(), kind, DIRECTORY, self._rule(kind), intent, now)

    def kick(self, queued: int) -> None:
        if queued:
            self._outbox.kick()

    # -- building -----------------------------------------------------------
    def _answering_rules(self) -> list[Rule]:
        """Rules under which the directory may answer about an entry of ours."""
        return [r for r in self._bundle.rules.values()
                if r.allows and r.kinds & ANSWERED_KINDS
                and r.relation in (Relation.DIRECTORY, Relation.PSEUDONYM_HOLDER)
                and r.recipient_kinds is not None and self._kind in r.recipient_kinds]

    async def coverage(self, case_id: int, pseudonym: bytes, now: int) -> list[summary_pb2.CoverageStatement]:
        """The statements one case supports now: lawful basis, plus agreement where the rule requires it."""
        agreements = [(set(r[2].split(",")), set(r[3].split(",")), int(r[4]))
                      for r in await self._store.agreements(case_id) if r[7] is None and int(r[4]) > now]
        lawful_until = int(self._bundle.expires.timestamp() * 1000)
        out = []
        for rule in self._answering_rules():
            kinds = sorted({o.kind.value for o in (self._bundle.org(s) for s in rule.senders) if o is not None})
            for kind in kinds:
                until = lawful_until
                a = rule.agreement
                if a.required and OrgKind(kind) in a.recipient_kinds and rule.purpose in a.purposes:
                    ends = [u for ks, ps, u in agreements if kind in ks and rule.purpose in ps]
                    if not ends:
                        continue  # the safeguard the rule asks for is missing: not covered
                    until = min(until, max(ends))
                out.append(summary_pb2.CoverageStatement(
                    subject_pseudonym=pseudonym, holder=self._org_id, recipient_kind=kind, purpose=rule.purpose,
                    rule_id=rule.id, expires_at_ms=until))
        return out

    async def statements(self, pseudonym: bytes, now: int) -> tuple[str, list[summary_pb2.CoverageStatement]]:
        """(contact, statements) of an entry: the union over the cases holding the pseudonym (latest expiry).

        Raises:
            RequestError: no case holds it any more (a withdrawal follows in the outbox).
        """
        cases = [int(r[0]) for r in await self._store.db.fetchall(
            "SELECT case_id FROM directory_entries WHERE pseudonym = ? ORDER BY case_id", (pseudonym,))]
        first = await self._store.case(cases[0]) if cases else None
        if first is None:
            raise RequestError("not_held", _("no case holds this pseudonym any more; its withdrawal follows"))
        best: dict[tuple[str, str, str], summary_pb2.CoverageStatement] = {}
        for case_id in cases:
            for st in await self.coverage(case_id, pseudonym, now):
                key = (st.recipient_kind, st.purpose, st.rule_id)
                if key not in best or st.expires_at_ms > best[key].expires_at_ms:
                    best[key] = st
        return first.contact_id, [best[k] for k in sorted(best)]

    def covers(self, statements: list[summary_pb2.CoverageStatement], kind: str, rule: Rule, now: int) -> bool:
        return any(s.recipient_kind == kind and s.rule_id == rule.id and s.purpose == rule.purpose
                   and s.expires_at_ms > now for s in statements)

    async def build_register(self, row: OutboxRow) -> envelope_pb2.EnvelopeBody:
        pseudonym = bytes.fromhex(row.intent["pseudonym"])
        contact, statements = await self.statements(pseudonym, now_ms())
        return envelope_pb2.EnvelopeBody(
            kind=envelope_pb2.MESSAGE_KIND_DIRECTORY_REGISTER, sender=self._org_id,
            purpose=envelope_pb2.PURPOSE_REFERENCE_DIRECTORY, rule_id=row.rule_id,
            directory_register=summary_pb2.DirectoryRegister(
                subject_pseudonym=pseudonym, contact_id=contact,
                coverage=[sign_statement(self._signer.key, s) for s in statements]))

    async def build_withdraw(self, row: OutboxRow) -> envelope_pb2.EnvelopeBody:
        return envelope_pb2.EnvelopeBody(
            kind=envelope_pb2.MESSAGE_KIND_DIRECTORY_WITHDRAW, sender=self._org_id,
            purpose=envelope_pb2.PURPOSE_REFERENCE_DIRECTORY, rule_id=row.rule_id,
            directory_withdraw=summary_pb2.DirectoryWithdraw(
                subject_pseudonym=bytes.fromhex(row.intent["pseudonym"])))

    # -- re-verification -----------------------------------------------------
    async def _compare(self, label: str, pseudonym: bytes, kept: list[summary_pb2.CoverageStatement],
                       covers: str) -> list[str]:
        """What the broker keeps and reads against what this node would sign now."""
        _contact, now_signed = await self.statements(pseudonym, now_ms())
        want = {(s.recipient_kind, s.purpose, s.rule_id, s.expires_at_ms) for s in now_signed}
        got = {(s.recipient_kind, s.purpose, s.rule_id, s.expires_at_ms) for s in kept}
        problems = []
        if got != want:
            problems.append(f"{label}: the broker keeps coverage {sorted(got - want)} this node no longer gives"
                            if got - want else f"{label}: the broker lacks coverage {sorted(want - got)}")
        if covers != covers_string([Cover(*w) for w in want]):
            problems.append(f"{label}: what queries read ({covers!r}) differs from the signed coverage")
        return problems

    async def verify(self) -> local_pb2.DirectoryVerifyResponse:
        """Compare the broker's copy of our entries with what we registered; every problem is named."""
        expected = {bytes(r[0]): int(r[1]) for r in await self._store.db.fetchall(
            "SELECT pseudonym, MIN(case_id) FROM directory_entries GROUP BY pseudonym")}
        pending = {bytes.fromhex(r.intent["pseudonym"]) for r in await self._store.all_outbox()
                   if r.kind in (MessageKind.DIRECTORY_REGISTER, MessageKind.DIRECTORY_WITHDRAW)
                   and r.status.unanswered}
        key = self._signer.key.public_key()
        problems: list[str] = []
        seen: set[bytes] = set()
        statements = 0
        after = b""
        while True:
            page = (await self._client.directory_entries(after, PAGE)).entries
            for entry in page:
                p = bytes(entry.subject_pseudonym)
                seen.add(p)
                label = f"entry {p[:4].hex()}…"
                if p not in expected and p not in pending:
                    problems.append(f"{label}: the broker keeps an entry this node did not register or withdrew")
                kept: list[summary_pb2.CoverageStatement] = []
                for i, signed in enumerate(entry.coverage):
                    statements += 1
                    try:
                        st = open_statement(signed, key)
                    except Refused as exc:
                        problems.append(f"{label} coverage[{i}]: {exc.message}")
                        continue
                    if bytes(st.subject_pseudonym) != p or st.holder != self._org_id:
                        problems.append(f"{label} coverage[{i}]: statement belongs to another entry")
                    kept.append(st)
                if p in expected and p not in pending:
                    problems += await self._compare(label, p, kept, entry.covers)
            if len(page) < PAGE:
                break
            after = bytes(page[-1].subject_pseudonym)
        for p in sorted(set(expected) - seen - pending):
            problems.append(f"entry {p[:4].hex()}… of case {expected[p]}: registered here, missing at the broker")
        log.info("directory.verified", entries=len(seen), statements=statements, problems=len(problems))
        return local_pb2.DirectoryVerifyResponse(entries=len(seen), statements=statements, problems=problems,
                                                 expected=len(expected))
