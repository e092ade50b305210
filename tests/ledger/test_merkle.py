"""Tests for ledger.merkle: RFC 9162 vectors, a naive RFC 6962 reference tree, and properties.

Vectors come from tests/vectors/merkle-rfc9162 (transparency-dev/merkle, see its README.md).
The naive reference (tests/naive_merkle.py) is written straight from the RFC 6962 §2.1 /
RFC 9162 §2.1 text and uses hashlib directly, so it shares no code with the module under test.
The atheris differential fuzz of the verifiers against it is tests/fuzz/proofs.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import InvalidProof, InvalidProofRequest
from ledger.merkle import (
    EMPTY_ROOT,
    Frontier,
    NodeId,
    build_proof,
    consistency_plan,
    fold,
    inclusion_plan,
    leaf_hash,
    node_hash,
    plan_nodes,
    range_nodes,
    verify_consistency,
    verify_inclusion,
)

from ..naive_merkle import naive_mth, naive_path, naive_proof


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


VECTORS = Path(__file__).parents[1] / "vectors" / "merkle-rfc9162"


# --- a tree built with the fast code, storing every node as storage would ----------------


class Tree:
    """Distinct leaves, and every node the Frontier told us to store, keyed by NodeId."""

    def __init__(self, data: Sequence[bytes]) -> None:
        self.data = list(data)
        self.leaf_hashes = [leaf_hash(x) for x in self.data]
        self.nodes: dict[NodeId, bytes] = {}
        self.roots = [EMPTY_ROOT]
        frontier = Frontier(0, [])
        for h in self.leaf_hashes:
            for node, value in frontier.append(h):
                assert node not in self.nodes, f"node {node} emitted twice"
                self.nodes[node] = value
            self.roots.append(frontier.root())

    def inclusion(self, index: int, size: int) -> list[bytes]:
        plan = inclusion_plan(index=index, tree_size=size)
        assert_plan_within(plan, size)
        return build_proof(plan, self.nodes)

    def consistency(self, old: int, new: int) -> list[bytes]:
        plan = consistency_plan(old_size=old, new_size=new)
        assert_plan_within(plan, new)
        return build_proof(plan, self.nodes)


def assert_plan_within(plan: Sequence[Sequence[NodeId]], size: int) -> None:
    # A plan must only name nodes that are complete at this size; the shared node table
    # holds later nodes too, so reading one would otherwise go unnoticed.
    for level, index in plan_nodes(plan):
        assert (index + 1) << level <= size, f"node {(level, index)} is beyond size {size}"


@lru_cache(maxsize=None)
def tree(size: int) -> Tree:
    return Tree([b"leaf %d" % i for i in range(size)])


SMALL = 70
LARGE = 10_000


def rejects(check: Callable[..., None], **kwargs: Any) -> bool:
    try:
        check(**kwargs)
    except InvalidProof:
        return True
    return False


def flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


# --- RFC 9162 vectors (transparency-dev/merkle) ------------------------------------------


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _load(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [
        pytest.param(json.loads(path.read_text()), id=path.relative_to(VECTORS).as_posix())
        for path in files
    ]


INCLUSION_VECTORS = _load("inclusion")
CONSISTENCY_VECTORS = _load("consistency")
TREE = json.loads((VECTORS / "tree.json").read_text())
PROOFS = json.loads((VECTORS / "proofs.json").read_text())


def test_vector_counts() -> None:
    assert len(INCLUSION_VECTORS) == 54
    assert len(CONSISTENCY_VECTORS) == 49
    assert len(TREE["leaf_inputs_hex"]) == 8
    assert len(TREE["leaf_hashes_hex"]) == 8
    assert len(TREE["roots"]) == 5
    assert len(TREE["hasher_cases"]) == 2
    assert len(PROOFS["inclusion"]) == 3
    assert len(PROOFS["consistency"]) == 3


@pytest.mark.parametrize("case", INCLUSION_VECTORS)
def test_inclusion_vector(case: dict[str, Any]) -> None:
    accepted = not rejects(
        verify_inclusion,
        leaf_hash=_b64(case["leafHash"]),
        index=case["leafIdx"],
        tree_size=case["treeSize"],
        proof=[_b64(p) for p in case["proof"] or []],
        root=_b64(case["root"]),
    )
    assert accepted == (not case["wantErr"]), case["desc"]


@pytest.mark.parametrize("case", CONSISTENCY_VECTORS)
def test_consistency_vector(case: dict[str, Any]) -> None:
    accepted = not rejects(
        verify_consistency,
        old_size=case["size1"],
        new_size=case["size2"],
        proof=[_b64(p) for p in case["proof"] or []],
        old_root=_b64(case["root1"]),
        new_root=_b64(case["root2"]),
    )
    assert accepted == (not case["wantErr"]), case["desc"]


def _vector_tree() -> Tree:
    return Tree([bytes.fromhex(x) for x in TREE["leaf_inputs_hex"]])


def test_tree_leaf_hashes() -> None:
    for data_hex, want in zip(TREE["leaf_inputs_hex"], TREE["leaf_hashes_hex"], strict=True):
        assert leaf_hash(bytes.fromhex(data_hex)).hex() == want


@pytest.mark.parametrize("case", TREE["roots"], ids=lambda c: f"size-{c['tree_size']}")
def test_tree_root(case: dict[str, Any]) -> None:
    t = _vector_tree()
    assert t.roots[case["tree_size"]].hex() == case["root_hex"]
    # A frontier resumed from stored nodes gives the same root.
    size = case["tree_size"]
    resumed = Frontier(size, [t.nodes[n] for n in Frontier.needed(size)])
    assert resumed.root().hex() == case["root_hex"]


@pytest.mark.parametrize("case", TREE["hasher_cases"], ids=lambda c: c["desc"])
def test_hasher_case(case: dict[str, Any]) -> None:
    if case["function"] == "empty_root":
        got = EMPTY_ROOT
    elif case["function"] == "hash_leaf":
        got = leaf_hash(bytes.fromhex(case["leaf_hex"]))
    else:
        assert case["function"] == "hash_children"
        got = node_hash(bytes.fromhex(case["left_hex"]), bytes.fromhex(case["right_hex"]))
    assert got.hex() == case["want_hex"]


@pytest.mark.parametrize("case", PROOFS["inclusion"], ids=lambda c: c["file"])
def test_builds_vector_inclusion_proof(case: dict[str, Any]) -> None:
    t = _vector_tree()
    proof = t.inclusion(case["leaf_index"], case["tree_size"])
    assert [p.hex() for p in proof] == case["proof_hex"]
    assert t.roots[case["tree_size"]].hex() == case["root_hex"]
    assert t.leaf_hashes[case["leaf_index"]].hex() == case["leaf_hash_hex"]


@pytest.mark.parametrize("case", PROOFS["consistency"], ids=lambda c: c["file"])
def test_builds_vector_consistency_proof(case: dict[str, Any]) -> None:
    t = _vector_tree()
    proof = t.consistency(case["size1"], case["size2"])
    assert [p.hex() for p in proof] == case["proof_hex"]
    assert t.roots[case["size1"]].hex() == case["root1_hex"]
    assert t.roots[case["size2"]].hex() == case["root2_hex"]


# --- fast code against the naive reference ----------------------------------------------


def test_every_stored_node_is_its_subtree_hash() -> None:
    t = tree(SMALL)
    want = {
        (level, index)
        for level in range(SMALL.bit_length())
        for index in range(SMALL >> level)
    }
    assert set(t.nodes) == want
    for (level, index), value in t.nodes.items():
        assert value == naive_mth(t.data[index << level : (index + 1) << level])


def test_frontier_root_matches_naive_mth_exhaustive() -> None:
    t = tree(SMALL)
    for size in range(SMALL + 1):
        assert t.roots[size] == naive_mth(t.data[:size]), size
        resumed = Frontier(size, [t.nodes[n] for n in Frontier.needed(size)])
        assert resumed.size == size
        assert resumed.root() == t.roots[size], size


def test_inclusion_plan_matches_naive_path_exhaustive() -> None:
    t = tree(SMALL)
    for size in range(1, SMALL + 1):
        for index in range(size):
            proof = t.inclusion(index, size)
            assert proof == naive_path(index, t.data[:size]), (index, size)
            verify_inclusion(
                leaf_hash=t.leaf_hashes[index],
                index=index,
                tree_size=size,
                proof=proof,
                root=t.roots[size],
            )


def test_consistency_plan_matches_naive_proof_exhaustive() -> None:
    t = tree(SMALL)
    for new in range(1, SMALL + 1):
        for old in range(1, new + 1):
            proof = t.consistency(old, new)
            assert proof == naive_proof(old, t.data[:new]), (old, new)
            verify_consistency(
                old_size=old,
                new_size=new,
                proof=proof,
                old_root=t.roots[old],
                new_root=t.roots[new],
            )


@st.composite
def index_and_size(draw: st.DrawFn, max_size: int = 5000) -> tuple[int, int]:
    size = draw(st.integers(1, max_size))
    return draw(st.integers(0, size - 1)), size


@st.composite
def old_and_new(draw: st.DrawFn, max_size: int = 5000) -> tuple[int, int]:
    new = draw(st.integers(1, max_size))
    return draw(st.integers(1, new)), new


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 5000))
def test_frontier_root_matches_naive_mth_random(size: int) -> None:
    t = tree(LARGE)
    assert t.roots[size] == naive_mth(t.data[:size])


@settings(max_examples=40, deadline=None)
@given(index_and_size())
def test_inclusion_plan_matches_naive_path_random(case: tuple[int, int]) -> None:
    index, size = case
    t = tree(LARGE)
    assert t.inclusion(index, size) == naive_path(index, t.data[:size])


@settings(max_examples=40, deadline=None)
@given(old_and_new())
def test_consistency_plan_matches_naive_proof_random(case: tuple[int, int]) -> None:
    old, new = case
    t = tree(LARGE)
    assert t.consistency(old, new) == naive_proof(old, t.data[:new])


# --- properties (TESTPLAN T3) -------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(index_and_size(), st.integers(0, 255), st.binary(min_size=32, max_size=32))
def test_inclusion_proof_verifies_and_every_mutation_fails(
    case: tuple[int, int], bit: int, junk: bytes
) -> None:
    index, size = case
    t = tree(LARGE)
    proof = t.inclusion(index, size)
    good: dict[str, Any] = {
        "leaf_hash": t.leaf_hashes[index],
        "index": index,
        "tree_size": size,
        "proof": proof,
        "root": t.roots[size],
    }
    verify_inclusion(**good)

    mutations: dict[str, dict[str, Any]] = {
        "index-plus-1": {"index": index + 1},
        "index-minus-1": {"index": index - 1},
        "size-times-2": {"tree_size": size * 2},
        "size-times-2-with-its-root": {"tree_size": size * 2, "root": t.roots[size * 2]},
        "extra-hash-appended": {"proof": proof + [junk]},
        "extra-hash-prepended": {"proof": [junk] + proof},
        "wrong-leaf": {"leaf_hash": t.leaf_hashes[(index + 1) % LARGE]},
        "leaf-data-as-hash": {"leaf_hash": _sha(t.data[index])},
        "flipped-root-bit": {"root": flip(t.roots[size], bit)},
        "root-of-other-size": {"root": t.roots[size + 1]},
    }
    for i in range(len(proof)):
        mutations[f"flipped-bit-in-element-{i}"] = {
            "proof": proof[:i] + [flip(proof[i], bit)] + proof[i + 1 :]
        }
        mutations[f"removed-element-{i}"] = {"proof": proof[:i] + proof[i + 1 :]}
    for name, change in mutations.items():
        assert rejects(verify_inclusion, **{**good, **change}), name


@settings(max_examples=150, deadline=None)
@given(old_and_new(), st.integers(0, 255), st.binary(min_size=32, max_size=32))
def test_consistency_proof_verifies_and_every_mutation_fails(
    case: tuple[int, int], bit: int, junk: bytes
) -> None:
    old, new = case
    t = tree(LARGE)
    proof = t.consistency(old, new)
    good: dict[str, Any] = {
        "old_size": old,
        "new_size": new,
        "proof": proof,
        "old_root": t.roots[old],
        "new_root": t.roots[new],
    }
    verify_consistency(**good)

    mutations: dict[str, dict[str, Any]] = {
        "old-size-plus-1": {"old_size": old + 1},
        "old-size-minus-1": {"old_size": old - 1},
        # Not "new size + 1 with the same root": for some shapes (1 -> 3 presented as 1 -> 4)
        # the RFC 9162 §2.1.4.2 walk is identical, and only the signed checkpoint binds a root
        # to its size. No tree of the claimed size has that root, so nothing false is proved.
        "new-size-plus-1-with-its-root": {"new_size": new + 1, "new_root": t.roots[new + 1]},
        "new-size-times-2": {"new_size": new * 2},
        "new-size-times-2-with-its-root": {"new_size": new * 2, "new_root": t.roots[new * 2]},
        "extra-hash-appended": {"proof": proof + [junk]},
        "extra-hash-prepended": {"proof": [junk] + proof},
        "flipped-old-root-bit": {"old_root": flip(t.roots[old], bit)},
        "flipped-new-root-bit": {"new_root": flip(t.roots[new], bit)},
        "new-root-of-other-size": {"new_root": t.roots[new + 1]},
        "old-root-of-other-size": {"old_root": t.roots[old - 1]},
    }
    for i in range(len(proof)):
        mutations[f"flipped-bit-in-element-{i}"] = {
            "proof": proof[:i] + [flip(proof[i], bit)] + proof[i + 1 :]
        }
        mutations[f"removed-element-{i}"] = {"proof": proof[:i] + proof[i + 1 :]}
    for name, change in mutations.items():
        assert rejects(verify_consistency, **{**good, **change}), name


# --- regressions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "size"),
    [
        pytest.param(3, 3, id="index-equals-size"),
        pytest.param(7, 3, id="index-beyond-size"),
        pytest.param(-1, 3, id="negative-index"),
        pytest.param(0, 0, id="empty-tree"),
        pytest.param(2**64 - 1, 1, id="index-wrapped-to-2^64-1"),
    ],
)
def test_inclusion_out_of_range(index: int, size: int) -> None:
    with pytest.raises(InvalidProofRequest) as raised:
        inclusion_plan(index=index, tree_size=size)
    assert raised.value.code == "invalid_proof_request"
    assert raised.value.facts == {"index": index, "tree_size": size}

    t = tree(8)
    with pytest.raises(InvalidProof) as failed:
        verify_inclusion(
            leaf_hash=t.leaf_hashes[0], index=index, tree_size=size, proof=[], root=t.roots[1]
        )
    assert failed.value.code == "invalid_proof"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(0, 0, id="old-size-zero-new-size-zero"),
        pytest.param(0, 5, id="old-size-zero"),
        pytest.param(6, 5, id="old-size-beyond-new-size"),
        pytest.param(-1, 5, id="negative-old-size"),
    ],
)
def test_consistency_out_of_range(old: int, new: int) -> None:
    with pytest.raises(InvalidProofRequest) as raised:
        consistency_plan(old_size=old, new_size=new)
    assert raised.value.code == "invalid_proof_request"
    assert raised.value.facts == {"old_size": old, "new_size": new}


@pytest.mark.parametrize(
    ("new_size", "new_root"),
    [
        pytest.param(0, EMPTY_ROOT, id="both-trees-empty-and-equal"),
        pytest.param(1, tree(1).roots[1], id="empty-old-tree-proves-nothing"),
    ],
)
def test_old_size_zero_never_verifies(new_size: int, new_root: bytes) -> None:
    with pytest.raises(InvalidProof) as failed:
        verify_consistency(
            old_size=0, new_size=new_size, proof=[], old_root=EMPTY_ROOT, new_root=new_root
        )
    assert failed.value.code == "invalid_proof"


def test_one_inclusion_proof_does_not_serve_two_sizes() -> None:
    t = tree(SMALL)
    for size in range(1, 33):
        for index in range(size):
            proof = t.inclusion(index, size)
            for other in range(index + 1, 33):
                if other == size:
                    continue
                assert rejects(
                    verify_inclusion,
                    leaf_hash=t.leaf_hashes[index],
                    index=index,
                    tree_size=other,
                    proof=proof,
                    root=t.roots[other],
                ), (index, size, other)


def test_leaf_equal_to_node_concatenation_is_not_that_node() -> None:
    # RFC 9162 §2.1.1 domain separation: data that spells two child hashes hashes as a leaf,
    # not as their parent, so an interior node cannot be passed off as a leaf.
    t = tree(4)
    forged = t.leaf_hashes[0] + t.leaf_hashes[1]
    assert len(forged) == 64
    assert leaf_hash(forged) != node_hash(t.leaf_hashes[0], t.leaf_hashes[1])
    assert leaf_hash(forged) != t.nodes[(1, 0)]
    # Claiming the forged leaf is the whole tree of size 1, or leaf 0 of the size-2 subtree's
    # parent tree, fails.
    assert rejects(
        verify_inclusion,
        leaf_hash=leaf_hash(forged), index=0, tree_size=1, proof=[], root=t.roots[2],
    )
    assert rejects(
        verify_inclusion,
        leaf_hash=leaf_hash(forged), index=0, tree_size=2, proof=[t.nodes[(1, 1)]],
        root=t.roots[4],
    )
    # Whereas the node itself, offered where the interior node sits, verifies: the only
    # thing standing between the forgery and acceptance is the leaf prefix.
    verify_inclusion(
        leaf_hash=t.nodes[(1, 0)], index=0, tree_size=2, proof=[t.nodes[(1, 1)]],
        root=t.roots[4],
    )


@pytest.mark.parametrize(
    "length",
    [
        pytest.param(0, id="empty-element"),
        pytest.param(31, id="short-element"),
        pytest.param(33, id="long-element"),
        pytest.param(64, id="two-hashes-in-one-element"),
    ],
)
def test_inclusion_refuses_element_that_is_not_a_hash(length: int) -> None:
    # The root is computed from the odd-length element itself, so only the length check of
    # RFC 9162 §2.1.3.2 ("every proof element is a hash") stands between it and acceptance.
    t = tree(2)
    element = bytes(range(length))
    root = node_hash(t.leaf_hashes[0], element)
    with pytest.raises(InvalidProof):
        verify_inclusion(
            leaf_hash=t.leaf_hashes[0], index=0, tree_size=2, proof=[element], root=root
        )


@pytest.mark.parametrize("length", [0, 31, 33], ids=lambda n: f"leaf-hash-of-{n}-bytes")
def test_inclusion_refuses_leaf_hash_that_is_not_a_hash(length: int) -> None:
    t = tree(2)
    leaf = bytes(range(length))
    root = node_hash(leaf, t.leaf_hashes[1])
    with pytest.raises(InvalidProof):
        verify_inclusion(
            leaf_hash=leaf, index=0, tree_size=2, proof=[t.leaf_hashes[1]], root=root
        )


@pytest.mark.parametrize("length", [0, 31, 33], ids=lambda n: f"element-of-{n}-bytes")
def test_consistency_refuses_element_that_is_not_a_hash(length: int) -> None:
    # Old tree of size 1, new of size 2: the proof is the new leaf, hashed into the new root.
    t = tree(2)
    element = bytes(range(length))
    new_root = node_hash(t.leaf_hashes[0], element)
    with pytest.raises(InvalidProof):
        verify_consistency(
            old_size=1, new_size=2, proof=[element], old_root=t.roots[1], new_root=new_root
        )


def test_consistency_equal_sizes() -> None:
    t = tree(8)
    verify_consistency(old_size=5, new_size=5, proof=[], old_root=t.roots[5], new_root=t.roots[5])
    assert rejects(
        verify_consistency,
        old_size=5, new_size=5, proof=[t.roots[5]], old_root=t.roots[5], new_root=t.roots[5],
    )
    assert rejects(
        verify_consistency,
        old_size=5, new_size=5, proof=[], old_root=t.roots[5], new_root=t.roots[6],
    )
    assert consistency_plan(old_size=5, new_size=5) == []


# --- node naming, frontier and cost ----------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "want"),
    [
        pytest.param(0, 1, [(0, 0)], id="single-leaf"),
        pytest.param(0, 13, [(3, 0), (2, 2), (0, 12)], id="binary-decomposition"),
        pytest.param(8, 13, [(2, 2), (0, 12)], id="right-subtree"),
        pytest.param(16, 32, [(4, 1)], id="perfect-subtree"),
        pytest.param(2, 5, [(1, 1), (0, 4)], id="aligned-to-largest-piece"),
    ],
)
def test_range_nodes(start: int, end: int, want: list[NodeId]) -> None:
    assert range_nodes(start, end) == want


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(2, 6, id="misaligned-perfect-range"),
        pytest.param(1, 4, id="misaligned-largest-piece"),
        pytest.param(3, 3, id="empty-range"),
        pytest.param(-2, 0, id="negative-start"),
    ],
)
def test_range_nodes_refuses(start: int, end: int) -> None:
    with pytest.raises(ValueError):
        range_nodes(start, end)


def test_fold() -> None:
    a, b, c = (_sha(bytes([i])) for i in range(3))
    assert fold([a]) == a
    assert fold([a, b, c]) == node_hash(a, node_hash(b, c))
    with pytest.raises(ValueError):
        fold([])


@pytest.mark.parametrize(
    ("size", "count", "length"),
    [
        pytest.param(5, 1, 32, id="too-few-hashes"),
        pytest.param(5, 3, 32, id="too-many-hashes"),
        pytest.param(0, 1, 32, id="hash-for-empty-tree"),
        pytest.param(4, 1, 31, id="short-hash"),
        pytest.param(-1, 0, 32, id="negative-size"),
    ],
)
def test_frontier_refuses(size: int, count: int, length: int) -> None:
    with pytest.raises(ValueError):
        Frontier(size, [b"\x00" * length] * count)


def test_frontier_append_returns_new_nodes_bottom_up() -> None:
    t = tree(8)
    frontier = Frontier(7, [t.nodes[n] for n in Frontier.needed(7)])
    assert frontier.nodes() == [(2, 0), (1, 2), (0, 6)]
    created = frontier.append(t.leaf_hashes[7])
    assert [node for node, _ in created] == [(0, 7), (1, 3), (2, 1), (3, 0)]
    assert all(t.nodes[node] == value for node, value in created)
    assert frontier.size == 8
    assert frontier.nodes() == [(3, 0)]
    assert frontier.root() == naive_mth(t.data)
    with pytest.raises(ValueError):
        frontier.append(b"\x00" * 31)


def test_append_k_leaves_costs_o_k_plus_log_n(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = merkle.node_hash

    def counting(left: bytes, right: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return real(left, right)

    size = 2**40 - 1  # 40 stored subtrees: the most expensive place to resume.
    frontier = Frontier(size, [_sha(bytes([i])) for i in range(40)])
    monkeypatch.setattr(merkle, "node_hash", counting)
    k = 1000
    for i in range(k):
        frontier.append(_sha(b"new %d" % i))
    frontier.root()
    assert calls <= 2 * k + 2 * size.bit_length()


def test_plans_are_logarithmic_at_huge_sizes() -> None:
    # A plan that walked leaves would never finish at these sizes.
    for size in (10**6, 2**40 + 12345, 2**63 - 1):
        bound = 2 * size.bit_length()
        for index in (0, size // 3, size - 1):
            plan = inclusion_plan(index=index, tree_size=size)
            assert len(plan_nodes(plan)) <= bound
        for old in (1, size // 3, size - 1):
            plan = consistency_plan(old_size=old, new_size=size)
            assert len(plan_nodes(plan)) <= bound


def test_build_proof_reports_a_missing_node() -> None:
    t = tree(8)
    plan = inclusion_plan(index=5, tree_size=8)
    lookup = dict(t.nodes)
    del lookup[(2, 0)]
    with pytest.raises(KeyError):
        build_proof(plan, lookup)
