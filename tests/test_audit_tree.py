"""The Merkle tree against known values, a naive RFC 9162 reference, exhaustively and by property.

Known values: the empty tree's root, and the 8-leaf Certificate Transparency reference tree
(leaves as in RFC 6962 test data, used by transparency-dev/merkle's rfc6962 tests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from olievlek.audit import tree
from olievlek.audit.hashing import EMPTY_ROOT, leaf_hash, node_hash
from olievlek.audit.verify import root_from_inclusion, verify_consistency, verify_inclusion
from olievlek.errors import VerificationError

CT_LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f"]]


# --- naive reference, written from RFC 9162 section 2.1.1, 2.1.3.1, 2.1.4.1 ---------------------
def mth(d: Sequence[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(d[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: Sequence[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    def sub(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if b else [mth(d)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return [*sub(m, d[:k], b), mth(d[k:])]
        return [*sub(m - k, d[k:], False), mth(d[:k])]
    return sub(m, d, True)


class MemoryNodes:
    """The tree's node store in memory, filled the way the log fills its table."""

    def __init__(self) -> None:
        self.nodes: dict[tree.NodeId, bytes] = {}
        self.size = 0

    def append(self, data: bytes) -> None:
        for node, h in tree.new_nodes(self.size, leaf_hash(data), self.nodes.__getitem__):
            self.nodes[node] = h
        self.size += 1

    def get(self, ids: Sequence[tree.NodeId]) -> list[bytes]:
        return [self.nodes[i] for i in ids]

    def root(self, n: int) -> bytes:
        return tree.root_from(self.get, n)

    def inclusion(self, m: int, n: int) -> list[bytes]:
        return tree.proof_from(self.get, tree.inclusion_ranges(m, n))

    def consistency(self, m: int, n: int) -> list[bytes]:
        return tree.proof_from(self.get, tree.consistency_ranges(m, n))


def leaves(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") for i in range(n)]


def test_known_roots() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MemoryNodes().root(0) == EMPTY_ROOT
    store = MemoryNodes()
    for leaf in CT_LEAVES:
        store.append(leaf)
    assert store.root(8).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    assert mth(CT_LEAVES).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def test_every_proof_up_to_64_leaves() -> None:
    data = leaves(64)
    store = MemoryNodes()
    for leaf in data:
        store.append(leaf)
    for n in range(1, 65):
        root = store.root(n)
        assert root == mth(data[:n])
        for m in range(n):
            p = store.inclusion(m, n)
            assert p == path(m, data[:n])
            verify_inclusion(leaf_hash(data[m]), m, n, p, root)
        for m in range(1, n + 1):
            c = store.consistency(m, n)
            assert c == proof(m, data[:n])
            verify_consistency(m, n, c, store.root(m), root)


BIG = 2000
_big_data = leaves(BIG)
_big = MemoryNodes()
for _leaf in _big_data:
    _big.append(_leaf)


def _flip(b: bytes, bit: int) -> bytes:
    arr = bytearray(b)
    arr[(bit // 8) % len(arr)] ^= 1 << (bit % 8)
    return bytes(arr)


@settings(max_examples=300)
@given(st.integers(1, BIG), st.data())
def test_inclusion_bit_flips_fail(n: int, data: st.DataObject) -> None:
    m = data.draw(st.integers(0, n - 1))
    root, p, leaf = _big.root(n), _big.inclusion(m, n), leaf_hash(_big_data[m])
    verify_inclusion(leaf, m, n, p, root)
    target = data.draw(st.sampled_from(["leaf", "root", "proof"] if p else ["leaf", "root"]))
    bit = data.draw(st.integers(0, 255))
    if target == "leaf":
        leaf = _flip(leaf, bit)
    elif target == "root":
        root = _flip(root, bit)
    else:
        i = data.draw(st.integers(0, len(p) - 1))
        p = [*p[:i], _flip(p[i], bit), *p[i + 1:]]
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, m, n, p, root)


@settings(max_examples=300)
@given(st.integers(1, BIG), st.data())
def test_consistency_bit_flips_fail(n: int, data: st.DataObject) -> None:
    m = data.draw(st.integers(1, n))
    r1, r2, c = _big.root(m), _big.root(n), _big.consistency(m, n)
    verify_consistency(m, n, c, r1, r2)
    choices = ["root1", "root2"] + (["proof"] if c else [])
    target = data.draw(st.sampled_from(choices))
    bit = data.draw(st.integers(0, 255))
    if target == "root1":
        r1 = _flip(r1, bit)
    elif target == "root2":
        r2 = _flip(r2, bit)
    else:
        i = data.draw(st.integers(0, len(c) - 1))
        c = [*c[:i], _flip(c[i], bit), *c[i + 1:]]
    with pytest.raises(VerificationError):
        verify_consistency(m, n, c, r1, r2)


def test_wrong_index_or_size_is_refused() -> None:
    p = _big.inclusion(5, 100)
    with pytest.raises(VerificationError):
        verify_inclusion(leaf_hash(_big_data[5]), 6, 100, p, _big.root(100))
    with pytest.raises(VerificationError):
        root_from_inclusion(leaf_hash(_big_data[5]), 100, 100, p)
    with pytest.raises(VerificationError):
        verify_consistency(10, 5, [], _big.root(10), _big.root(5))
