"""The authorisation tables of docs/authorisation.md, rendered from the code that enforces them.

``python -m tests.authorisation_tables`` prints them; ``test_authorisation.py`` fails when the document and
the code disagree.
"""

from __future__ import annotations

from olievlek.broker.access import MATRIX
from olievlek.node.access import ALLOWED, role_name

from olievlek.identity import OrgKind


def broker_table() -> str:
    lines = ["| RPC | kinds that may call | exact identity in the bundle | a refusal is | what |",
             "|---|---|---|---|---|"]
    for rpc, a in MATRIX.items():
        kinds = "any (the policy decides)" if a.kinds is None else ", ".join(
            k.value for k in OrgKind if k in a.kinds)
        if a.officers:
            kinds = f"{kinds}, as a data-protection officer of the bundle"
        lines.append(f"| `{rpc}` | {kinds} | {'required' if a.member else 'not required'} | "
                     f"{'an audit leaf (recorded)' if a.recorded else 'a gRPC status with a refusal code'} | "
                     f"{a.what} |")
    return "\n".join(lines)


def node_table() -> str:
    roles = sorted({r for allowed in ALLOWED.values() for r in allowed})
    lines = ["| local operation | " + " | ".join(role_name(r) for r in roles) + " |",
             "|---|" + "---|" * len(roles)]
    for op, allowed in ALLOWED.items():
        lines.append(f"| `{op}` | " + " | ".join("yes" if r in allowed else "-" for r in roles) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(broker_table())
    print()
    print(node_table())
