"""Loading a bundle directory into a checked, resolved ``Bundle``.

A bundle is ``bundle.yaml`` (name, version, expiry), ``organisations.yaml``,
``groups.yaml`` (optional), ``rules.yaml`` and ``tests/*.yaml``, plus
``signatures.json`` written by ``olievlek policy sign``. Every error carries
file:line:col. Field names are checked against the protobuf descriptor of
each rule's message kinds: a rule cannot name a field the wire does not have.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from olievlek import voprf
from olievlek.directory import SLOT_BYTES
from olievlek.errors import ConfigError, IdentityError
from olievlek.identity import OrgId, OrgIdentity, OrgKind, parse_identity
from olievlek.kinds import BY_NAME, MessageKind, leaf_paths
from olievlek.report_check import DEFAULT_MAX_COUNT, MonitoringLimits, parse_quarter

from . import source
from .diagnostics import BundleError, Diagnostic
from .engine import Decision, Engine, Request
from .model import (
    DEFAULT_MAX_COVERAGE,
    Agreement,
    Budget,
    Conditions,
    Contact,
    DirectoryPolicy,
    Effect,
    EntryLimit,
    Group,
    OperatorKey,
    Organisation,
    PseudonymisationPolicy,
    QueryBudget,
    Relation,
    Rule,
    WitnessKey,
    WitnessPolicy,
)

FILES = ("bundle.yaml", "organisations.yaml", "groups.yaml", "rules.yaml")
# Bundle formats (bundle.yaml ``format``; absent means 1):
# 1: data_protection_officers as bare org ids - they now grant nothing (an id does not say which kind of
#    certificate it means); 2: data_protection_officers as full identities (monitor/vvsg), ``witnesses:``.
FORMAT = 2
SIGNATURES = "signatures.json"
_MAILBOX = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$")
_PHONE = re.compile(r"^\+[1-9][0-9]{7,14}$")


def bundle_name(directory: Path) -> str:
    """The ``name`` in a bundle's ``bundle.yaml`` (without loading or verifying the bundle): what names the
    federation, in its log's origin for one.

    Raises:
        ConfigError: no readable name.
    """
    try:
        name = yaml.safe_load((directory / "bundle.yaml").read_text()).get("name")
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise ConfigError(f"cannot read the name of the bundle in {directory}: {exc}") from None
    if not isinstance(name, str) or not name:
        raise ConfigError(f"the bundle in {directory} has no name")
    return name


def bundle_files(directory: Path) -> list[Path]:
    """The files a bundle's digest covers: its YAML and its tests, not its signatures."""
    files = [directory / f for f in FILES if (directory / f).exists()]
    files += sorted((directory / "tests").glob("*.yaml")) if (directory / "tests").is_dir() else []
    return files


