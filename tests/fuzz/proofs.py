"""TESTPLAN T3, optional item: an atheris (libFuzzer) differential fuzz of the proof verifiers
(``ledger.merkle.verify_inclusion`` / ``verify_consistency``) against the naive reference
recomputed from the leaves (tests/naive_merkle.py). 0 crashes, 0 mismatches.

Each input picks a universe of leaves D (up to ``MAX_LEAVES``), an honest claim about it (an
inclusion of leaf ``index`` in D[:size], or the consistency of D[:old] with D[:new]) with the
honest proof from the naive tree of D, then mutates the claim as the fuzzer says: a flipped bit
anywhere, an index or size moved (±1, x2, 0, negative, huge), a proof element removed, added or
replaced, a wrong leaf or root, arbitrary bytes. The reference verdict comes from the naive
verifiers of tests/naive_merkle.py, which recompute the roots recursively by the RFC 6962
§2.1.1/§2.1.2 definitions of PATH and PROOF (the code under test follows RFC 9162's iterative
algorithm instead); honest claims must hold by both. The verifier must agree with the reference
on every claim, and may only ever raise ``InvalidProof``; any other exception, or a
disagreement, is a crash that libFuzzer reports with the input that caused it.

Run: ``python -m tests.fuzz.proofs [libFuzzer flags]``, e.g. ``-runs=100000`` or
``-max_total_time=600`` (``make fuzz``). tests/fuzz/test_fuzz.py runs a bounded session in
``make test``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import atheris

with atheris.instrument_imports():
    from ledger.errors import InvalidProof
    from ledger.merkle import verify_consistency, verify_inclusion

from ..naive_merkle import naive_leaf_hash, naive_mth, naive_path, naive_proof, naive_verify_consistency, naive_verify_inclusion

MAX_LEAVES = 70
MAX_MUTATIONS = 4


class Mismatch(AssertionError):
    """The verifier and the reference disagree."""


def _size(fdp: Any, current: int) -> int:
    """A size or index moved the way a hostile or buggy prover would move it."""
    choice = fdp.ConsumeIntInRange(0, 6)
    if choice == 0:
        return current + 1
    if choice == 1:
        return current - 1
    if choice == 2:
        return current * 2
    if choice == 3:
        return 0
    if choice == 4:
        return -fdp.ConsumeIntInRange(1, 2**64)
    if choice == 5:
        return fdp.ConsumeIntInRange(0, 2**70)
    return int(fdp.ConsumeIntInRange(0, MAX_LEAVES + 2))


def _bytes(fdp: Any, value: bytes) -> bytes:
    """A hash changed: a flipped bit, truncated, extended, or replaced by fuzzer bytes."""
    choice = fdp.ConsumeIntInRange(0, 3)
    if choice == 0 and value:
        bit = fdp.ConsumeIntInRange(0, len(value) * 8 - 1)
        return value[: bit // 8] + bytes([value[bit // 8] ^ (1 << (bit % 8))]) + value[bit // 8 + 1 :]
    if choice == 1:
        return value[: fdp.ConsumeIntInRange(0, max(0, len(value) - 1))]
    if choice == 2:
        return value + fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 33))
    return bytes(fdp.ConsumeBytes(32))


def _proof(fdp: Any, proof: list[bytes]) -> list[bytes]:
    """A proof changed: one element removed, inserted, replaced or changed, or the whole
    proof replaced by arbitrary elements."""
    choice = fdp.ConsumeIntInRange(0, 4)
    at = fdp.ConsumeIntInRange(0, len(proof))
    if choice == 0 and proof:
        return proof[: min(at, len(proof) - 1)] + proof[min(at, len(proof) - 1) + 1 :]
    if choice == 1:
        return proof[:at] + [bytes(fdp.ConsumeBytes(32))] + proof[at:]
    if choice == 2 and proof:
        i = min(at, len(proof) - 1)
        return proof[:i] + [_bytes(fdp, proof[i])] + proof[i + 1 :]
    if choice == 3:
        return [bytes(fdp.ConsumeBytes(32)) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    return proof[::-1]


def _verdict(check: Callable[[], None]) -> bool:
    try:
        check()
    except InvalidProof:
        return False
    return True


def _mutated(fdp: Any, honest: dict[str, Any], sizes: tuple[str, ...]) -> dict[str, Any]:
    """``honest`` with up to ``MAX_MUTATIONS`` of its fields changed as the fuzzer says: the
    ``sizes`` moved, the proof edited, any other (hash) field damaged."""
    claim = dict(honest)
    fields = list(honest)
    for _ in range(fdp.ConsumeIntInRange(0, MAX_MUTATIONS)):
        what = fdp.PickValueInList(fields)
        if what in sizes:
            claim[what] = _size(fdp, claim[what])
        elif what == "proof":
            claim[what] = _proof(fdp, claim[what])
        else:
            claim[what] = _bytes(fdp, claim[what])
    return claim


def _compare(
    name: str, verify: Callable[..., None], reference: Callable[..., bool], claim: dict[str, Any], honest: dict[str, Any], about: str
) -> None:
    """The verifier's verdict on ``claim`` must be the reference's (which holds every honest claim)."""
    holds = reference(**claim)
    if claim == honest:
        assert holds, "the reference refuses an honest proof"
    got = _verdict(lambda: verify(**claim))
    if got != holds:
        raise Mismatch(f"{name} said {got}, the reference {holds}: {about}, {len(claim['proof'])} proof hashes")


def _inclusion(fdp: Any, leaves: list[bytes]) -> None:
    size = fdp.ConsumeIntInRange(1, len(leaves))
    index = fdp.ConsumeIntInRange(0, size - 1)
    honest: dict[str, Any] = {
        "leaf_hash": naive_leaf_hash(leaves[index]), "index": index, "tree_size": size,
        "proof": naive_path(index, leaves[:size]), "root": naive_mth(leaves[:size]),
    }
    claim = _mutated(fdp, honest, ("index", "tree_size"))
    about = f"index {claim['index']}, size {claim['tree_size']}"
    _compare("verify_inclusion", verify_inclusion, naive_verify_inclusion, claim, honest, about)


def _consistency(fdp: Any, leaves: list[bytes]) -> None:
    new = fdp.ConsumeIntInRange(1, len(leaves))
    old = fdp.ConsumeIntInRange(1, new)
    honest: dict[str, Any] = {
        "old_size": old, "new_size": new, "proof": naive_proof(old, leaves[:new]),
        "old_root": naive_mth(leaves[:old]), "new_root": naive_mth(leaves[:new]),
    }
    claim = _mutated(fdp, honest, ("old_size", "new_size"))
    about = f"sizes {claim['old_size']} -> {claim['new_size']}"
    _compare("verify_consistency", verify_consistency, naive_verify_consistency, claim, honest, about)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    count = fdp.ConsumeIntInRange(1, MAX_LEAVES)
    # Leaves of fuzzer bytes, made distinct so that "the same claim" means the same leaf.
    leaves = [i.to_bytes(1, "big") + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8)) for i in range(count)]
    if fdp.ConsumeBool():
        _inclusion(fdp, leaves)
    else:
        _consistency(fdp, leaves)


def main(argv: list[str]) -> None:
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
