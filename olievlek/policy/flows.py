"""Who can learn which field from whom: the memorandum's flow diagram, derived from the
rules that are enforced, and the difference a bundle change makes to it."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from olievlek.identity import OrgKind

from .loader import Bundle
from .model import Relation, Rule


@dataclass(frozen=True, slots=True, order=True)
class Flow:
    """One field that can reach one kind of recipient from one kind of sender via one rule."""

    sender: str  # organisation kind, or kind@group
    recipient: str
    kind: str
    field: str
    rule: str
    lawful_basis: str
    agreement: str  # "" or what the person's agreement is required for

    def words(self) -> str:
        return f"{self.sender} → {self.recipient}: {self.field} ({self.kind}) via rule {self.rule}"


def _agreement(rule: Rule) -> str:
    a = rule.agreement
    if not a.required:
        return ""
    kinds = ", ".join(sorted(a.recipient_kinds)) or "all recipients"
    purposes = ", ".join(sorted(a.purposes)) or "all purposes"
    return f"required for {kinds} ({purposes})"


def flows(bundle: Bundle) -> list[Flow]:
    """Every (sender kind, recipient kind or group, field) an allow rule opens, minus what denies close."""
    out: set[Flow] = set()
    for rule in bundle.rules.values():
        if not rule.allows:
            continue
        sender_kinds = sorted({bundle.orgs[o].kind.value for o in rule.senders})
        if rule.relation == Relation.GROUP_MEMBERS and rule.recipient_group:
            recipients = [f"{k}@{rule.recipient_group}" for k in sorted(rule.recipient_kinds or {"any"})]
        else:
            recipients = sorted(rule.recipient_kinds or [k.value for k in OrgKind])
        for kind in sorted(rule.kinds):
            for field in sorted(rule.leaves[kind]):
                for s in sender_kinds:
                    for r in recipients:
                        if _denied(bundle, kind, s, r.split("@")[0]):
                            continue
                        out.add(Flow(s, r, kind, field, rule.id, rule.lawful_basis, _agreement(rule)))
    return sorted(out)


def _denied(bundle: Bundle, kind: str, sender_kind: str, recipient_kind: str) -> bool:
    """A deny without conditions closes the flow for every sender of that kind."""
    for deny in bundle.rules.values():
        if deny.allows or kind not in deny.kinds:
            continue
        if deny.conditions.phase or deny.conditions.risk_level or deny.conditions.concerns_any:
            continue
        senders_of_kind = {o.id for o in bundle.orgs.values() if o.kind == sender_kind}
        if senders_of_kind <= deny.senders and (deny.recipient_kinds is None
                                                or recipient_kind in deny.recipient_kinds):
            return True
    return False


def mermaid(items: list[Flow]) -> str:
    """A Mermaid flowchart: one edge per (sender, recipient, rule) listing its fields."""
    edges: dict[tuple[str, str, str, str], list[str]] = {}
    for f in items:
        edges.setdefault((f.sender, f.recipient, f.rule, f.kind), []).append(f.field)
    lines = ["flowchart LR"]
    nodes = sorted({f.sender for f in items} | {f.recipient for f in items})
    ids = {n: f"n{i}" for i, n in enumerate(nodes)}
    lines += [f'  {ids[n]}["{n}"]' for n in nodes]
    for (s, r, rule, kind), fields in sorted(edges.items()):
        label = f"{rule} ({kind}): {', '.join(fields)}"
        lines.append(f'  {ids[s]} -->|"{label}"| {ids[r]}')
    return "\n".join(lines) + "\n"


def dot(items: list[Flow]) -> str:
    edges: dict[tuple[str, str, str, str], list[str]] = {}
    for f in items:
        edges.setdefault((f.sender, f.recipient, f.rule, f.kind), []).append(f.field)
    lines = ["digraph flows {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=9];']
    for (s, r, rule, kind), fields in sorted(edges.items()):
        label = f"{rule} ({kind})\\n" + "\\n".join(fields)
        lines.append(f'  "{s}" -> "{r}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(items: list[Flow]) -> str | None:
    """SVG drawn by Graphviz ``dot`` without network access; None when dot is not installed."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    result = subprocess.run([exe, "-Tsvg"], input=dot(items), capture_output=True, text=True, check=True,
                            timeout=60)
    return result.stdout


def diff(old: list[Flow], new: list[Flow]) -> tuple[list[Flow], list[Flow]]:
    """(opened, closed): flows the new bundle adds and removes, ignoring which rule carries them
    only when the same field still reaches the same recipient some other way."""
    def key(f: Flow) -> tuple[str, str, str, str, str]:
        return (f.sender, f.recipient, f.kind, f.field, f.rule)

    old_k, new_k = {key(f): f for f in old}, {key(f): f for f in new}
    return ([new_k[k] for k in sorted(new_k.keys() - old_k.keys())],
            [old_k[k] for k in sorted(old_k.keys() - new_k.keys())])
