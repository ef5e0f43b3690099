"""Why a request is allowed or denied: every rule considered, and why it matched or not."""

from __future__ import annotations

from dataclasses import dataclass

from .engine import Decision, Request, mismatch
from .loader import Bundle


@dataclass(frozen=True, slots=True)
class Step:
    rule: str
    effect: str
    verdict: str  # "matches" | "does not match" | "not for this sender/kind"
    why: str


def explain(bundle: Bundle, req: Request) -> tuple[Decision, list[Step]]:
    decision = bundle.decide(req)
    recipients = [o for r in req.recipients if (o := bundle.orgs.get(r)) is not None]
    steps = []
    for rule in sorted(bundle.rules.values(), key=lambda r: (r.allows, r.id)):
        if req.kind not in rule.kinds or req.sender not in rule.senders:
            if rule.id == req.rule_id:
                why = mismatch(rule, req, recipients)
                steps.append(Step(rule.id, rule.effect, "does not match", why[1] if why else ""))
            continue
        why = mismatch(rule, req, recipients)
        verdict = "matches" if why is None else "does not match"
        note = why[1] if why else ("invoked" if rule.id == req.rule_id else "not invoked")
        if why is None and rule.allows and rule.id == req.rule_id:
            extra = sorted(req.present_fields - rule.leaves[req.kind])
            note = f"invoked; lets through {len(rule.leaves[req.kind])} field paths" + (
                f"; not: {', '.join(extra)}" if extra else "")
        steps.append(Step(rule.id, rule.effect, verdict, note))
    return decision, steps