def digest_of(directory: Path) -> str:
    """SHA-256 over (relative path, SHA-256 of content) of every covered file, in order."""
    h = hashlib.sha256()
    for path in bundle_files(directory):
        h.update(path.relative_to(directory).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@dataclass
class Bundle:
    """A loaded bundle: the single source of truth for routing, flows, tests and reports."""

    directory: Path
    name: str
    version: int
    expires: dt.datetime
    digest: str
    orgs: dict[OrgId, Organisation]
    groups: dict[str, Group]
    rules: dict[str, Rule]
    file_ref_pattern: str | None
    pseudonymisation: PseudonymisationPolicy = field(
        default_factory=lambda: PseudonymisationPolicy({}, {}))
    data_protection_officers: frozenset[str] = frozenset()
    directory_policy: DirectoryPolicy = field(default_factory=DirectoryPolicy)
    regions: dict[OrgId, str] = field(default_factory=dict)  # organisation -> monitoring region (a group)
    # member -> (group, aggregator): cooperations that combine their figures before suppression
    combined: dict[OrgId, tuple[str, OrgId]] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)
    format: int = FORMAT
    witnesses: WitnessPolicy = field(default_factory=WitnessPolicy)
    monitoring: MonitoringLimits = field(default_factory=MonitoringLimits)

    def __post_init__(self) -> None:
        self.engine = Engine(self.orgs, self.rules)
        self._by_nis = {nis: o for o in self.orgs.values() for nis in o.serves}

    @classmethod
    def load(cls, directory: Path) -> Bundle:
        """Load and check a bundle directory.

        Raises:
            BundleError: with every error found, each with file:line:col.
        """
        return _Loader(directory).load()

    def decide(self, req: Request) -> Decision:
        return self.engine.decide(req)

    def org(self, org_id: str) -> Organisation | None:
        return self.orgs.get(OrgId(org_id))

    def cooperation_rule(self, member: str, aggregator: str) -> str:
        """The rule under which a cooperation's member may send its figures to the aggregator ("": none)."""
        for rule in self.rules.values():
            if rule.allows and MessageKind.REPORT_AGGREGATE in rule.kinds and rule.relation == Relation.GROUP_MEMBERS \
                    and self.decide(
                    Request(MessageKind.REPORT_AGGREGATE, OrgId(member), (OrgId(aggregator),), rule.id,
                            frozenset({"year", "quarter", "cells"}))).allowed:
                return rule.id
        return ""

    def member(self, identity: OrgIdentity) -> bool:
        """Whether this exact identity (kind and id) belongs to the federation: an organisation of the
        bundle with that kind, or a witness it names."""
        org = self.orgs.get(identity.org_id)
        return (org is not None and org.kind == identity.kind) or str(identity) in self.witnesses.identities

    def identity_of(self, org_id: str) -> str | None:
        """The full identity ("kind/id") of an organisation of the bundle, or None."""
        org = self.orgs.get(OrgId(org_id))
        return f"{org.kind.value}/{org.id}" if org is not None else None

    def is_officer(self, identity: OrgIdentity) -> bool:
        """A data-protection officer of the federation (reads every audit event): exact identity only."""
        return str(identity) in self.data_protection_officers

    def org_of_contact(self, contact_id: str) -> Organisation | None:
        return next((o for o in self.orgs.values() if contact_id in o.contact_ids), None)

    def org_serving(self, nis: int) -> Organisation | None:
        return self._by_nis.get(nis)

    def rules_for(self, kind: str, sender: str, recipient_kind: OrgKind) -> list[Rule]:
        """Allow rules this sender could invoke for a kind and recipient kind."""
        return [
            r for r in self.rules.values()
            if r.allows and kind in r.kinds and OrgId(sender) in r.senders
            and (r.recipient_kinds is None or recipient_kind in r.recipient_kinds)
        ]

    @property
    def expired(self) -> bool:
        return dt.datetime.now(dt.UTC) >= self.expires


def _through_aggregator(group: str, aggregator: OrgId, members: frozenset[OrgId], orgs: dict[OrgId, Organisation],
                        where: str) -> Rule:
    """The deny rule a cooperation that combines its figures implies: its members (other than the aggregator)
    never send ``report.aggregate`` to a monitor. Generated, so no bundle author can forget it."""
    return Rule(
        id=f"{group}-reports-through-aggregator",
        description=f"Generated from monitoring.combined: members of {group} report to the monitor only "
                    f"through {aggregator}, suppressed as the group's.",
        effect=Effect.DENY, kinds=frozenset({MessageKind.REPORT_AGGREGATE}), senders=members - {aggregator},
        sender_spec=f"members of {group} but {aggregator}", recipient_kinds=frozenset({OrgKind.MONITOR}),
        relation=Relation.DECLARED, recipient_group=None, group_members=frozenset(), conditions=Conditions(),
        fields=(), leaves={}, purpose="monitoring_and_evaluation", lawful_basis="",
        agreement=Agreement(False, frozenset(), frozenset()), retention_days=0, ttl_hours=0, source=where,
        generated=True)


