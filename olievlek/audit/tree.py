"""Index maths of the Merkle tree: which stored perfect subtrees a root or a proof needs.

A *node* ``(level, index)`` is the root of the perfect subtree over leaves
``[index·2^level, (index+1)·2^level)``; the log stores every such node once it
is complete, so roots and proofs are read, never recomputed from leaves
(the transparency-dev ``proof.go`` approach). ``range_nodes(a, b)`` lists the
nodes whose right-to-left fold is RFC 9162's MTH of ``D[a:b]`` for the aligned
ranges that the RFC's recursion produces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .hashing import EMPTY_ROOT, node_hash

NodeId = tuple[int, int]  # (level, index)


def _largest_power_of_two_below(n: int) -> int:
    """k = 2^i with k < n <= 2k (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(a: int, b: int) -> list[NodeId]:
    """Perfect nodes covering [a, b), left to right, in RFC 9162 split order."""
    out: list[NodeId] = []
    while b - a > 0:
        size = b - a
        if size & (size - 1) == 0 and a % size == 0:
            out.append((size.bit_length() - 1, a // size))
            break
        k = _largest_power_of_two_below(size)
        out.append((k.bit_length() - 1, a // k))
        a += k
    return out


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH from the left-to-right perfect subtree hashes of one range (right fold)."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """RFC 9162 2.1.3.1 PATH(m, D[0:n]) as the ranges whose MTH form the proof, leaf upward."""
    out: list[tuple[int, int]] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if m < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo = lo + k
    out.reverse()
    return out


def consistency_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """RFC 9162 2.1.4.1 PROOF(m, D[0:n]) as ranges whose MTH form the proof, in proof order."""
    if not 0 < m <= n:
        raise ValueError("consistency needs 0 < m <= n")
    if m == n:
        return []
    out: list[tuple[int, int]] = []

    def subproof(m: int, lo: int, hi: int, b: bool) -> None:
        n = hi - lo
        if m == n:
            if not b:
                out.append((lo, hi))
            return
        k = _largest_power_of_two_below(n)
        if m <= k:
            subproof(m, lo, lo + k, b)
            out.append((lo + k, hi))
        else:
            subproof(m - k, lo + k, hi, False)
            out.append((lo, lo + k))

    subproof(m, 0, n, True)
    return out


def root_from(get: Callable[[Sequence[NodeId]], list[bytes]], n: int) -> bytes:
    return fold(get(range_nodes(0, n))) if n else EMPTY_ROOT


def proof_from(get: Callable[[Sequence[NodeId]], list[bytes]], ranges: list[tuple[int, int]]) -> list[bytes]:
    """Read every node the proof needs in one call, then fold each range."""
    return fold_ranges(get([n for a, b in ranges for n in range_nodes(a, b)]), ranges)


def new_nodes(index: int, leaf: bytes, get_left: Callable[[NodeId], bytes]) -> list[tuple[NodeId, bytes]]:
    """The nodes completed by appending leaf ``index``: the leaf, then each parent it closes."""
    out: list[tuple[NodeId, bytes]] = [((0, index), leaf)]
    level, idx, h = 0, index, leaf
    while idx % 2 == 1:
        h = node_hash(get_left((level, idx - 1)), h)
        level, idx = level + 1, idx // 2
        out.append(((level, idx), h))
    return out


def fold_ranges(hashes: Sequence[bytes], ranges: list[tuple[int, int]]) -> list[bytes]:
    """Fold already-fetched node hashes (in ``range_nodes`` order over ``ranges``) into proof elements."""
    out, i = [], 0
    for a, b in ranges:
        k = len(range_nodes(a, b))
        out.append(fold(hashes[i : i + k]))
        i += k
    return out
