"""A naive RFC 6962 §2.1 Merkle tree, recursive over the leaf data, written straight from the
RFC text with hashlib and nothing of ``ledger.merkle``: the reference that tests/ledger/test_merkle.py
and the differential fuzz (tests/fuzz/proofs.py) hold the fast code to."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "naive_leaf_hash", "naive_mth", "naive_path", "naive_proof", "naive_subproof",
    "naive_verify_consistency", "naive_verify_inclusion",
]

HASH_SIZE = 32


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 §2.1."""
    n = len(d)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + d[0])
    k = _k(n)
    return _sha(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:]))


def naive_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 §2.1.1."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return naive_path(m, d[:k]) + [naive_mth(d[k:])]
    return naive_path(m - k, d[k:]) + [naive_mth(d[:k])]


def naive_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 6962 §2.1.2."""
    n = len(d)
    if m == n:
        return [] if b else [naive_mth(d)]
    k = _k(n)
    if m <= k:
        return naive_subproof(m, d[:k], b) + [naive_mth(d[k:])]
    return naive_subproof(m - k, d[k:], False) + [naive_mth(d[:k])]


def naive_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 6962 §2.1.2."""
    return naive_subproof(m, d, True)


def naive_leaf_hash(data: bytes) -> bytes:
    """The leaf hash of RFC 6962 §2.1: SHA-256(0x00 || data)."""
    return _sha(b"\x00" + data)


def _node(left: bytes, right: bytes) -> bytes:
    return _sha(b"\x01" + left + right)


def _path_root(m: int, n: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
    """The root that PATH(m, D[n]) = ``proof`` leads to from leaf hash ``leaf``, read back through
    the recursion of RFC 6962 §2.1.1 (the last element is the sibling at the top); None if
    the proof has the wrong length for that recursion."""
    if n == 1:
        return leaf if not proof else None
    if not proof:
        return None
    k = _k(n)
    if m < k:
        below = _path_root(m, k, leaf, proof[:-1])
        return None if below is None else _node(below, proof[-1])
    below = _path_root(m - k, n - k, leaf, proof[:-1])
    return None if below is None else _node(proof[-1], below)


def _subproof_roots(m: int, n: int, proof: list[bytes], b: bool, old_root: bytes) -> tuple[bytes, bytes] | None:
    """(old root, new root) that SUBPROOF(m, D[n], b) = ``proof`` stands for, read back through
    the recursion of RFC 6962 §2.1.2; ``old_root`` is the verifier's own when the recursion
    leaves it out (b and m == n). None if the proof has the wrong length."""
    if m == n:
        if b:
            return (old_root, old_root) if not proof else None
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k = _k(n)
    if m <= k:
        below = _subproof_roots(m, k, proof[:-1], b, old_root)
        return None if below is None else (below[0], _node(below[1], proof[-1]))
    below = _subproof_roots(m - k, n - k, proof[:-1], False, old_root)
    return None if below is None else (_node(proof[-1], below[0]), _node(proof[-1], below[1]))


def naive_verify_inclusion(*, leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` is PATH(index, D[tree_size]) for some D whose leaf ``index`` has
    ``leaf_hash`` and whose MTH is ``root``: all hashes 32 bytes, 0 <= index < tree_size."""
    if not 0 <= index < tree_size or any(len(h) != HASH_SIZE for h in (leaf_hash, root, *proof)):
        return False
    return _path_root(index, tree_size, leaf_hash, list(proof)) == root


def naive_verify_consistency(*, old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes) -> bool:
    """Whether ``proof`` is PROOF(old_size, D[new_size]) for some D with MTH(D[old_size]) =
    ``old_root`` and MTH(D[new_size]) = ``new_root``: all hashes 32 bytes, 0 < old_size <=
    new_size (a proof from the empty tree proves nothing and is refused)."""
    if not 0 < old_size <= new_size or any(len(h) != HASH_SIZE for h in (old_root, new_root, *proof)):
        return False
    roots = _subproof_roots(old_size, new_size, list(proof), True, old_root)
    return roots == (old_root, new_root)