class _Loader:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.errors: list[Diagnostic] = []

    def _file(self, name: str, definition: str, required: bool = True) -> source.SourceFile | None:
        path = self.dir / name
        if not path.exists():
            if required:
                self.errors.append(Diagnostic(name, 0, 0, "missing file"))
            return None
        parsed = source.parse(path, name)
        if isinstance(parsed, Diagnostic):
            self.errors.append(parsed)
            return None
        schema_errors = source.validate(parsed, definition)
        self.errors += schema_errors
        return None if schema_errors else parsed

    def load(self) -> Bundle:
        if not self.dir.is_dir():
            raise BundleError([Diagnostic(str(self.dir), 0, 0, "not a bundle directory")])
        meta = self._file("bundle.yaml", "bundle")
        orgs_src = self._file("organisations.yaml", "organisations")
        groups_src = self._file("groups.yaml", "groups", required=False)
        rules_src = self._file("rules.yaml", "rules")
        if self.errors or meta is None or orgs_src is None or rules_src is None:
            raise BundleError(self.errors)
        orgs = self._orgs(orgs_src)
        groups = self._groups(groups_src, orgs) if groups_src else {}
        rules = self._rules(rules_src, orgs, groups)
        if self.errors:
            raise BundleError(self.errors)
        m = meta.data
        expires = dt.datetime.strptime(m["expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        pattern = m.get("file_ref_pattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise BundleError([meta.diag(f"file_ref_pattern is not a regular expression: {exc}",
                                             "file_ref_pattern")]) from None
        ps = m.get("pseudonymisation", {"domains": {}, "budgets": {}})
        pseudonymisation = PseudonymisationPolicy(
            {d: frozenset(OrgKind(k) for k in kinds) for d, kinds in ps["domains"].items()},
            {OrgKind(k): Budget(b["per_hour"], b["per_day"], b["batch"]) for k, b in ps["budgets"].items()},
            self._operator_keys(meta),
        )
        fmt = int(m.get("format", 1))
        warnings: list[Diagnostic] = []
        dpos = self._officers(meta, fmt, orgs, warnings)
        witnesses = self._witnesses(meta, fmt)
        d = m.get("directory", {"register_phases": ["follow_up"], "query_budgets": {}})
        directory = DirectoryPolicy(
            frozenset(d["register_phases"]),
            {OrgKind(k): QueryBudget(b["per_day"], b["per_month"], b["batch"]) for k, b in d["query_budgets"].items()},
            int(d.get("disclosure_expiry_hours", 336)),
            {OrgKind(k): EntryLimit(x["entries"], x["per_hour"], x["per_day"])
             for k, x in d.get("entry_limits", {}).items()},
            int(d.get("max_coverage", DEFAULT_MAX_COVERAGE)),
        )
        regions: dict[OrgId, str] = {}
        for i, gid in enumerate(m.get("monitoring", {"regions": []})["regions"]):
            if gid not in groups:
                raise BundleError([meta.diag(f"region {gid!r} is not a group", "monitoring", "regions", i)])
            for member in sorted(groups[gid].members):
                if member in regions:
                    raise BundleError([meta.diag(f"{member} is in regions {regions[member]!r} and {gid!r}; regions "
                                                 "must not overlap", "monitoring", "regions", i)])
                regions[member] = gid
        combined: dict[OrgId, tuple[str, OrgId]] = {}
        for i, c in enumerate(m.get("monitoring", {}).get("combined", [])):
            members = groups[c["group"]].members if c["group"] in groups else frozenset()
            if OrgId(c["aggregator"]) not in members:
                raise BundleError([meta.diag(f"aggregator {c['aggregator']!r} is not a member of group {c['group']!r}",
                                             "monitoring", "combined", i)])
            odd = sorted(str(x) for x in members if x not in orgs or orgs[x].kind != OrgKind.MUNICIPALITY)
            if odd:
                raise BundleError([meta.diag(f"group {c['group']!r} combines figures of {odd}, which are not "
                                             "municipalities", "monitoring", "combined", i)])
            for member in members:
                if member in combined:
                    raise BundleError([meta.diag(f"{member} combines its figures in two groups", "monitoring",
                                                 "combined", i)])
                combined[member] = (c["group"], OrgId(c["aggregator"]))
            deny = _through_aggregator(c["group"], OrgId(c["aggregator"]), members, orgs,
                                       f"{meta.name}:{meta.at('monitoring', 'combined', i)[0]}")
            rules[deny.id] = deny
        mon = m.get("monitoring", {})
        limits = MonitoringLimits(int(mon.get("max_count", DEFAULT_MAX_COUNT)),
                                  parse_quarter(mon["first_quarter"]) if "first_quarter" in mon else 0)
        bundle = Bundle(self.dir, m["name"], int(m["version"]), expires, digest_of(self.dir), orgs, groups, rules,
                        pattern, pseudonymisation, dpos, directory, regions, combined, warnings, fmt, witnesses,
                        limits)
        for member, (group, aggregator) in sorted(combined.items()):
            if member != aggregator and not bundle.cooperation_rule(member, aggregator):
                raise BundleError([meta.diag(f"no rule lets {member} send its figures to {aggregator}, the "
                                             f"aggregator of {group}", "monitoring", "combined")])
        return bundle

    def _officers(self, meta: source.SourceFile, fmt: int, orgs: dict[OrgId, Organisation],
                  warnings: list[Diagnostic]) -> frozenset[str]:
        """Data-protection officers as full identities of the bundle's organisations (format 2)."""
        entries = list(meta.data.get("data_protection_officers", []))
        if fmt < FORMAT:
            if entries:
                warnings.append(meta.diag(
                    f"bundle format {fmt}: data_protection_officers {entries} grant nothing until the bundle is "
                    f"re-signed in format {FORMAT} with full identities (e.g. monitor/vvsg)",
                    "data_protection_officers", severity="warning"))
            return frozenset()
        out: set[str] = set()
        for i, entry in enumerate(entries):
            try:
                identity = parse_identity(entry)
            except IdentityError as exc:
                raise BundleError([meta.diag(f"data protection officer {entry!r}: {exc.message}",
                                             "data_protection_officers", i)]) from None
            org = orgs.get(identity.org_id)
            if org is None or org.kind != identity.kind:
                raise BundleError([meta.diag(f"data protection officer {entry!r} is not an organisation of this "
                                             "bundle with that kind", "data_protection_officers", i)])
            out.add(str(identity))
        return frozenset(out)

    def _operator_keys(self, meta: source.SourceFile) -> tuple[OperatorKey, ...]:
        """``pseudonymisation.keys``: per domain and epoch, K1 + K2 and the two share holders' identities."""
        out: list[OperatorKey] = []
        for i, k in enumerate(meta.data.get("pseudonymisation", {}).get("keys", [])):
            where = ("pseudonymisation", "keys", i)
            holders: list[str] = []
            for share in ("share1", "share2"):
                try:
                    identity = parse_identity(k[share])
                except IdentityError as exc:
                    raise BundleError([meta.diag(f"{share} {k[share]!r}: {exc.message}", *where)]) from None
                if identity.kind != OrgKind.PSEUDONYMISER:
                    raise BundleError([meta.diag(f"{share} {k[share]!r} is not a pseudonymiser identity", *where)])
                holders.append(str(identity))
            if holders[0] == holders[1]:
                raise BundleError([meta.diag(f"one operator {holders[0]} holds both shares", *where)])
            key = bytes.fromhex(k["key"])
            if not voprf.is_element(key):
                raise BundleError([meta.diag("key is not a valid group element", *where)])
            if any(x.domain == k["domain"] and x.epoch == k["epoch"] for x in out):
                raise BundleError([meta.diag(f"domain {k['domain']} epoch {k['epoch']} has two keys", *where)])
            out.append(OperatorKey(k["domain"], int(k["epoch"]), key, (holders[0], holders[1])))
        return tuple(out)

    def _witnesses(self, meta: source.SourceFile, fmt: int) -> WitnessPolicy:
        w = meta.data.get("witnesses")
        if w is None:
            return WitnessPolicy()
        if fmt < FORMAT:
            raise BundleError([meta.diag(f"witnesses need bundle format {FORMAT}", "witnesses")])
        members = tuple(WitnessKey(x["identity"], x["key_name"], bytes.fromhex(x["key"])) for x in w["members"])
        for i, x in enumerate(members):
            if [y.identity for y in members].count(x.identity) > 1:
                raise BundleError([meta.diag(f"witness {x.identity} is named twice", "witnesses", "members", i)])
        if members and w["quorum"] > len(members):
            raise BundleError([meta.diag(f"witness quorum {w['quorum']} is more than the {len(members)} witnesses "
                                         "named", "witnesses", "quorum")])
        return WitnessPolicy(int(w["quorum"]), members) if members else WitnessPolicy()

    def _orgs(self, src: source.SourceFile) -> dict[OrgId, Organisation]:
        orgs: dict[OrgId, Organisation] = {}
        nis_owner: dict[int, str] = {}
        contact_owner: dict[str, str] = {}
        for i, o in enumerate(src.data["organisations"]):
            oid = OrgId(o["id"])
            if oid in orgs:
                self.errors.append(src.diag(f"organisation {oid!r} is declared twice", "organisations", i, "id"))
            for j, nis in enumerate(o.get("serves", [])):
                if nis in nis_owner:
                    self.errors.append(src.diag(f"NIS code {nis} is served by both {nis_owner[nis]} and {oid}",
                                                "organisations", i, "serves", j))
                nis_owner[nis] = oid
            contacts = []
            for j, c in enumerate(o.get("contacts", [])):
                pattern = _MAILBOX if c["channel"] == "mailbox" else _PHONE
                if not pattern.fullmatch(c["address"]):
                    self.errors.append(src.diag(
                        f"contact {c['id']!r}: {c['channel']} address is not well-formed "
                        f"({'name@domain' if c['channel'] == 'mailbox' else '+<country><number>'})",
                        "organisations", i, "contacts", j, "address"))
                if len(c["id"].encode()) > SLOT_BYTES:
                    self.errors.append(src.diag(f"contact id {c['id']!r} is longer than a directory answer slot "
                                                f"({SLOT_BYTES} bytes)", "organisations", i, "contacts", j, "id"))
                if c["id"] in contact_owner:
                    self.errors.append(src.diag(f"contact id {c['id']!r} is already registered for "
                                                f"{contact_owner[c['id']]}", "organisations", i, "contacts", j, "id"))
                contact_owner[c["id"]] = oid
                contacts.append(Contact(c["id"], c["channel"], c["address"]))
            if OrgKind(o["kind"]) == OrgKind.MUNICIPALITY and not o.get("serves"):
                self.errors.append(src.diag(f"municipality {oid!r} serves no NIS code", "organisations", i))
            orgs[oid] = Organisation(oid, OrgKind(o["kind"]), tuple(o.get("serves", [])), tuple(contacts))
        return orgs

    def _groups(self, src: source.SourceFile, orgs: dict[OrgId, Organisation]) -> dict[str, Group]:
        raw = {g["id"]: (i, g["members"]) for i, g in enumerate(src.data["groups"])}
        for gid, (i, members) in raw.items():
            if gid in orgs:
                self.errors.append(src.diag(f"group id {gid!r} is also an organisation id", "groups", i, "id"))
            for j, m in enumerate(members):
                if m not in orgs and m not in raw:
                    self.errors.append(src.diag(f"group {gid!r}: unknown member {m!r}", "groups", i, "members", j))
        expanded: dict[str, frozenset[OrgId]] = {}

        def expand(gid: str, stack: tuple[str, ...]) -> frozenset[OrgId]:
            if gid in stack:
                i = raw[gid][0]
                self.errors.append(src.diag(f"group cycle: {' -> '.join((*stack, gid))}", "groups", i, "members"))
                return frozenset()
            if gid not in expanded:
                out: set[OrgId] = set()
                for m in raw[gid][1]:
                    if m in raw:
                        out |= expand(m, (*stack, gid))
                    elif m in orgs:
                        out.add(OrgId(m))
                expanded[gid] = frozenset(out)
            return expanded[gid]

        return {gid: Group(gid, expand(gid, ())) for gid in raw}

    def _rules(self, src: source.SourceFile, orgs: dict[OrgId, Organisation],
               groups: dict[str, Group]) -> dict[str, Rule]:
        rules: dict[str, Rule] = {}
        for i, r in enumerate(src.data["rules"]):
            rule = self._rule(src, i, r, orgs, groups)
            if rule is None:
                continue
            if rule.id in rules:
                self.errors.append(src.diag(f"rule id {rule.id!r} is used twice", "rules", i, "id"))
            rules[rule.id] = rule
        return rules

    def _rule(self, src: source.SourceFile, i: int, r: dict[str, Any], orgs: dict[OrgId, Organisation],
              groups: dict[str, Group]) -> Rule | None:
        before = len(self.errors)
        at = ("rules", i)
        sender = r.get("sender", {})
        recipient = r.get("recipient", {})
        for j, oid in enumerate(sender.get("orgs", [])):
            if oid not in orgs:
                self.errors.append(src.diag(f"rule {r['id']!r}: unknown sender organisation {oid!r}",
                                            *at, "sender", "orgs", j))
        for part, spec in (("sender", sender), ("recipient", recipient)):
            if "group" in spec and spec["group"] not in groups:
                self.errors.append(src.diag(f"rule {r['id']!r}: unknown group {spec['group']!r}", *at, part, "group"))
        relation = Relation(recipient.get("relation", Relation.DECLARED))
        rgroup = recipient.get("group") or sender.get("group")
        if relation == Relation.GROUP_MEMBERS and rgroup is None:
            self.errors.append(src.diag(f"rule {r['id']!r}: relation group_members needs a group", *at, "recipient"))
        leaves = self._fields(src, i, r)
        conditions = r.get("conditions", {})
        for kind in r["kinds"]:
            unconditioned = (MessageKind.ALERT_SIGNAL, MessageKind.DISCLOSURE_RESPONSE)
            if conditions and not BY_NAME[kind].condition_path and kind not in unconditioned:
                self.errors.append(src.diag(f"rule {r['id']!r}: {kind} carries no phase, risk or concerns to "
                                            "condition on", *at, "conditions"))
        if len(self.errors) > before:
            return None
        kinds = set(sender.get("kinds", []))
        ids = set(sender.get("orgs", []))
        members = groups[sender["group"]].members if "group" in sender else None
        senders = frozenset(
            o.id for o in orgs.values()
            if (not kinds or o.kind in kinds) and (not ids or o.id in ids) and (members is None or o.id in members)
        )
        spec = " ".join(f"{k}={','.join(sorted(v)) if isinstance(v, list) else v}" for k, v in sorted(sender.items()))
        agreement = r.get("agreement", {"required": False})
        line, _ = src.at(*at)
        return Rule(
            id=r["id"], description=r.get("description", ""), effect=Effect(r["effect"]),
            kinds=frozenset(MessageKind(k) for k in r["kinds"]),
            senders=senders, sender_spec=spec or "any",
            recipient_kinds=frozenset(OrgKind(k) for k in recipient["kinds"]) if "kinds" in recipient else None,
            relation=relation, recipient_group=rgroup,
            group_members=groups[rgroup].members if rgroup in groups else frozenset(),
            conditions=Conditions(*(frozenset(conditions[k]) if k in conditions else None
                                    for k in ("phase", "risk_level", "concerns_any"))),
            fields=tuple(r.get("fields", [])), leaves=leaves, purpose=r.get("purpose", ""),
            lawful_basis=r.get("lawful_basis", ""),
            agreement=Agreement(bool(agreement["required"]),
                                frozenset(OrgKind(k) for k in agreement.get("recipient_kinds", [])),
                                frozenset(agreement.get("purposes", []))),
            retention_days=int(r.get("retention_days", 0)), ttl_hours=int(r.get("ttl_hours", 0)),
            source=f"{src.name}:{line}",
        )

    def _fields(self, src: source.SourceFile, i: int, r: dict[str, Any]) -> dict[str, frozenset[str]]:
        out: dict[str, frozenset[str]] = {}
        for kind in r["kinds"]:
            info = BY_NAME[kind]
            all_leaves = leaf_paths(info.descriptor)
            allowed: set[str] = set()
            for j, name in enumerate(r.get("fields", [])):
                covered = [p for p in all_leaves if p == name or p.startswith(name + ".")]
                if not covered:
                    self.errors.append(src.diag(
                        f"rule {r['id']!r}: field {name!r} does not exist in the payload of {kind} "
                        f"({info.descriptor.name})", "rules", i, "fields", j))
                elif not info.may_carry_pseudonym and "pseudonym" in name:
                    self.errors.append(src.diag(f"rule {r['id']!r}: {kind} must never carry a pseudonym",
                                                "rules", i, "fields", j))
                allowed.update(covered)
            out[kind] = frozenset(allowed)
        return out
