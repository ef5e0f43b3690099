"""The querying side (a federal liaison or a justice house): hit/no-hit queries and disclosure requests.

Identifiers come in over the local socket only, are pseudonymised obliviously
(the pseudonymisers see blinded points, the broker sees pseudonyms), and the
query goes to the broker's ``Query`` call, which answers from its directory
alone. Purpose, legal basis and file reference are required; the file
reference must follow the bundle's pattern and the legal basis must be one of
this node's configured codes, so neither is ever free text. A row whose
identifier is not valid is answered ``invalid`` here and never asked; the
other rows go on. A hit is kept (pseudonym and contacts, nothing else) so that
a disclosure can be asked about it; the holder's erasure notice removes it.
"""

from __future__ import annotations

import re

from olievlek import envelope, logs, wire
from olievlek.clock import now_ms
from olievlek.directory import decode_row
from olievlek.envelope import Signer
from olievlek.errors import InvalidIdentifier, TransportError
from olievlek.i18n import _
from olievlek.identity import ID_PATTERN, OrgKind
from olievlek.kinds import MessageKind
from olievlek.normalise import PrfInput, identity_inputs
from olievlek.policy import Bundle
from olievlek.policy.model import Rule
from olievlek.storage.sqlite import Txn
from olievlek.v1 import broker_pb2, envelope_pb2, local_pb2, summary_pb2

from . import evidence
from .audit_check import AuditChecker
from .broker_client import BrokerClient
from .outbox import OutboxSender
from .pseudonym_client import PseudonymClient
from .request_error import RequestError
from .store import NodeStore, OutboxRow

log = logs.get("node.liaison")

MAX_ROWS = 500  # identities per local request; the CLI sends a long batch in chunks and shows progress


