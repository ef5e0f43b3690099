"""Deciding a request against a loaded bundle.

Semantics (docs/policy.md): default deny; any matching deny refuses; the
rule the sender invokes must exist, allow, match the request and let through
every field present; purpose, lawful basis, agreement, retention and
time-to-live come from that rule alone.

Cost: the invoked rule is found by id and the denies by (kind, sender) in
precomputed indexes, so a decision never scans the bundle; the field check
is one set difference against the rule's precomputed leaf set.
"""

from __future__ import annotations

from dataclasses import dataclass

from olievlek.errors import PolicyDenied
from olievlek.identity import OrgId
from olievlek.v1 import broker_pb2

from .model import Effect, Organisation, Relation, Rule


@dataclass(frozen=True, slots=True)
class Request:
    """What a decision needs: shapes and enum values, never payload contents."""

    kind: str
    sender: OrgId
    recipients: tuple[OrgId, ...]
    rule_id: str
    present_fields: frozenset[str] = frozenset()
    phase: str | None = None
    risk_level: str | None = None
    concerns: frozenset[str] = frozenset()
    contacts: tuple[tuple[str, str], ...] = ()  # (field path, contact id)
    purpose: str | None = None
    # The recipients hold the pseudonym with coverage for this sender: the broker sets this after
    # its directory lookup; policy tests take it as given.
    holder_asserted: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str  # "allowed" or a refusal reason code
    message: str
    rule: Rule | None = None
    field: str = ""
    considered: tuple[str, ...] = ()

    @property
    def rule_id(self) -> str:
        return self.rule.id if self.rule else ""

    def raise_if_denied(self) -> None:
        if not self.allowed:
            code = (broker_pb2.REFUSAL_CODE_UNKNOWN_RECIPIENT if self.reason == "unknown_recipient"
                    else broker_pb2.REFUSAL_CODE_POLICY_DENIED)
            raise PolicyDenied(self.message, refusal_code=code, field=self.field, rule_id=self.rule_id)


def _deny(reason: str, message: str, rule: Rule | None = None, field: str = "",
          considered: tuple[str, ...] = ()) -> Decision:
    return Decision(False, reason, message, rule, field, considered)


def mismatch(rule: Rule, req: Request, recipients: list[Organisation]) -> tuple[str, str] | None:
    """Why a rule does not match a request (reason, explanation), or None."""
    if req.kind not in rule.kinds:
        return "rule_mismatch", f"rule {rule.id!r} covers {', '.join(sorted(rule.kinds))}, not {req.kind}"
    if req.sender not in rule.senders:
        return "rule_mismatch", f"rule {rule.id!r} is for senders {rule.sender_spec}, not {req.sender}"
    if rule.recipient_kinds is not None:
        for org in recipients:
            if org.kind not in rule.recipient_kinds:
                return "rule_mismatch", (f"rule {rule.id!r} sends to {', '.join(sorted(rule.recipient_kinds))}, "
                                         f"not to {org.kind} {org.id}")
    if rule.relation == Relation.GROUP_MEMBERS:
        for org in recipients:
            if org.id not in rule.group_members:
                return "rule_mismatch", f"rule {rule.id!r} sends to members of {rule.recipient_group}, not {org.id}"
    c = rule.conditions
    for name, allowed, value in (("phase", c.phase, req.phase), ("risk_level", c.risk_level, req.risk_level)):
        if allowed is not None and value not in allowed:
            return "condition_unmet", f"rule {rule.id!r} requires {name} in {sorted(allowed)}, got {value}"
    if c.concerns_any is not None and not (c.concerns_any & req.concerns):
        return "condition_unmet", f"rule {rule.id!r} requires a concern among {sorted(c.concerns_any)}"
    return None


class Engine:
    """Indexed decisions over one bundle's rules and organisations."""

    def __init__(self, orgs: dict[OrgId, Organisation], rules: dict[str, Rule]) -> None:
        self.orgs = orgs
        self.rules = rules
        self._denies: dict[tuple[str, OrgId], tuple[Rule, ...]] = {}
        acc: dict[tuple[str, OrgId], list[Rule]] = {}
        for rule in rules.values():
            if rule.effect != Effect.DENY:
                continue
            for kind in rule.kinds:
                for sender in rule.senders:
                    acc.setdefault((kind, sender), []).append(rule)
        self._denies = {k: tuple(v) for k, v in acc.items()}

    def decide(self, req: Request) -> Decision:
        orgs = self.orgs
        sender = orgs.get(req.sender)
        if sender is None:
            return _deny("unknown_sender", f"organisation {req.sender!r} is not in the bundle; default deny",
                         field="sender")
        recipients = []
        for rid in req.recipients:
            org = orgs.get(rid)
            if org is None:
                return _deny("unknown_recipient", f"recipient {rid!r} is not an organisation in the bundle",
                              field="recipients")
            recipients.append(org)
        invoked = self.rules.get(req.rule_id)
        to_directory = invoked is not None and invoked.relation == Relation.DIRECTORY
        if to_directory and recipients:
            return _deny("directory_recipient", f"rule {req.rule_id!r} is answered by the broker's directory; "
                         "the message must name no recipient", invoked, "recipients", (req.rule_id,))
        if not recipients and not to_directory:
            return _deny("no_recipient", "the request names no recipient", field="recipients")
        for deny in self._denies.get((req.kind, req.sender), ()):
            # A deny refuses when it matches for any one recipient.
            if any(mismatch(deny, req, [org]) is None for org in recipients):
                return _deny("denied_by_rule", f"deny rule {deny.id!r} ({deny.source}) matches this request",
                             deny, considered=(deny.id,))
        rule = self.rules.get(req.rule_id)
        if rule is None or not rule.allows:
            return _deny("no_such_rule", f"invoked rule {req.rule_id!r} is not an allow rule of this bundle; "
                         "default deny", field="rule_id", considered=(req.rule_id,))
        why = mismatch(rule, req, recipients)
        if why is not None:
            return _deny(why[0], f"{why[1]}; default deny", rule, considered=(rule.id,))
        extra = req.present_fields - rule.leaves[req.kind]
        if extra:
            first = min(extra)
            return _deny("field_not_allowed",
                         f"field {first} is not let through by rule {rule.id!r} "
                         f"(it allows: {', '.join(rule.fields)})", rule, first, (rule.id,))
        if req.purpose is not None and req.purpose != rule.purpose:
            return _deny("purpose_mismatch", f"rule {rule.id!r} is for purpose {rule.purpose}, not {req.purpose}",
                         rule, "purpose", (rule.id,))
        if rule.relation == Relation.PSEUDONYM_HOLDER and not req.holder_asserted:
            return _deny("not_held", f"rule {rule.id!r} routes only to a holder of the pseudonym whose "
                         "directory entry covers this sender", rule, "recipients", (rule.id,))
        contacts = sender.contact_ids
        for path, cid in req.contacts:
            if cid not in contacts:
                return _deny("contact_not_registered",
                             f"contact id {cid!r} is not registered for {sender.id} in the bundle",
                             rule, path, (rule.id,))
        return Decision(True, "allowed", f"allowed by rule {rule.id!r}", rule, considered=(rule.id,))
