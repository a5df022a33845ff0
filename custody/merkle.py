"""RFC 6962 / RFC 9162 (section 2.1) Merkle tree hashing over stored perfect subtrees.

Storage model: the server stores the hash of every *perfect, aligned* subtree.
Node ``(level, index)`` covers leaves ``[index << level, (index + 1) << level)``;
level 0 holds the leaf hashes.  Every tree head and every proof element of
RFC 9162 is the MTH of a leaf range ``[start, end)`` whose start is aligned to
the largest power of two <= ``end - start``; such a range is the
concatenation of the perfect nodes given by the binary decomposition of its
length (largest first), so the builders below first name the nodes they need
(``*_nodes``) and then combine hashes fetched from storage in one query.

Pure standard library; no Django imports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()  # MTH({}) = HASH()

Node = tuple[int, int]  # (level, index)
NodeStore = Mapping[Node, bytes]


# -- hashing (RFC 9162 2.1.1) -------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right); the prefixes keep leaves and nodes apart."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Combine the perfect subtrees of a range, largest (leftmost) first.

    MTH(D[a:b]) = node_hash(MTH(D[a:a+k]), MTH(D[a+k:b])) with k the largest
    power of two < b - a, so the *rightmost* pieces are joined first: a
    right-to-left fold.  A left-to-right fold gives a different (wrong) root.
    """
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node_hash(left, acc)
    return acc


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


# -- appending (frontier / compact range) -------------------------------------


def append_to_frontier(
    frontier: Sequence[bytes], size: int, leaf_hash: bytes
) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
    """Append leaf number ``size`` to a tree of ``size`` leaves.

    ``frontier`` holds the roots of the perfect subtrees on the right edge,
    largest first (one per set bit of ``size``).  Returns the new frontier and
    the ``(level, index, hash)`` perfect nodes completed by this append, the
    level-0 node first, so the caller can store them.  The input is not mutated.
    """
    if size < 0 or len(frontier) != size.bit_count():
        raise ValueError(f"frontier of {len(frontier)} hashes does not match tree size {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf_hash)}")
    new = list(frontier)
    acc = bytes(leaf_hash)
    completed = [(0, size, acc)]
    level = 0
    # Like a binary increment: each trailing 1 bit of `size` is a perfect
    # subtree that the new leaf completes into one twice as large (a carry).
    while (size >> level) & 1:
        acc = node_hash(new.pop(), acc)
        level += 1
        completed.append((level, size >> level, acc))
    new.append(acc)
    return new, completed


def root_from_frontier(frontier: Sequence[bytes]) -> bytes:
    """RFC 9162 tree head for the size the frontier describes (EMPTY_ROOT if empty)."""
    return _fold(frontier)


# -- ranges -------------------------------------------------------------------


def range_nodes(start: int, end: int) -> list[Node]:
    """Perfect nodes, left to right, whose right-to-left fold is MTH(D[start:end]).

    Valid when ``start`` is a multiple of the largest power of two <= the
    range length, which holds for tree heads (start 0) and for every range that
    occurs in inclusion and consistency proofs.  Other ranges raise ValueError.
    """
    if start < 0 or end < start:
        raise ValueError(f"invalid leaf range [{start}, {end})")
    length = end - start
    if length == 0:
        return []
    top = length.bit_length() - 1
    if start % (1 << top):
        raise ValueError(
            f"range [{start}, {end}) is not aligned to 2**{top}; "
            "it does not split into stored perfect subtrees"
        )
    nodes = []
    pos = start
    for level in range(top, -1, -1):
        if (length >> level) & 1:
            nodes.append((level, pos >> level))
            pos += 1 << level
    return nodes


def range_hash(start: int, end: int, nodes: NodeStore) -> bytes:
    """MTH(D[start:end]) from stored perfect nodes (KeyError if one is missing)."""
    return _fold([nodes[n] for n in range_nodes(start, end)])


# -- proof shapes (RFC 9162 2.1.3.1 and 2.1.4.1, unrolled) ---------------------
#
# Each proof element is the MTH of one leaf range.  Only one element per proof
# can be a non-perfect range (once the recursion descends into the left,
# perfect half, every later sibling is a single perfect node), so a proof
# needs O(log n) stored nodes: at most about 2 * log2(n).


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    if size < 1:
        raise ValueError(f"tree size must be >= 1, got {size}")
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} out of range for tree size {size}")
    ranges = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:  # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
            ranges.append((lo + k, hi))
            hi = lo + k
        else:  # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()  # the recursion emits the deepest (leaf-side) sibling first
    return ranges


def _consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    if first < 1:
        raise ValueError(f"first tree size must be >= 1, got {first}")
    if first > second:
        raise ValueError(f"first tree size {first} exceeds second tree size {second}")
    ranges = []
    lo, hi = 0, second
    # SUBPROOF's b flag: true while the old tree is a left-edge subtree of the
    # current one, in which case the verifier already knows its hash.
    b = True
    while hi != first:  # relative m == n, since lo <= first always holds
        k = _split(hi - lo)
        if first - lo <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            ranges.append((lo + k, hi))
            hi = lo + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            ranges.append((lo, lo + k))
            lo += k
            b = False
    if not b:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def _needed(ranges: list[tuple[int, int]]) -> set[Node]:
    return {node for a, b in ranges for node in range_nodes(a, b)}


def inclusion_nodes(index: int, size: int) -> set[Node]:
    """Stored nodes needed for the inclusion proof of leaf ``index`` in a tree of ``size``."""
    return _needed(_inclusion_ranges(index, size))


def inclusion_proof(index: int, size: int, nodes: NodeStore) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 2.1.3.1), leaf side first."""
    return [range_hash(a, b, nodes) for a, b in _inclusion_ranges(index, size)]


def consistency_nodes(first: int, second: int) -> set[Node]:
    """Stored nodes needed for the consistency proof from ``first`` to ``second``."""
    return _needed(_consistency_ranges(first, second))


def consistency_proof(first: int, second: int, nodes: NodeStore) -> list[bytes]:
    """PROOF(first, D[0:second]) (RFC 9162 2.1.4.1); [] when first == second."""
    return [range_hash(a, b, nodes) for a, b in _consistency_ranges(first, second)]


# -- verification (RFC 9162 2.1.3.2 and 2.1.4.2) -------------------------------
#
# These take untrusted input and return False, never raise, on anything malformed.


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_hash(x: object) -> bool:
    return isinstance(x, (bytes, bytearray)) and len(x) == HASH_SIZE


def _is_proof(proof: object) -> bool:
    return isinstance(proof, (list, tuple)) and all(_is_hash(p) for p in proof)


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` place ``leaf_hash`` at ``index`` under ``root``?"""
    if not (_is_int(index) and _is_int(size) and _is_hash(leaf_hash) and _is_hash(root) and _is_proof(proof)):
        return False
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:  # proof longer than the path
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                # Right edge of an unbalanced tree: skip the levels where this
                # node has no sibling.
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the ``second``-size tree an append-only extension of the ``first``?

    The RFC covers 0 < first < second.  For first == second we accept exactly
    the empty proof with equal roots (matching consistency_proof).  first == 0
    is rejected, like consistency_proof rejects it.
    """
    if not (
        _is_int(first)
        and _is_int(second)
        and _is_hash(first_root)
        and _is_hash(second_root)
        and _is_proof(proof)
    ):
        return False
    if not 0 < first <= second:
        return False
    if first == second:
        return len(proof) == 0 and first_root == second_root
    if not proof:  # step 1
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # step 2: the old tree is a perfect node the proof omits
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = bytes(path[0])  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0  # step 7
