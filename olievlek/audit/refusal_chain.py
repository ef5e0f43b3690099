"""The hash chain of an aggregated refusal leaf: SHA-256(chain ‖ env), from 32 zero bytes, in order.

The broker extends it with each refused input's ``env`` (``envelope.leaf_env``); the sender, which kept the
``env`` of each of its refused inputs and the place the broker gave it, recomputes it to see that the one
leaf covers exactly its refusals - and nobody without the inputs can test a guess against it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

CHAIN_START = bytes(32)


def extend_chain(chain: bytes, env: bytes) -> bytes:
    return hashlib.sha256(chain + env).digest()


def chain_over(envs: Iterable[bytes]) -> bytes:
    chain = CHAIN_START
    for env in envs:
        chain = extend_chain(chain, env)
    return chain
