"""Versions never go back: the highest bundle and root versions a service has accepted.

The broker is not the only place a rollback can happen: a node or a pseudonymiser handed an older, validly
signed bundle would enforce rules that were since tightened, and removing the newest ``<n>.root.json`` makes
the older root - and its keys, perhaps retired because one leaked - trusted again. So every service keeps
the highest versions it accepted in its own store (never next to the files an attacker would edit) and
refuses anything lower, as python-tuf does with its trusted root version.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .signing import PolicySignatureError

_FORMAT = ">QQ"


class RollbackError(PolicySignatureError):
    """A bundle or root older than one this service accepted before; the message says which."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """The highest versions accepted so far (0: none yet)."""

    bundle: int = 0
    root: int = 0

    def encode(self) -> bytes:
        return struct.pack(_FORMAT, self.bundle, self.root)

    @classmethod
    def decode(cls, raw: bytes | None) -> Accepted:
        if not raw:
            return cls()
        bundle, root = struct.unpack(_FORMAT, raw)
        return cls(int(bundle), int(root))


def accept(floor: Accepted, bundle_version: int, root_version: int, *, bundle_name: str = "") -> Accepted:
    """The new floor once ``bundle_version`` under ``root_version`` is accepted.

    Raises:
        RollbackError: either version is lower than the floor.
    """
    if root_version < floor.root:
        raise RollbackError(f"root version {root_version} is older than root version {floor.root} accepted "
                            "before (was a newer root file removed?): refused as a rollback")
    if bundle_version < floor.bundle:
        name = f"bundle {bundle_name} " if bundle_name else "bundle "
        raise RollbackError(f"{name}version {bundle_version} is older than version {floor.bundle} accepted "
                            "before: refused as a rollback")
    return Accepted(max(floor.bundle, bundle_version), max(floor.root, root_version))
