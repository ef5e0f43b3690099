"""The bundle's values: organisations, groups, rules. Frozen and fully resolved at load:
group membership is expanded, sender specs become org-id sets, field names become the
set of leaf paths each message kind lets through."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from olievlek.identity import OrgId, OrgKind
from olievlek.kinds import MessageKind

# directory: consumed or answered by the broker's reference directory; the message names no recipient.
RELATIONS = ("declared", "group_members", "pseudonym_holder", "any", "directory")


@dataclass(frozen=True, slots=True)
class Contact:
    id: str
    channel: str  # "mailbox" | "phone"
    address: str


@dataclass(frozen=True, slots=True)
class Organisation:
    id: OrgId
    kind: OrgKind
    serves: tuple[int, ...]  # NIS codes
    contacts: tuple[Contact, ...]

    @property
    def contact_ids(self) -> frozenset[str]:
        return frozenset(c.id for c in self.contacts)


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    members: frozenset[OrgId]  # expanded through nested groups


@dataclass(frozen=True, slots=True)
class Agreement:
    """The person's agreement as a safeguard on top of the lawful basis."""

    required: bool
    recipient_kinds: frozenset[OrgKind]
    purposes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Conditions:
    """Allowed payload values; ``None`` means no condition."""

    phase: frozenset[str] | None = None
    risk_level: frozenset[str] | None = None
    concerns_any: frozenset[str] | None = None

    def covers(self, other: Conditions) -> bool:
        """Every request matching ``other`` also matches self."""
        return all(
            mine is None or (theirs is not None and theirs <= mine)
            for mine, theirs in (
                (self.phase, other.phase), (self.risk_level, other.risk_level),
                (self.concerns_any, other.concerns_any),
            )
        )

    def overlaps(self, other: Conditions) -> bool:
        return all(
            a is None or b is None or bool(a & b)
            for a, b in (
                (self.phase, other.phase), (self.risk_level, other.risk_level),
                (self.concerns_any, other.concerns_any),
            )
        )


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Relation(StrEnum):
    """How a rule's recipients relate to the sender or the message (the bundle's ``recipient.relation``)."""

    DECLARED = "declared"  # any organisation of the recipient kinds the sender names
    GROUP_MEMBERS = "group_members"  # members of the rule's group
    PSEUDONYM_HOLDER = "pseudonym_holder"  # a holder of the pseudonym in the broker's directory
    ANY = "any"
    DIRECTORY = "directory"  # the broker's directory itself (registrations), no recipient


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    description: str
    effect: Effect
    kinds: frozenset[MessageKind]
    senders: frozenset[OrgId]  # resolved from sender kinds/orgs/group
    sender_spec: str  # how it was written, for explanations and flows
    recipient_kinds: frozenset[OrgKind] | None
    relation: Relation
    recipient_group: str | None
    group_members: frozenset[OrgId]  # members of recipient_group (or the sender group)
    conditions: Conditions
    fields: tuple[str, ...]  # as written
    leaves: dict[str, frozenset[str]]  # message kind -> leaf paths let through
    purpose: str
    lawful_basis: str
    agreement: Agreement
    retention_days: int
    ttl_hours: int
    source: str  # file:line
    generated: bool = False  # implied by another setting (monitoring.combined), not written as a rule

    @property
    def allows(self) -> bool:
        return self.effect == Effect.ALLOW


@dataclass(frozen=True, slots=True)
class Budget:
    """Evaluations an organisation may ask per hour and per day, and per request."""

    per_hour: int
    per_day: int
    batch: int


@dataclass(frozen=True, slots=True)
class OperatorKey:
    """The combined public key K1 + K2 of one domain and epoch, and who holds each share."""

    domain: str  # "routing" or "monitoring"
    epoch: int
    key: bytes  # 32-byte ristretto255 element
    holders: tuple[str, str]  # full identities ("pseudonymiser/<id>") of share 1 and share 2

    def holder(self, share: int) -> str:
        return self.holders[share - 1]


@dataclass(frozen=True, slots=True)
class PseudonymisationPolicy:
    """Which organisation kinds may evaluate in which domain, their budgets, and the operators' keys."""

    domains: dict[str, frozenset[OrgKind]]
    budgets: dict[OrgKind, Budget]
    keys: tuple[OperatorKey, ...] = ()

    def key(self, domain: str, epoch: int) -> OperatorKey | None:
        return next((k for k in self.keys if k.domain == domain and k.epoch == epoch), None)

    def allows(self, kind: OrgKind, domain: str) -> bool:
        return kind in self.domains.get(domain, frozenset())

    def budget(self, kind: OrgKind) -> Budget:
        return self.budgets.get(kind, Budget(0, 0, 1))


@dataclass(frozen=True, slots=True)
class QueryBudget:
    """Pseudonyms an organisation may query per UTC day and month, and per query."""

    per_day: int
    per_month: int
    batch: int


@dataclass(frozen=True, slots=True)
class WitnessKey:
    """A witness the bundle names: its identity, its C2SP key name and its Ed25519 cosigning key."""

    identity: str  # "witness/<id>"
    key_name: str
    key: bytes  # 32-byte Ed25519 public key


@dataclass(frozen=True, slots=True)
class WitnessPolicy:
    """Whose cosignatures count, and how many a head needs. No members: the bundle names none."""

    quorum: int = 0
    members: tuple[WitnessKey, ...] = ()

    def key_of(self, identity: str) -> WitnessKey | None:
        return next((w for w in self.members if w.identity == identity), None)

    @property
    def identities(self) -> frozenset[str]:
        return frozenset(w.identity for w in self.members)


@dataclass(frozen=True, slots=True)
class EntryLimit:
    """Directory entries one holder may keep, and new entries it may register per hour and per UTC day."""

    entries: int
    per_hour: int
    per_day: int


# For a holder kind the bundle gives no limit: enough for a large city's follow-ups, far from a flood.
DEFAULT_ENTRY_LIMIT = EntryLimit(entries=2000, per_hour=200, per_day=1000)
DEFAULT_MAX_COVERAGE = 8


@dataclass(frozen=True, slots=True)
class DirectoryPolicy:
    """The reference directory: which phases are registered, query budgets, disclosure expiry, what one
    holder may register, and how many coverage statements an entry keeps."""

    register_phases: frozenset[str] = frozenset({"follow_up"})
    query_budgets: dict[OrgKind, QueryBudget] = field(default_factory=dict)
    disclosure_expiry_hours: int = 336
    entry_limits: dict[OrgKind, EntryLimit] = field(default_factory=dict)
    max_coverage: int = DEFAULT_MAX_COVERAGE

    def budget(self, kind: OrgKind) -> QueryBudget:
        return self.query_budgets.get(kind, QueryBudget(0, 0, 1))

    def entry_limit(self, kind: OrgKind) -> EntryLimit:
        return self.entry_limits.get(kind, DEFAULT_ENTRY_LIMIT)
