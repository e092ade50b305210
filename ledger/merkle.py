"""RFC 9162 §2.1 Merkle tree hashes, the stored nodes each proof needs, and proof checks.

The log's tree is the RFC 6962 / RFC 9162 §2.1.1 tree over SHA-256. Storage keeps the hash of
every *perfect subtree* ever completed, named by :data:`NodeId` ``(level, index)``: the node
covering leaves ``[index << level, (index + 1) << level)``; level 0 nodes are leaf hashes.

This module only names nodes and hashes what it is given: it never reads storage and never walks
all leaves. Every hash in a proof or a root is the right-to-left :func:`fold` of the hashes of a
few stored nodes (:func:`range_nodes`), so a proof at tree size n costs O(log n) node reads and
O(log n) hashes. Everything here is pure: no I/O, clock or database.

Implements RFC 9162 §2.1.1 (tree hash), §2.1.3.1 and §2.1.3.2 (inclusion proofs), §2.1.4.1 and
§2.1.4.2 (consistency proofs). Verification follows the conventions of transparency-dev/merkle
for the cases the RFC leaves open (see ``tests/vectors/merkle-rfc9162/README.md``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TypeAlias

from ledger.errors import InvalidProof, InvalidProofRequest

__all__ = [
    "HASH_SIZE",
    "EMPTY_ROOT",
    "NodeId",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "fold",
    "Frontier",
    "inclusion_plan",
    "consistency_plan",
    "plan_nodes",
    "build_proof",
    "verify_inclusion",
    "verify_consistency",
]

NodeId: TypeAlias = tuple[int, int]
"""``(level, index)``: the perfect subtree over leaves ``[index << level, (index+1) << level)``."""

HASH_SIZE = 32
"""Bytes in every hash of the tree (SHA-256)."""

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256 of the empty string (RFC 9162 §2.1.1)."""

# RFC 9162 §2.1.1 domain separation: a leaf hash and a node hash can never be confused, which is
# what defeats the second-preimage attack of presenting an interior node as a leaf.
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """Return MTH({data}) = SHA-256(0x00 || data) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right) (RFC 9162 §2.1.1).

    The inputs are hashed as given, whatever their length; callers that verify proofs check
    lengths first.
    """
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Return k, the largest power of two smaller than n (RFC 9162 §2.1.1). Requires n >= 2."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[NodeId]:
    """Name the perfect subtrees, left to right, whose :func:`fold` is MTH(D[start:end]).

    The nodes are the binary decomposition of ``n = end - start`` from the largest power of two
    down, laid out from ``start``. For ``start == 0`` this is the compact range of a tree of
    size ``end``.

    Requires ``0 <= start < end`` and ``start`` a multiple of the largest power of two that is
    ``<= end - start``, so that each piece is an aligned, stored node. Every range that RFC 9162
    §2.1.1 recursion reaches from ``[0, n)`` (hence every element of an inclusion or consistency
    proof) satisfies this: ``start`` is even a multiple of the smallest power of two
    ``>= end - start``. Raises ValueError otherwise (a programming error, not a request error).
    """
    if not 0 <= start < end:
        raise ValueError(f"range_nodes needs 0 <= start < end, got [{start}, {end})")
    n = end - start
    top = n.bit_length() - 1
    if start & ((1 << top) - 1):
        raise ValueError(f"range [{start}, {end}) is not aligned to stored subtrees")
    nodes: list[NodeId] = []
    pos = start
    for level in range(top, -1, -1):
        if (n >> level) & 1:
            nodes.append((level, pos >> level))
            pos += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Fold subtree hashes right to left: ``node_hash(h0, node_hash(h1, ... h_last))``.

    For the hashes of :func:`range_nodes` this is the RFC 9162 §2.1.1 tree hash of the range,
    because MTH splits off the largest power of two on the left at every step.
    Requires ``hashes`` non-empty; raises ValueError otherwise.
    """
    if not hashes:
        raise ValueError("fold needs at least one hash")
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


class Frontier:
    """The compact range ``[0, size)``: the hashes of ``range_nodes(0, size)``, largest first.

    Enough to compute the root and to append leaves without reading anything else. To resume
    appending at ``size``, storage reads the nodes named by :meth:`Frontier.needed`.
    """

    __slots__ = ("_size", "_levels", "_hashes")

    def __init__(self, size: int, hashes: Sequence[bytes]) -> None:
        """Requires ``size >= 0`` and ``hashes`` the 32-byte hashes of ``range_nodes(0, size)``
        in that order (empty for size 0). Raises ValueError otherwise.
        """
        if size < 0:
            raise ValueError(f"tree size must be >= 0, got {size}")
        levels = [level for level, _ in self.needed(size)]
        if len(hashes) != len(levels):
            raise ValueError(
                f"a frontier of size {size} needs {len(levels)} hashes, got {len(hashes)}"
            )
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError(f"frontier hashes must be {HASH_SIZE} bytes each")
        self._size = size
        self._levels = levels
        self._hashes = [bytes(h) for h in hashes]

    @classmethod
    def needed(cls, size: int) -> list[NodeId]:
        """Name the nodes storage must read to build the frontier of ``size`` leaves.

        Requires ``size >= 0``; raises ValueError otherwise.
        """
        if size < 0:
            raise ValueError(f"tree size must be >= 0, got {size}")
        return range_nodes(0, size) if size else []

    @property
    def size(self) -> int:
        """Number of leaves in the tree."""
        return self._size

    def hashes(self) -> list[bytes]:
        """The hashes of :meth:`nodes`, largest first (what the constructor takes)."""
        return list(self._hashes)

    def nodes(self) -> list[NodeId]:
        """Name the nodes whose hashes this frontier holds, largest first."""
        return self.needed(self._size)

    def root(self) -> bytes:
        """Return MTH(D[0:size]), or :data:`EMPTY_ROOT` for size 0 (RFC 9162 §2.1.1)."""
        if not self._hashes:
            return EMPTY_ROOT
        return fold(self._hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[NodeId, bytes]]:
        """Append one leaf in place; return the new nodes to store, bottom-up.

        The first is the level-0 node of the new leaf, then every parent it completes. Appending
        k leaves costs k hashes plus the completed parents, fewer than 2k hashes in total.
        Requires a 32-byte leaf hash; raises ValueError otherwise.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf_hash)}")
        level, index, h = 0, self._size, bytes(leaf_hash)
        created: list[tuple[NodeId, bytes]] = [((level, index), h)]
        # The trailing one bits of size are the small subtrees the new leaf completes.
        while self._levels and self._levels[-1] == level:
            self._levels.pop()
            h = node_hash(self._hashes.pop(), h)
            level += 1
            index >>= 1
            created.append(((level, index), h))
        self._levels.append(level)
        self._hashes.append(h)
        self._size += 1
        return created


