"""A bundle's own test cases (``tests/*.yaml``) and rule coverage, like ``opa test --coverage``.

A case is a request and the expected decision: allow or deny, and for a deny
optionally the reason code, the field and the rule named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from olievlek.identity import OrgId

from . import source
from .diagnostics import BundleError, Diagnostic
from .engine import Decision, Request
from .loader import Bundle
from .model import Relation


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    where: str
    passed: bool
    decision: Decision
    problem: str


@dataclass(frozen=True, slots=True)
class SuiteResult:
    cases: list[CaseResult]
    covered: frozenset[str]
    rules: frozenset[str]

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]

    @property
    def coverage(self) -> float:
        return len(self.covered & self.rules) / len(self.rules) if self.rules else 1.0


def request_from(doc: dict[str, Any]) -> Request:
    """A policy request from its YAML form (tests and ``policy explain``)."""
    return Request(
        kind=doc["kind"], sender=OrgId(doc["sender"]), recipients=tuple(OrgId(r) for r in doc["recipients"]),
        rule_id=doc["rule"], present_fields=frozenset(doc.get("fields", [])), phase=doc.get("phase"),
        risk_level=doc.get("risk_level"), concerns=frozenset(doc.get("concerns", [])),
        contacts=tuple(("contact_id", c) for c in doc.get("contacts", [])), purpose=doc.get("purpose"),
        holder_asserted=doc.get("relation") == Relation.PSEUDONYM_HOLDER,
    )


def _check(expect: dict[str, Any], d: Decision) -> str:
    want = expect["decision"] == "allow"
    if d.allowed != want:
        return f"expected {expect['decision']}, got {'allow' if d.allowed else 'deny'} ({d.reason}: {d.message})"
    for key, got in (("reason", d.reason), ("field", d.field), ("rule", d.rule_id)):
        if key in expect and expect[key] != got:
            return f"expected {key} {expect[key]!r}, got {got!r}"
    return ""


def run(bundle: Bundle) -> SuiteResult:
    """Run every case under the bundle's ``tests/``.

    Raises:
        BundleError: a test file does not parse or does not follow the schema.
    """
    results: list[CaseResult] = []
    covered: set[str] = set()
    errors: list[Diagnostic] = []
    for path in sorted((bundle.directory / "tests").glob("*.yaml")):
        name = path.relative_to(bundle.directory).as_posix()
        parsed = source.parse(path, name)
        if isinstance(parsed, Diagnostic):
            errors.append(parsed)
            continue
        schema_errors = source.validate(parsed, "tests")
        if schema_errors:
            errors += schema_errors
            continue
        for i, case in enumerate(parsed.data["tests"]):
            decision = bundle.decide(request_from(case["request"]))
            covered.update(decision.considered if decision.rule is not None else ())
            problem = _check(case["expect"], decision)
            line, _ = parsed.at("tests", i)
            results.append(CaseResult(case["name"], f"{name}:{line}", not problem, decision, problem))
    if errors:
        raise BundleError(errors)
    return SuiteResult(results, frozenset(covered), frozenset(bundle.rules))
