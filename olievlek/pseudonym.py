"""Subject pseudonyms: 32 bytes, an epoch byte then 31 bytes of PRF output.

INTERIM: until the oblivious two-operator pseudonymisation lands (issue 5),
the PRF is HMAC-SHA256 under a federation-wide key held in every node's
configuration. That means any node operator can compute pseudonyms on its own;
it is a placeholder with the right shape, not the promised protection. The
broker never holds this key, so it still sees only pseudonyms.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NewType

Pseudonym = NewType("Pseudonym", bytes)

PSEUDONYM_LEN = 32
INTERIM_EPOCH = 0
_CONTEXT = b"olievlek/v1/interim-pseudonym\x00"


class InterimHmacPseudonymiser:
    """HMAC-SHA256 pseudonyms under a shared key (placeholder for the VOPRF)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("interim pseudonym key must be at least 32 bytes")
        self._key = key

    def pseudonymise(self, normalised_identifier: str) -> Pseudonym:
        mac = hmac.new(self._key, _CONTEXT + normalised_identifier.encode(), hashlib.sha256).digest()
        return Pseudonym(bytes([INTERIM_EPOCH]) + mac[: PSEUDONYM_LEN - 1])