def _inclusion_ranges(index: int, tree_size: int) -> list[tuple[int, int]]:
    """Leaf ranges of PATH(index, D[0:tree_size]), leaf's sibling first (RFC 9162 §2.1.3.1).

    Requires 0 <= index < tree_size. Walks one root-to-leaf path: O(log n).
    """
    siblings: list[tuple[int, int]] = []
    lo, hi = 0, tree_size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k.
            siblings.append((mid, hi))
            hi = mid
        else:
            # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k]) for m >= k.
            siblings.append((lo, mid))
            lo = mid
    siblings.reverse()
    return siblings


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges of SUBPROOF(old_size, D[0:new_size], true) in proof order (RFC 9162 §2.1.4.1).

    Requires 0 < old_size <= new_size. Walks one root-to-leaf path: O(log n).
    """
    elements: list[tuple[int, int]] = []
    lo, hi, complete = 0, new_size, True
    # Invariant: lo < old_size <= hi, so the loop ends when old_size == hi.
    while old_size != hi:
        mid = lo + _split(hi - lo)
        if old_size <= mid:
            # SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) for m <= k.
            elements.append((mid, hi))
            hi = mid
        else:
            # SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]) for m > k.
            elements.append((lo, mid))
            lo = mid
            complete = False
    if not complete:
        # SUBPROOF(m, D[m], false) = {MTH(D[m])}: the old tree's last subtree, named because
        # the verifier cannot rebuild it (with b true the verifier already holds it as the root).
        elements.append((lo, hi))
    elements.reverse()
    return elements


def inclusion_plan(*, index: int, tree_size: int) -> list[list[NodeId]]:
    """Name the nodes of the audit path for leaf ``index`` in the tree of ``tree_size`` leaves.

    One list per path element, from the leaf's sibling up to the root's child (RFC 9162
    §2.1.3.1 PATH order); an element's hash is the :func:`fold` of its nodes' hashes.
    O(log tree_size), no recursion. Requires ``0 <= index < tree_size``; raises
    InvalidProofRequest otherwise.
    """
    if not 0 <= index < tree_size:
        raise InvalidProofRequest(
            f"leaf index must be in [0, tree_size); got index {index} for tree size {tree_size}",
            index=index,
            tree_size=tree_size,
        )
    return [range_nodes(lo, hi) for lo, hi in _inclusion_ranges(index, tree_size)]


def consistency_plan(*, old_size: int, new_size: int) -> list[list[NodeId]]:
    """Name the nodes of the consistency proof from ``old_size`` to ``new_size`` leaves.

    RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[0:n], true), one list per element, each
    hashed by :func:`fold`; ``old_size == new_size`` gives ``[]``. O(log new_size).
    Requires ``0 < old_size <= new_size``; raises InvalidProofRequest otherwise.
    """
    if not 0 < old_size <= new_size:
        raise InvalidProofRequest(
            "consistency proofs need 0 < old_size <= new_size; "
            f"got old size {old_size}, new size {new_size}",
            old_size=old_size,
            new_size=new_size,
        )
    return [range_nodes(lo, hi) for lo, hi in _consistency_ranges(old_size, new_size)]


def plan_nodes(plan: Sequence[Sequence[NodeId]]) -> set[NodeId]:
    """Return every node a plan needs, so storage can fetch them in one query."""
    return {node for element in plan for node in element}


def build_proof(plan: Sequence[Sequence[NodeId]], lookup: Mapping[NodeId, bytes]) -> list[bytes]:
    """Hash a plan into proof elements using the node hashes storage fetched.

    Requires ``lookup`` to hold every node of :func:`plan_nodes` (plan); raises KeyError naming
    the first missing node otherwise.
    """
    return [fold([lookup[node] for node in element]) for element in plan]


def _check_hash(value: bytes, what: str, **facts: object) -> None:
    if len(value) != HASH_SIZE:
        raise InvalidProof(f"{what} must be {HASH_SIZE} bytes, got {len(value)}", **facts)


def verify_inclusion(
    *, leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` leaves at ``root``.

    RFC 9162 §2.1.3.2. Requires ``0 <= index < tree_size``, a 32-byte leaf hash, root and proof
    elements, and exactly as many proof elements as the tree shape needs. Returns None when the
    proof holds; raises InvalidProof otherwise (never returns False).
    """
    facts = {"index": index, "tree_size": tree_size}
    # RFC 9162 §2.1.3.2 step 1: an index outside the tree has no proof (this also refuses
    # every proof for the empty tree).
    if not 0 <= index < tree_size:
        raise InvalidProof(
            f"leaf index {index} is not in a tree of size {tree_size}", **facts
        )
    _check_hash(leaf_hash, "leaf hash", **facts)
    _check_hash(root, "root", **facts)
    for i, element in enumerate(proof):
        _check_hash(element, f"proof element {i}", **facts)
    # The RFC loop below also rejects a wrong length (steps 4a and 5); checking it first gives
    # the caller a precise reason and bounds the work done on hostile input.
    want = len(_inclusion_ranges(index, tree_size))
    if len(proof) != want:
        raise InvalidProof(
            f"inclusion proof has {len(proof)} hashes, a tree of size {tree_size} needs {want}",
            **facts,
        )
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in proof:
        # RFC 9162 §2.1.3.2 step 4a.
        if sn == 0:
            raise InvalidProof("inclusion proof is too long", **facts)
        # Step 4b: the node is a right child, or the last node of its level.
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        # Step 4c.
        fn >>= 1
        sn >>= 1
    # Step 5.
    if sn != 0:
        raise InvalidProof("inclusion proof is too short", **facts)
    if r != root:
        raise InvalidProof("inclusion proof does not lead to the root", **facts)


