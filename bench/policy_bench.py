"""Policy decisions per second: olievlek's indexed engine vs cedarpy vs a bare dict lookup.

Usage: python bench/policy_bench.py [--decisions N] [--seed S]

Generated bundles of 10, 100 and 1,000 allow rules, one per sender (as in a
federation of hundreds of municipalities), plus a deny per 100 rules. The
decision input is an already-parsed request: kind, sender, recipients, the
invoked rule, condition values and the set of present fields; the field check
is included. Measured in the same run:
- olievlek: ``Bundle.decide`` (indexed; never scans the bundle);
- cedarpy: an equivalent policy set (per rule: principal, action, recipient kind,
  phase condition and ``containsAll`` over the allowed fields), pre-parsed
  ``PolicySet``/``Entities`` handles and the batch API, its fastest path;
- floor: ``rules[rule_id]``, a dict lookup with no checks.
Prints decisions/s, the ratio to cedarpy, the 1,000-vs-10 slowdown and the ratio to the floor.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import cedarpy
import yaml
from common import parse_args, report

from olievlek.identity import OrgId
from olievlek.policy import Bundle, Request

FIELDS = ["summary.subject_pseudonym", "summary.phase", "summary.concerns", "summary.risk_level",
          "summary.month_opened", "summary.contact_id"]
PRESENT = frozenset(["summary.subject_pseudonym", "summary.phase", "summary.concerns", "summary.risk_level",
                     "summary.month_opened.year", "summary.month_opened.month", "summary.contact_id"])


def make_bundle(directory: Path, n: int) -> None:
    orgs = [{"id": f"m{i:04d}", "kind": "municipality", "serves": [10000 + i],
             "contacts": [{"id": f"m{i:04d}-livc", "channel": "mailbox", "address": f"livc@m{i:04d}.be"}]}
            for i in range(n + 1)]
    rules = [{
        "id": f"r{i:04d}", "effect": "allow", "kinds": ["alert.move"], "sender": {"orgs": [f"m{i:04d}"]},
        "recipient": {"kinds": ["municipality"], "relation": "declared"},
        "conditions": {"phase": ["pre_analysis", "follow_up"]}, "fields": FIELDS,
        "purpose": "continuity_of_follow_up", "lawful_basis": "GDPR 6(1)(e); law 30-07-2018 art. 4",
        "retention_days": 730, "ttl_hours": 720,
    } for i in range(n)]
    rules += [{"id": f"d{i:04d}", "effect": "deny", "kinds": ["alert.move"], "sender": {"orgs": [f"m{i:04d}"]},
               "recipient": {"kinds": ["monitor"]}} for i in range(0, n, 100)]
    directory.mkdir(parents=True)
    (directory / "bundle.yaml").write_text(yaml.safe_dump(
        {"name": "bench", "version": 1, "expires": "2099-01-01T00:00:00Z"}))
    (directory / "organisations.yaml").write_text(yaml.safe_dump({"organisations": orgs}))
    (directory / "rules.yaml").write_text(yaml.safe_dump({"rules": rules}))


def requests(n: int, count: int, rng: random.Random) -> list[Request]:
    out = []
    for _ in range(count):
        i = rng.randrange(n)
        out.append(Request(kind="alert.move", sender=OrgId(f"m{i:04d}"), recipients=(OrgId(f"m{n:04d}"),),
                           rule_id=f"r{i:04d}", present_fields=PRESENT, phase="follow_up", risk_level="medium",
                           concerns=frozenset({"right_wing"})))
    return out


def time_ours(bundle: Bundle, reqs: list[Request]) -> float:
    decide = bundle.decide
    t0 = time.perf_counter()
    for r in reqs:
        d = decide(r)
    elapsed = time.perf_counter() - t0
    assert d.allowed, d.message
    return len(reqs) / elapsed


def time_floor(bundle: Bundle, reqs: list[Request]) -> float:
    rules = bundle.rules
    t0 = time.perf_counter()
    for r in reqs:
        rule = rules[r.rule_id]
    elapsed = time.perf_counter() - t0
    assert rule is not None
    return len(reqs) / elapsed


def cedar_policies(n: int) -> str:
    allowed = ", ".join(f'"{f}"' for f in sorted(PRESENT))
    parts = []
    for i in range(n):
        parts.append(
            f'permit(principal == Org::"m{i:04d}", action == Action::"alert.move", resource) when {{ '
            f'context.recipient_kind == "municipality" && ["pre_analysis", "follow_up"].contains(context.phase) '
            f'&& [{allowed}].containsAll(context.fields) }};'
        )
    parts += [f'forbid(principal == Org::"m{i:04d}", action == Action::"alert.move", resource) when {{ '
              f'context.recipient_kind == "monitor" }};' for i in range(0, n, 100)]
    return "\n".join(parts)


def time_cedar(n: int, reqs: list[Request]) -> float:
    policies = cedarpy.PolicySet.from_str(cedar_policies(n))
    entities = cedarpy.Entities.from_json_str("[]")
    batch = [{"principal": f'Org::"{r.sender}"', "action": 'Action::"alert.move"',
              "resource": f'Org::"{r.recipients[0]}"',
              "context": {"recipient_kind": "municipality", "phase": r.phase, "fields": sorted(r.present_fields)}}
             for r in reqs]
    t0 = time.perf_counter()
    results = cedarpy.is_authorized_batch(batch, policies, entities)
    elapsed = time.perf_counter() - t0
    assert all(res.allowed for res in results), results[0]
    return len(reqs) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=200_000)
    ap.add_argument("--cedar-decisions", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=20261129)
    args = parse_args(ap, {"decisions": 2000, "cedar_decisions": 200})
    print(f"seed {args.seed}; {args.decisions} decisions per size (cedarpy: {args.cedar_decisions})")
    rng = random.Random(args.seed)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (10, 100, 1000):
            make_bundle(Path(tmp) / f"b{n}", n)
            bundle = Bundle.load(Path(tmp) / f"b{n}")
            reqs = requests(n, args.decisions, rng)
            ours = max(time_ours(bundle, reqs) for _ in range(3))
            floor = max(time_floor(bundle, reqs) for _ in range(3))
            cedar = time_cedar(n, reqs[: args.cedar_decisions])
            results[n] = ours
            print(f"{n:>5} rules: olievlek {ours:>12,.0f}/s   cedarpy {cedar:>10,.0f}/s   dict floor {floor:>12,.0f}/s"
                  f"   ours/cedarpy {ours / cedar:>7.1f}x   floor/ours {floor / ours:>5.1f}x")
    print(f"1,000-rule vs 10-rule slowdown: {results[10] / results[1000]:.2f}x (goal <= 1.5x)")
    report("policy", args.smoke, decisions_per_s={str(n): round(r) for n, r in results.items()},
           ratio=round(results[10] / results[1000], 3))


if __name__ == "__main__":
    main()
