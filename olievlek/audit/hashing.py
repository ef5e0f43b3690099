"""RFC 9162 section 2.1.1 hashing: SHA-256 with 0x00 / 0x01 domain separation."""

from __future__ import annotations

import hashlib
from typing import NewType

LeafHash = NewType("LeafHash", bytes)
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> LeafHash:
    return LeafHash(hashlib.sha256(b"\x00" + data).digest())


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()
