"""Who may call which broker RPC: the authorisation matrix, as data.

Every RPC of the ``Broker`` service has one row (a test fails when one is missing), and
``docs/authorisation.md`` is checked against this table. A caller is an exact identity, kind and id,
from its TLS client certificate. Two ways a call can end short:

* **recorded** calls (writes: envelopes, batches, queries, evaluation reports, cosignatures) decide
  every input and write the refusal as an audit leaf visible to the caller, with a refusal code;
* **read** calls (heads, proofs, events, directory entries, the delivery stream) end in a gRPC status
  with the stable refusal code in the trailing metadata ``olievlek-refusal-code``, a log line and a
  counter - not a leaf (a leaf per read would let any caller grow the log).

Authentication failures end the same way as read refusals, for every RPC: without a verified identity
there is nobody to show a leaf to.
"""

from __future__ import annotations

from dataclasses import dataclass

from olievlek.identity import OrgIdentity, OrgKind
from olievlek.policy import Bundle
from olievlek.v1 import broker_pb2

REFUSAL_METADATA = "olievlek-refusal-code"

# Organisations that run a node: they send, receive, query and read their own audit events.
NODE_KINDS = frozenset({OrgKind.MUNICIPALITY, OrgKind.FEDERAL_LIAISON, OrgKind.JUSTICE_HOUSE,
                        OrgKind.PRISON_SERVICE, OrgKind.MONITOR})


@dataclass(frozen=True, slots=True)
class Access:
    """One RPC's row. ``kinds`` None: any kind may try (the policy decides, as a recorded refusal)."""

    kinds: frozenset[OrgKind] | None
    member: bool  # the exact identity must be an organisation or witness of the enforced bundle
    recorded: bool  # refusals are audit leaves (writes) rather than a status (reads)
    what: str  # for the matrix in the docs
    officers: bool = False  # only the bundle's data-protection officers (exact identities)


MATRIX: dict[str, Access] = {
    "Send": Access(None, False, True, "an envelope: every outcome is a leaf (a non-member is refused by policy)"),
    "SendBatch": Access(None, False, True, "up to 128 envelopes, each answered and recorded on its own"),
    "Query": Access(None, False, True, "a hit/no-hit query (the policy lets only querying kinds ask)"),
    "ReportEvaluations": Access(frozenset({OrgKind.PSEUDONYMISER}), True, True,
                                "an operator's signed evaluation counts"),
    "PostCosignature": Access(frozenset({OrgKind.WITNESS}), True, True,
                              "a witness's cosignature (only witnesses the bundle names, with its key)"),
    "Subscribe": Access(NODE_KINDS, True, False, "the caller's own delivery stream"),
    "DirectoryEntries": Access(NODE_KINDS, True, False, "the caller's own directory entries, paged"),
    "AuditEvents": Access(NODE_KINDS, True, False,
                          "events the caller is party to (exact identity); all for a data-protection officer"),
    "AuditLeaves": Access(NODE_KINDS | {OrgKind.WITNESS}, True, False, "leaf hashes, paged"),
    "GetHead": Access(NODE_KINDS | {OrgKind.WITNESS}, True, False, "the latest (or latest cosigned) signed head"),
    "GetConsistency": Access(NODE_KINDS | {OrgKind.WITNESS}, True, False, "a consistency proof"),
    "GetInclusion": Access(NODE_KINDS | {OrgKind.WITNESS}, True, False, "an inclusion proof"),
    "GetBundle": Access(NODE_KINDS, True, False, "a signed bundle this broker enforced, by digest"),
    "DirectoryReport": Access(NODE_KINDS, True, False, "per-holder directory activity and outlier flags; "
                              "data-protection officers only", officers=True),
}

# Page caps of the list calls: a caller asking for more gets this many and a cursor.
MAX_AUDIT_EVENTS = 1000
MAX_AUDIT_LEAVES = 10_000
MAX_DIRECTORY_ENTRIES = 1000


class Denied(Exception):
    """A caller may not make this call; ``code`` is the stable refusal code."""

    def __init__(self, code: broker_pb2.RefusalCode.ValueType, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        return broker_pb2.RefusalCode.Name(self.code).removeprefix("REFUSAL_CODE_")


def check(rpc: str, identity: OrgIdentity, bundle: Bundle) -> None:
    """Raises ``Denied`` unless ``identity`` may call ``rpc`` under ``bundle``."""
    access = MATRIX[rpc]
    if access.member and not bundle.member(identity):
        raise Denied(broker_pb2.REFUSAL_CODE_NOT_A_MEMBER,
                     f"{identity} is not an organisation or witness of the enforced bundle "
                     f"({bundle.name} v{bundle.version})")
    if access.kinds is not None and identity.kind not in access.kinds:
        raise Denied(broker_pb2.REFUSAL_CODE_WRONG_KIND, f"a {identity.kind} may not call {rpc}")
    if access.officers and not bundle.is_officer(identity):
        raise Denied(broker_pb2.REFUSAL_CODE_NOT_AN_OFFICER,
                     f"{identity} is not a data-protection officer of {bundle.name}; only they may call {rpc}")