class Liaison:
    """Queries the directory and asks holders for disclosure."""

    def __init__(self, org_id: str, kind: OrgKind, store: NodeStore, bundle: Bundle, signer: Signer,
                 pseudonymiser: PseudonymClient, client: BrokerClient, audit: AuditChecker, outbox: OutboxSender,
                 bases: frozenset[str]) -> None:
        self._org_id = org_id
        self._kind = kind
        self._store = store
        self._bundle = bundle
        self._signer = signer
        self._pseudonymiser = pseudonymiser
        self._client = client
        self._audit = audit
        self._outbox = outbox
        self._bases = bases
        outbox.register(MessageKind.DISCLOSURE_REQUEST, self.build_request)

    def _rule(self, kind: str, recipient_kind: OrgKind | None) -> Rule:
        for rule in self._bundle.rules.values():
            if (rule.allows and kind in rule.kinds and self._org_id in rule.senders
                    and (recipient_kind is None or rule.recipient_kinds is None
                         or recipient_kind in rule.recipient_kinds)):
                return rule
        raise RequestError("no_rule", _("no rule of the bundle lets {value} send {kind}")
                                        .format(value=self._kind.value, kind=kind))

    def _check_grounds(self, rule: Rule, purpose: str, basis: str, file_ref: str) -> None:
        if purpose != rule.purpose:
            raise RequestError("purpose", _("rule {id!r} is for purpose {purpose}; give --purpose {purpose}")
                                            .format(id=rule.id, purpose=rule.purpose))
        if not ID_PATTERN.fullmatch(basis) or basis not in self._bases:
            raise RequestError("legal_basis", _("--legal-basis must be one of this node's codes: {value}")
                                                .format(value=sorted(self._bases)))
        pattern = self._bundle.file_ref_pattern or "$^"
        if not re.fullmatch(pattern, file_ref):
            raise RequestError("file_ref", _("--file-ref must follow the bundle's pattern {pattern}")
                                             .format(pattern=pattern))

    async def query(self, req: local_pb2.LiaisonQueryRequest) -> local_pb2.LiaisonQueryResponse:
        rule = self._rule(MessageKind.QUERY_HIT, None)
        self._check_grounds(rule, req.purpose, req.legal_basis, req.file_ref)
        if not 0 < len(req.identities) <= MAX_ROWS:
            raise RequestError("batch", _("send 1 to {MAX_ROWS} identities per request").format(MAX_ROWS=MAX_ROWS))
        rows: list[local_pb2.LiaisonRow] = []
        asked: list[tuple[int, list[PrfInput]]] = []  # (position in rows, inputs)
        for i, identity in enumerate(req.identities):
            row = local_pb2.LiaisonRow(row=req.first_row + i)
            try:
                asked.append((len(rows), identity_inputs(identity.national_number, identity.family_name,
                                                         identity.given_names, identity.birth_date)))
            except InvalidIdentifier as exc:  # says why, never what
                row.outcome, row.error = local_pb2.QUERY_OUTCOME_INVALID, exc.message
            rows.append(row)
        flat = [inp for _, inputs in asked for inp in inputs]
        if not flat:
            return local_pb2.LiaisonQueryResponse(rows=rows)
        pseudonyms = [bytes(p) for p in (await self._pseudonymiser.pseudonymise(flat)).pseudonyms]
        unique = list(dict.fromkeys(pseudonyms))  # the same person twice in a batch is asked once
        by_pseudonym: dict[bytes, list[str]] = {}
        leaf = 0
        size = max(1, self._bundle.directory_policy.budget(self._kind).batch)
        for start in range(0, len(unique), size):  # a row with a birth date asks two pseudonyms
            chunk = unique[start:start + size]
            answer = await self._ask(rule, chunk, req)
            if len(answer.result.rows) != len(chunk):
                raise TransportError(f"the broker answered {len(answer.result.rows)} rows for {len(chunk)} pseudonyms")
            by_pseudonym |= {p: decode_row(r) for p, r in zip(chunk, answer.result.rows, strict=True)}
            leaf = answer.audit.leaf_index
        at = 0
        hits: list[tuple[int, list[tuple[bytes, str]]]] = []
        for position, inputs in asked:
            mine = [(p, c) for p in pseudonyms[at:at + len(inputs)] for c in by_pseudonym[p]]
            at += len(inputs)
            found = sorted({c for _, c in mine})
            rows[position].outcome = local_pb2.QUERY_OUTCOME_HIT if found else local_pb2.QUERY_OUTCOME_NO_HIT
            if found:
                rows[position].contacts.extend(found)
                hits.append((position, mine))
        for position, hit_id in zip([h[0] for h in hits], await self._keep_hits(hits, req.file_ref), strict=True):
            rows[position].hit_id = hit_id
        log.info("liaison.queried", rows=len(rows), asked=len(unique), hits=len(hits), leaf=leaf)
        return local_pb2.LiaisonQueryResponse(rows=rows, leaf_index=leaf)

    async def _ask(self, rule: Rule, pseudonyms: list[bytes], req: local_pb2.LiaisonQueryRequest
                   ) -> broker_pb2.QueryAnswer:
        body = envelope_pb2.EnvelopeBody(
            idempotency_key=wire.new_token(), kind=envelope_pb2.MESSAGE_KIND_QUERY_HIT, sender=self._org_id,
            purpose=envelope_pb2.PURPOSE_HIT_NO_HIT_CHECK, rule_id=rule.id, created_at_ms=now_ms(),
            hit_query=summary_pb2.HitQuery(subject_pseudonyms=pseudonyms, file_ref=req.file_ref,
                                           legal_basis=req.legal_basis))
        sealed = envelope.seal(body, self._signer)
        env = envelope.env_of(sealed)
        response = await self._client.query(sealed)
        if response.WhichOneof("outcome") == "refusal":
            r = response.refusal
            if r.aggregated_interval_ms and r.aggregated_position:  # proven later, with its interval's leaf
                interval, position = r.aggregated_interval_ms, r.aggregated_position
                await self._store.writer.write(lambda tx: evidence.keep_aggregated_txn(
                    tx, interval, position, env, None))
            else:
                await self._audit.check(r.audit, {"sender": self._org_id, "decision": "refused", "env": env.hex()})
            code = broker_pb2.RefusalCode.Name(r.code).removeprefix("REFUSAL_CODE_").lower()
            raise RequestError(code, _("the broker refused the query: {detail}").format(detail=r.detail))
        await self._audit.check(response.answer.audit, {"sender": self._org_id, "event": "query",  # its own leaf
                                                        "rows": len(pseudonyms), "env": env.hex()})
        return response.answer

    async def _keep_hits(self, hits: list[tuple[int, list[tuple[bytes, str]]]], file_ref: str) -> list[int]:
        """One row per (pseudonym, contact) that hit; a hit's number is its first row's id."""
        now = now_ms()

        async def op(tx: Txn) -> list[int]:
            numbers = []
            for _position, pairs in hits:
                first = 0
                for p, contact in pairs:
                    row_id = await tx.execute("INSERT INTO liaison_hits (hit, pseudonym, contact, file_ref, at_ms)"
                                              " VALUES (?, ?, ?, ?, ?)", (first, p, contact, file_ref, now))
                    if not first:
                        first = row_id
                        await tx.execute("UPDATE liaison_hits SET hit = ? WHERE id = ?", (first, row_id))
                numbers.append(first)
            return numbers
        return await self._store.writer.write(op) if hits else []

    async def forget_old_hits(self) -> int:
        """Hits are kept no longer than the hit-query rule's retention."""
        days = self._rule(MessageKind.QUERY_HIT, None).retention_days

        async def op(tx: Txn) -> int:
            await tx.execute("DELETE FROM liaison_hits WHERE at_ms < ?", (now_ms() - days * 86_400_000,))
            row = await tx.fetchone("SELECT changes()")
            return int(row[0]) if row else 0
        return await self._store.writer.write(op)

    async def ask(self, req: local_pb2.DisclosureAskRequest) -> int:
        """Queue a disclosure request to one holder of a hit, about the pseudonym that hit there."""
        pairs = {str(c): bytes(p) for p, c in await self._store.db.fetchall(
            "SELECT pseudonym, contact FROM liaison_hits WHERE hit = ? ORDER BY id", (req.hit_id,))}
        if not pairs:
            raise RequestError("unknown_hit", _("there is no hit {hit_id} (erased, or never a hit)")
                                                .format(hit_id=req.hit_id))
        contacts = list(pairs)
        contact = req.contact_id or contacts[0]
        holder = self._bundle.org_of_contact(contact) if contact in pairs else None
        if holder is None:
            raise RequestError("unknown_contact", _("hit {hit_id} has contacts {contacts}, not {contact!r}")
                                                    .format(hit_id=req.hit_id, contacts=contacts, contact=contact))
        rule = self._rule(MessageKind.DISCLOSURE_REQUEST, holder.kind)
        self._check_grounds(rule, req.purpose, req.legal_basis, req.file_ref)
        if not req.fields:
            raise RequestError("missing_fields", _("say which fields you ask for (--field)"))
        intent = {"pseudonym": pairs[contact].hex(), "fields": sorted(set(req.fields)), "file_ref": req.file_ref,
                  "legal_basis": req.legal_basis}
        key = wire.new_token()

        async def op(tx: Txn) -> int:
            return await self._store.add_intent_txn(tx, key, MessageKind.DISCLOSURE_REQUEST, holder.id, rule.id,
                                                    intent, now_ms())

        outbox_id = await self._store.writer.write(op)
        log.info("disclosure.asked", outbox_id=outbox_id, holder=holder.id, rule=rule.id)
        self._outbox.kick()
        return outbox_id

    async def build_request(self, row: OutboxRow) -> envelope_pb2.EnvelopeBody:
        i = row.intent
        return envelope_pb2.EnvelopeBody(
            kind=envelope_pb2.MESSAGE_KIND_DISCLOSURE_REQUEST, sender=self._org_id, recipients=[row.recipient],
            purpose=envelope_pb2.PURPOSE_DISCLOSURE_ON_REQUEST, rule_id=row.rule_id,
            disclosure_request=summary_pb2.DisclosureRequest(
                subject_pseudonym=bytes.fromhex(i["pseudonym"]), requested=i["fields"], file_ref=i["file_ref"],
                legal_basis=i["legal_basis"]))

