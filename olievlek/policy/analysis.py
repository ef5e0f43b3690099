"""Static analysis of a bundle: shadowed, redundant and conflicting rules.

A rule's *scope* is the set of requests it matches: message kinds by senders by
recipient kinds by relation by conditions. Scopes are compared as sets:
- an allow whose scope lies inside a deny's is *shadowed* (it can never take effect);
- an allow whose scope and fields lie inside another allow's with the same
  purpose and lawful basis is *redundant*;
- an allow and a deny whose scopes overlap without one containing the other
  *conflict*: some requests of the allow are refused, which is easy to miss.
"""

from __future__ import annotations

from itertools import combinations

from .diagnostics import Diagnostic
from .loader import Bundle
from .model import Effect, Relation, Rule


def _kinds_cover(a: Rule, b: Rule) -> bool:
    """Every recipient kind ``b`` can send to, ``a`` covers too."""
    if a.recipient_kinds is None:
        return True
    return b.recipient_kinds is not None and b.recipient_kinds <= a.recipient_kinds


def _kinds_overlap(a: Rule, b: Rule) -> bool:
    if a.recipient_kinds is None or b.recipient_kinds is None:
        return True
    return bool(a.recipient_kinds & b.recipient_kinds)


def covers(a: Rule, b: Rule) -> bool:
    """Every request ``b`` matches, ``a`` matches too."""
    return (b.kinds <= a.kinds and b.senders <= a.senders and _kinds_cover(a, b)
            and (a.effect == Effect.DENY or a.relation in (Relation.ANY, b.relation))
            and a.conditions.covers(b.conditions))


def overlaps(a: Rule, b: Rule) -> bool:
    return (bool(a.kinds & b.kinds) and bool(a.senders & b.senders) and _kinds_overlap(a, b)
            and a.conditions.overlaps(b.conditions))


def _where(rule: Rule) -> tuple[str, int]:
    file, _, line = rule.source.partition(":")
    return file, int(line or 0)


def analyse(bundle: Bundle) -> list[Diagnostic]:
    """Warnings about rules that cannot take effect, duplicate others, or partly collide."""
    out: list[Diagnostic] = []
    allows = [r for r in bundle.rules.values() if r.allows]
    denies = [r for r in bundle.rules.values() if not r.allows]
    for allow in allows:
        file, line = _where(allow)
        if not allow.senders:
            out.append(Diagnostic(file, line, 1, f"rule {allow.id!r} matches no organisation of the bundle",
                                  "warning"))
        for deny in denies:
            if covers(deny, allow):
                out.append(Diagnostic(file, line, 1, f"rule {allow.id!r} is shadowed by deny rule {deny.id!r} "
                                      f"({deny.source}): it can never allow anything", "warning"))
            elif overlaps(deny, allow) and not deny.generated:  # a generated deny narrows allow rules on purpose
                out.append(Diagnostic(file, line, 1, f"rule {allow.id!r} conflicts with deny rule {deny.id!r} "
                                      f"({deny.source}) on part of its requests", "warning"))
    for a, b in combinations(allows, 2):
        for small, big in ((a, b), (b, a)):
            if (covers(big, small) and small.purpose == big.purpose and small.lawful_basis == big.lawful_basis
                    and all(small.leaves[k] <= big.leaves[k] for k in small.kinds)):
                file, line = _where(small)
                out.append(Diagnostic(file, line, 1, f"rule {small.id!r} is redundant: rule {big.id!r} "
                                      f"({big.source}) allows everything it does", "warning"))
                break
    return out
