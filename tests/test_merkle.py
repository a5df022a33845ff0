"""Tests for custody.merkle: published RFC 6962 vectors plus an independent reference.

Plain pytest, no Django: run with ``-p no:django``.
"""

from __future__ import annotations

import functools
import hashlib

import pytest

from custody import merkle

# ---------------------------------------------------------------------------
# Published vectors.  Leaf inputs, per-size roots and the perfect-node hashes
# are from transparency-dev/merkle testonly/constants.go (LeafInputs,
# RootHashes, NodeHashes, CompactTrees); the inclusion and consistency proofs
# are from transparency-dev/merkle proof/verify_test.go (inclusionProofs,
# consistencyProofs, whose leaf numbers are 1-based; converted to 0-based
# here).  They descend from the certificate-transparency RFC 6962 test suite.
# ---------------------------------------------------------------------------

LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

ROOTS = [
    bytes.fromhex(h)
    for h in (  # index = tree size
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]

NODE_HASHES = [
    [bytes.fromhex(h) for h in level]
    for level in (  # [level][index]
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        [
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        [
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    )
]

# Frontier (compact range) for each size 0..8, as (level, index) into NODE_HASHES.
COMPACT_TREES = [
    [],
    [(0, 0)],
    [(1, 0)],
    [(1, 0), (0, 2)],
    [(2, 0)],
    [(2, 0), (0, 4)],
    [(2, 0), (1, 2)],
    [(2, 0), (1, 2), (0, 6)],
    [(3, 0)],
]


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


INCLUSION_VECTORS = [  # (0-based index, size, proof)
    (0, 1, []),
    (
        0,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _h(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _h(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

CONSISTENCY_VECTORS = [  # (first, second, proof)
    (1, 1, []),
    (
        1,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _h(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]


# ---------------------------------------------------------------------------
# Independent reference: RFC 9162 2.1.1 / 2.1.3.1 / 2.1.4.1 transcribed
# literally over tuples of leaf *inputs*.  Deliberately shares nothing with
# custody.merkle (own hashing, own k, plain recursion over the data).
# ---------------------------------------------------------------------------


def _ref_k(n: int) -> int:
    """Largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@functools.cache
def ref_mth(d: tuple[bytes, ...]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256().digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _ref_k(n)
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: tuple[bytes, ...]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _ref_k(n)
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: tuple[bytes, ...], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _ref_k(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_proof(m: int, d: tuple[bytes, ...]) -> list[bytes]:
    return ref_subproof(m, d, True)


# ---------------------------------------------------------------------------
# A tree built the way the server builds it: append leaves one by one and
# store every completed perfect node.
# ---------------------------------------------------------------------------

MAX_SIZE = 70
DATA = tuple(LEAF_INPUTS + [b"custody leaf %d" % i for i in range(len(LEAF_INPUTS), MAX_SIZE)])


class Log:
    def __init__(self, data: tuple[bytes, ...]):
        self.store: dict[tuple[int, int], bytes] = {}
        self.frontiers: list[list[bytes]] = [[]]
        frontier: list[bytes] = []
        for size, item in enumerate(data):
            leaf = merkle.leaf_hash(item)
            frontier, completed = merkle.append_to_frontier(frontier, size, leaf)
            for level, index, h in completed:
                assert (level, index) not in self.store, "a perfect node was completed twice"
                self.store[(level, index)] = h
            self.frontiers.append(frontier)

    def fetch(self, wanted: set[tuple[int, int]], size: int) -> dict[tuple[int, int], bytes]:
        """Simulate the single DB query: only the requested nodes, all inside the tree."""
        for level, index in wanted:
            assert (index + 1) << level <= size, f"node {(level, index)} is outside size {size}"
        return {node: self.store[node] for node in wanted}


@pytest.fixture(scope="module")
def log() -> Log:
    return Log(DATA)


def _flip(h: bytes, i: int = 0) -> bytes:
    return h[:i] + bytes([h[i] ^ 0x10]) + h[i + 1 :]


def _node_budget(size: int) -> int:
    return 2 * max(1, size.bit_length())  # O(log n) stored nodes per proof


# -- hashing and vectors -------------------------------------------------------


def test_hash_primitives():
    assert merkle.EMPTY_ROOT == ROOTS[0]
    assert merkle.leaf_hash(b"") == NODE_HASHES[0][0]
    assert merkle.node_hash(NODE_HASHES[0][0], NODE_HASHES[0][1]) == NODE_HASHES[1][0]
    assert merkle.root_from_frontier([]) == ROOTS[0]


def test_vector_roots_frontiers_and_nodes():
    frontier: list[bytes] = []
    stored = {}
    for size, item in enumerate(LEAF_INPUTS):
        frontier, completed = merkle.append_to_frontier(frontier, size, merkle.leaf_hash(item))
        assert completed[0] == (0, size, NODE_HASHES[0][size])
        stored.update({(lv, ix): h for lv, ix, h in completed})
        assert frontier == [NODE_HASHES[lv][ix] for lv, ix in COMPACT_TREES[size + 1]]
        assert merkle.root_from_frontier(frontier) == ROOTS[size + 1]
        assert merkle.range_hash(0, size + 1, stored) == ROOTS[size + 1]
    assert stored == {(lv, ix): h for lv, row in enumerate(NODE_HASHES) for ix, h in enumerate(row)}


@pytest.mark.parametrize("index,size,proof", INCLUSION_VECTORS)
def test_inclusion_vectors(log, index, size, proof):
    nodes = log.fetch(merkle.inclusion_nodes(index, size), size)
    assert merkle.inclusion_proof(index, size, nodes) == proof
    assert merkle.verify_inclusion(NODE_HASHES[0][index], index, size, proof, ROOTS[size])


@pytest.mark.parametrize("first,second,proof", CONSISTENCY_VECTORS)
def test_consistency_vectors(log, first, second, proof):
    nodes = log.fetch(merkle.consistency_nodes(first, second), second)
    assert merkle.consistency_proof(first, second, nodes) == proof
    assert merkle.verify_consistency(first, second, ROOTS[first], ROOTS[second], proof)


def test_reference_matches_vectors():
    # Guards the reference implementation itself.
    for size in range(9):
        assert ref_mth(tuple(LEAF_INPUTS[:size])) == ROOTS[size]
    for index, size, proof in INCLUSION_VECTORS:
        assert ref_path(index, tuple(LEAF_INPUTS[:size])) == proof
    for first, second, proof in CONSISTENCY_VECTORS:
        assert ref_proof(first, tuple(LEAF_INPUTS[:second])) == proof


# -- exhaustive comparison against the reference --------------------------------


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_roots_and_ranges(log, size):
    root = ref_mth(DATA[:size])
    assert merkle.root_from_frontier(log.frontiers[size]) == root
    wanted = set(merkle.range_nodes(0, size))
    assert len(wanted) == size.bit_count()
    assert merkle.range_hash(0, size, log.fetch(wanted, size)) == root


def test_every_aligned_range(log):
    for start in range(MAX_SIZE):
        for end in range(start + 1, MAX_SIZE + 1):
            top = 1 << ((end - start).bit_length() - 1)
            if start % top == 0:
                nodes = log.fetch(set(merkle.range_nodes(start, end)), end)
                want = ref_mth(DATA[start:end])
                assert merkle.range_hash(start, end, nodes) == want, (start, end)


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_inclusion_against_reference(log, size):
    root = ref_mth(DATA[:size])
    for index in range(size):
        wanted = merkle.inclusion_nodes(index, size)
        assert len(wanted) <= _node_budget(size)
        proof = merkle.inclusion_proof(index, size, log.fetch(wanted, size))
        assert proof == ref_path(index, DATA[:size]), (index, size)
        leaf = merkle.leaf_hash(DATA[index])
        assert merkle.verify_inclusion(leaf, index, size, proof, root) is True

        bad = []  # (description, args) that must all be rejected
        for i in range(len(proof)):
            tampered = proof[:i] + [_flip(proof[i], i)] + proof[i + 1 :]
            bad.append((f"flip proof[{i}]", (leaf, index, size, tampered, root)))
        bad += [
            ("flip leaf", (_flip(leaf), index, size, proof, root)),
            ("flip root", (leaf, index, size, proof, _flip(root, 31))),
            ("empty root", (leaf, index, size, proof, merkle.EMPTY_ROOT)),
            ("extended", (leaf, index, size, proof + [root], root)),
            ("prepended", (leaf, index, size, [leaf] + proof, root)),
            ("index = size", (leaf, size, size, proof, root)),
            ("index -1", (leaf, -1, size, proof, root)),
            ("size 0", (leaf, index, 0, proof, root)),
            ("size * 2", (leaf, index, size * 2, proof, root)),
        ]
        if proof:
            bad.append(("truncated", (leaf, index, size, proof[:-1], root)))
        for wrong in {index - 1, index + 1, index ^ 1, index ^ 2} - {index}:
            if 0 <= wrong < size:  # leaves are distinct, so another position can't match
                bad.append((f"index {wrong}", (leaf, wrong, size, proof, root)))
        for desc, args in bad:
            assert merkle.verify_inclusion(*args) is False, (desc, index, size)

        # A different size with that size's genuine root is accepted only if
        # the proof happens to be that size's genuine proof (and it rarely is).
        for other in (size - 1, size + 1):
            if index < other <= MAX_SIZE:
                expect = ref_path(index, DATA[:other]) == proof
                got = merkle.verify_inclusion(leaf, index, other, proof, ref_mth(DATA[:other]))
                assert got is expect, (index, other, size)


@pytest.mark.parametrize("second", range(1, MAX_SIZE + 1))
def test_consistency_against_reference(log, second):
    root2 = ref_mth(DATA[:second])
    for first in range(1, second + 1):
        root1 = ref_mth(DATA[:first])
        wanted = merkle.consistency_nodes(first, second)
        assert len(wanted) <= _node_budget(second)
        proof = merkle.consistency_proof(first, second, log.fetch(wanted, second))
        assert proof == ref_proof(first, DATA[:second]), (first, second)
        assert merkle.verify_consistency(first, second, root1, root2, proof) is True
        if first == second:
            assert proof == []
            assert merkle.verify_consistency(first, second, root1, root2, [root1]) is False
            continue

        bad = []
        for i in range(len(proof)):
            tampered = proof[:i] + [_flip(proof[i], i)] + proof[i + 1 :]
            bad.append((f"flip proof[{i}]", (first, second, root1, root2, tampered)))
        bad += [
            ("flip root1", (first, second, _flip(root1), root2, proof)),
            ("flip root2", (first, second, root1, _flip(root2, 31), proof)),
            ("swapped roots", (first, second, root2, root1, proof)),
            ("empty proof", (first, second, root1, root2, [])),
            ("truncated", (first, second, root1, root2, proof[:-1])),
            ("extended", (first, second, root1, root2, proof + [root2])),
            ("prepended", (first, second, root1, root2, [proof[0]] + proof)),
            ("first 0", (0, second, root1, root2, proof)),
            ("first > second", (second + 1, second, root1, root2, proof)),
            ("second * 2", (first, second * 2, root1, root2, proof)),
        ]
        for desc, args in bad:
            assert merkle.verify_consistency(*args) is False, (desc, first, second)

        # Other sizes with their genuine roots: accepted only if the proof is
        # exactly the genuine proof for those sizes.
        for f2, s2 in ((first - 1, second), (first + 1, second), (first, second - 1), (first, second + 1)):
            if 0 < f2 < s2 <= MAX_SIZE:
                expect = ref_proof(f2, DATA[:s2]) == proof
                roots = ref_mth(DATA[:f2]), ref_mth(DATA[:s2])
                got = merkle.verify_consistency(f2, s2, *roots, proof)
                assert got is expect, (f2, s2, first, second)


# -- malformed input and argument checking --------------------------------------


GOOD_LEAF = NODE_HASHES[0][0]
GOOD_PROOF = INCLUSION_VECTORS[1][2]


@pytest.mark.parametrize(
    "args",
    [
        (GOOD_LEAF[:31], 0, 8, GOOD_PROOF, ROOTS[8]),  # short leaf hash
        (GOOD_LEAF, 0, 8, GOOD_PROOF, ROOTS[8] + b"\x00"),  # long root
        (GOOD_LEAF, 0, 8, GOOD_PROOF[:2] + [b""], ROOTS[8]),  # empty proof element
        (GOOD_LEAF, 0, 8, GOOD_PROOF[:2] + [None], ROOTS[8]),  # non-bytes element
        (GOOD_LEAF, 0, 8, "not a list", ROOTS[8]),
        (GOOD_LEAF, 0, 8, None, ROOTS[8]),
        ("x" * 32, 0, 8, GOOD_PROOF, ROOTS[8]),
        (GOOD_LEAF, "0", 8, GOOD_PROOF, ROOTS[8]),
        (GOOD_LEAF, 0, 8.0, GOOD_PROOF, ROOTS[8]),
        (GOOD_LEAF, 0, None, GOOD_PROOF, ROOTS[8]),
        (GOOD_LEAF, 8, 8, GOOD_PROOF, ROOTS[8]),
        (GOOD_LEAF, 2**70, 2**71, GOOD_PROOF, ROOTS[8]),
        (GOOD_LEAF, 0, 0, [], merkle.EMPTY_ROOT),
        (GOOD_LEAF, 0, 1, [], merkle.EMPTY_ROOT),
        (GOOD_LEAF, 0, 1, [GOOD_LEAF], GOOD_LEAF),
        (GOOD_LEAF, 0, 8, GOOD_PROOF * 50, ROOTS[8]),
    ],
)
def test_verify_inclusion_rejects_malformed(args):
    assert merkle.verify_inclusion(*args) is False


@pytest.mark.parametrize(
    "args",
    [
        (6, 8, ROOTS[6][:31], ROOTS[8], CONSISTENCY_VECTORS[2][2]),
        (6, 8, ROOTS[6], b"", CONSISTENCY_VECTORS[2][2]),
        (6, 8, ROOTS[6], ROOTS[8], CONSISTENCY_VECTORS[2][2][:2] + [b"\x00" * 33]),
        (6, 8, ROOTS[6], ROOTS[8], [None]),
        (6, 8, ROOTS[6], ROOTS[8], b"\x00" * 96),
        (6, 8, ROOTS[6], ROOTS[8], None),
        ("6", 8, ROOTS[6], ROOTS[8], CONSISTENCY_VECTORS[2][2]),
        (6, True, ROOTS[6], ROOTS[8], CONSISTENCY_VECTORS[2][2]),
        (0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, []),
        (-1, 8, ROOTS[6], ROOTS[8], CONSISTENCY_VECTORS[2][2]),
        (8, 6, ROOTS[8], ROOTS[6], CONSISTENCY_VECTORS[2][2]),
        (8, 8, ROOTS[8], ROOTS[7], []),
        (6, 2**80, ROOTS[6], ROOTS[8], CONSISTENCY_VECTORS[2][2]),
        (6, 8, ROOTS[6], ROOTS[8], CONSISTENCY_VECTORS[2][2] * 40),
    ],
)
def test_verify_consistency_rejects_malformed(args):
    assert merkle.verify_consistency(*args) is False


def test_verify_accepts_bytearray_and_tuple():
    index, size, proof = INCLUSION_VECTORS[2]
    assert merkle.verify_inclusion(
        bytearray(NODE_HASHES[0][index]),
        index,
        size,
        tuple(bytearray(p) for p in proof),
        bytearray(ROOTS[size]),
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: merkle.inclusion_nodes(0, 0),
        lambda: merkle.inclusion_nodes(5, 5),
        lambda: merkle.inclusion_nodes(-1, 5),
        lambda: merkle.inclusion_proof(3, 2, {}),
        lambda: merkle.consistency_nodes(0, 5),
        lambda: merkle.consistency_nodes(6, 5),
        lambda: merkle.consistency_proof(0, 0, {}),
        lambda: merkle.range_nodes(3, 2),
        lambda: merkle.range_nodes(-1, 2),
        lambda: merkle.range_nodes(1, 3),  # [1, 3) is not aligned
        lambda: merkle.append_to_frontier([], 1, GOOD_LEAF),  # frontier/size mismatch
        lambda: merkle.append_to_frontier([GOOD_LEAF], 1, b"short"),
    ],
)
def test_builders_reject_invalid_arguments(call):
    with pytest.raises(ValueError):
        call()


def test_empty_range_and_missing_node():
    assert merkle.range_nodes(5, 5) == []
    assert merkle.range_hash(5, 5, {}) == merkle.EMPTY_ROOT
    with pytest.raises(KeyError):
        merkle.inclusion_proof(0, 8, {})


def test_append_does_not_mutate_frontier():
    frontier = [NODE_HASHES[1][0], NODE_HASHES[0][2]]
    snapshot = list(frontier)
    new, completed = merkle.append_to_frontier(frontier, 3, NODE_HASHES[0][3])
    assert frontier == snapshot
    assert new == [NODE_HASHES[2][0]]
    assert completed == [
        (0, 3, NODE_HASHES[0][3]),
        (1, 1, NODE_HASHES[1][1]),
        (2, 0, NODE_HASHES[2][0]),
    ]