def verify_consistency(
    *,
    old_size: int,
    new_size: int,
    proof: Sequence[bytes],
    old_root: bytes,
    new_root: bytes,
) -> None:
    """Check that the tree of ``new_size`` leaves at ``new_root`` extends ``old_root``.

    RFC 9162 §2.1.4.2, with the transparency-dev/merkle conventions for the cases it leaves
    open: ``old_size`` must be > 0 (even when ``new_size`` is 0) and <= ``new_size``;
    equal sizes hold iff the proof is empty and the roots are equal. Roots and proof elements
    must be 32 bytes, and the proof exactly as long as the sizes need.
    Returns None when the proof holds; raises InvalidProof otherwise (never returns False).
    """
    facts = {"old_size": old_size, "new_size": new_size}
    if old_size <= 0:
        # A tree of size 0 is consistent with everything: such a proof proves nothing, so it
        # is refused rather than accepted (transparency-dev/merkle convention).
        raise InvalidProof(f"old size must be > 0, got {old_size}", **facts)
    if new_size < old_size:
        raise InvalidProof(
            f"new size {new_size} is smaller than old size {old_size}", **facts
        )
    _check_hash(old_root, "old root", **facts)
    _check_hash(new_root, "new root", **facts)
    for i, element in enumerate(proof):
        _check_hash(element, f"proof element {i}", **facts)
    if old_size == new_size:
        if proof:
            raise InvalidProof("a consistency proof between equal sizes must be empty", **facts)
        if old_root != new_root:
            raise InvalidProof("equal tree sizes with different roots", **facts)
        return
    want = len(_consistency_ranges(old_size, new_size))
    if len(proof) != want:
        raise InvalidProof(
            f"consistency proof has {len(proof)} hashes, sizes {old_size} -> {new_size} "
            f"need {want}",
            **facts,
        )
    # RFC 9162 §2.1.4.2 step 2: for an old tree that is a perfect subtree, the proof omits
    # its root, which the verifier already holds.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # Steps 3 and 4.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    fr = sr = path[0]
    for c in path[1:]:
        # Step 6a.
        if sn == 0:
            raise InvalidProof("consistency proof is too long", **facts)
        # Step 6b.
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        # Step 6c.
        fn >>= 1
        sn >>= 1
    # Step 7.
    if sn != 0:
        raise InvalidProof("consistency proof is too short", **facts)
    if fr != old_root:
        raise InvalidProof("consistency proof does not lead to the old root", **facts)
    if sr != new_root:
        raise InvalidProof("consistency proof does not lead to the new root", **facts)
