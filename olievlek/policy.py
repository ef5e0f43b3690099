"""The data-sharing rule bundle and the broker's decision (minimal first format).

Format (YAML)::

    version: 1
    organisations:
      - {id: gent, kind: municipality, serves: [44021], contacts: [gent-livc]}
    rules:
      - id: move-alert-municipal
        effect: allow                 # or deny
        kind: alert.move
        sender_kind: municipality
        recipient_kind: municipality
        fields: [summary.subject_pseudonym, summary.phase, ...]

Semantics: default deny. Any matching deny refuses. The rule the sender
invokes must exist, be an allow, match the request, and let through every
field present in the payload (a listed path also covers the fields below it).
The policy issue replaces this format with the full language.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from olievlek.errors import ConfigError, PolicyDenied
from olievlek.identity import ID_PATTERN, OrgId, OrgKind
from olievlek.kinds import BY_NAME
from olievlek.v1 import broker_pb2


@dataclass(frozen=True, slots=True)
class Organisation:
    id: OrgId
    kind: OrgKind
    serves: tuple[int, ...]  # NIS codes
    contacts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    effect: str  # "allow" | "deny"
    kind: str
    sender_kind: OrgKind
    recipient_kind: OrgKind
    fields: frozenset[str]

    def matches(self, kind: str, sender_kind: OrgKind, recipient_kinds: Iterable[OrgKind]) -> bool:
        return (
            self.kind == kind
            and self.sender_kind == sender_kind
            and all(k == self.recipient_kind for k in recipient_kinds)
        )

    def lets_through(self, path: str) -> bool:
        parts = path.split(".")
        return any(".".join(parts[:i]) in self.fields for i in range(1, len(parts) + 1))


@dataclass(frozen=True, slots=True)
class Request:
    """What the broker decides on: no payload values, only their shape."""

    kind: str
    sender: OrgId
    recipients: tuple[OrgId, ...]
    rule_id: str
    present_fields: tuple[str, ...]
    contact_id: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    rule: Rule
    recipients: tuple[Organisation, ...]


def _need(doc: dict[str, Any], key: str, where: str) -> Any:
    if key not in doc:
        raise ConfigError(f"{where}: missing key {key!r}")
    return doc[key]


def _kind(value: Any, where: str) -> OrgKind:
    try:
        return OrgKind(value)
    except ValueError:
        raise ConfigError(f"{where}: unknown organisation kind {value!r}") from None


class Bundle:
    """A loaded, checked rule bundle."""

    def __init__(self, version: int, orgs: list[Organisation], rules: list[Rule], digest: str):
        self.version = version
        self.digest = digest
        self.orgs = {o.id: o for o in orgs}
        self.rules = {r.id: r for r in rules}
        self._by_nis: dict[int, Organisation] = {}
        for o in orgs:
            for nis in o.serves:
                if nis in self._by_nis:
                    raise ConfigError(f"NIS code {nis} is served by both {self._by_nis[nis].id} and {o.id}")
                self._by_nis[nis] = o
        self._denies = [r for r in rules if r.effect == "deny"]

    @classmethod
    def load(cls, path: Path) -> Bundle:
        try:
            raw = path.read_bytes()
            doc = yaml.safe_load(raw)
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read policy bundle {path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: a bundle is a mapping")
        orgs = [
            cls._org(o, f"{path}: organisations[{i}]") for i, o in enumerate(doc.get("organisations", []))
        ]
        rules = [cls._rule(r, f"{path}: rules[{i}]") for i, r in enumerate(doc.get("rules", []))]
        if len({r.id for r in rules}) != len(rules):
            raise ConfigError(f"{path}: rule ids must be unique")
        return cls(int(_need(doc, "version", str(path))), orgs, rules, hashlib.sha256(raw).hexdigest())

    @staticmethod
    def _org(doc: dict[str, Any], where: str) -> Organisation:
        oid = str(_need(doc, "id", where))
        if not ID_PATTERN.fullmatch(oid):
            raise ConfigError(f"{where}: org id {oid!r} is not an identifier token")
        contacts = tuple(str(c) for c in doc.get("contacts", []))
        for c in contacts:
            if not ID_PATTERN.fullmatch(c):
                raise ConfigError(f"{where}: contact id {c!r} is not an identifier token")
        return Organisation(
            OrgId(oid), _kind(_need(doc, "kind", where), where),
            tuple(int(n) for n in doc.get("serves", [])), contacts,
        )

    @staticmethod
    def _rule(doc: dict[str, Any], where: str) -> Rule:
        effect = _need(doc, "effect", where)
        if effect not in ("allow", "deny"):
            raise ConfigError(f"{where}: effect must be allow or deny, not {effect!r}")
        kind = _need(doc, "kind", where)
        if kind not in BY_NAME:
            raise ConfigError(f"{where}: unknown message kind {kind!r}")
        return Rule(
            str(_need(doc, "id", where)), effect, kind,
            _kind(_need(doc, "sender_kind", where), where),
            _kind(_need(doc, "recipient_kind", where), where),
            frozenset(str(f) for f in doc.get("fields", [])),
        )

    def org(self, org_id: str) -> Organisation | None:
        return self.orgs.get(OrgId(org_id))

    def org_serving(self, nis: int) -> Organisation | None:
        return self._by_nis.get(nis)

    def rules_for(self, kind: str, sender_kind: OrgKind, recipient_kind: OrgKind) -> list[Rule]:
        """Allow rules a sender could invoke for this kind and recipient kind."""
        return [
            r for r in self.rules.values()
            if r.effect == "allow" and r.matches(kind, sender_kind, [recipient_kind])
        ]

    def decide(self, req: Request) -> Decision:
        """Decide a request; default deny.

        Raises:
            PolicyDenied: naming the rule considered and the field at fault.
        """
        sender = self.orgs.get(req.sender)
        if sender is None:
            raise PolicyDenied(f"organisation {req.sender!r} is not in the bundle; default deny")
        recipients: list[Organisation] = []
        for rid in req.recipients:
            org = self.orgs.get(rid)
            if org is None:
                raise PolicyDenied(
                    f"recipient {rid!r} is not an organisation in the bundle",
                    refusal_code=broker_pb2.REFUSAL_CODE_UNKNOWN_RECIPIENT, field="recipients",
                )
            recipients.append(org)
        if not recipients:
            raise PolicyDenied("no recipients", field="recipients")
        rkinds = [o.kind for o in recipients]
        for deny in self._denies:
            if deny.matches(req.kind, sender.kind, rkinds):
                raise PolicyDenied(
                    f"deny rule {deny.id!r} matches {req.kind} from {sender.kind} to {rkinds[0]}",
                    rule_id=deny.id,
                )
        rule = self.rules.get(req.rule_id)
        if rule is None or rule.effect != "allow":
            raise PolicyDenied(
                f"invoked rule {req.rule_id!r} is not an allow rule of this bundle; default deny",
                rule_id=req.rule_id, field="rule_id",
            )
        if not rule.matches(req.kind, sender.kind, rkinds):
            raise PolicyDenied(
                f"rule {rule.id!r} allows {rule.kind} from {rule.sender_kind} to {rule.recipient_kind}, "
                f"not {req.kind} from {sender.kind} to {', '.join(sorted(set(rkinds)))}; default deny",
                rule_id=rule.id,
            )
        for path in req.present_fields:
            if not rule.lets_through(path):
                raise PolicyDenied(
                    f"field {path} is not let through by rule {rule.id!r} "
                    f"(it allows: {', '.join(sorted(rule.fields))})",
                    rule_id=rule.id, field=path,
                )
        if req.contact_id is not None and req.contact_id not in sender.contacts:
            raise PolicyDenied(
                f"contact id {req.contact_id!r} is not registered for {sender.id} in the bundle",
                rule_id=rule.id, field="summary.contact_id",
            )
        return Decision(rule, tuple(recipients))
