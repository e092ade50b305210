"""Witness policies in the c2sp.org/tlog-policy format, and quorum evaluation."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.cosignature import Cosigner
from ledger.errors import InvalidWitnessPolicy
from ledger.keys import SigningKey
from ledger.notes import verifier_for
from ledger.witness_policy import WitnessPolicy

W = [Cosigner(f"witness{i}.example/w", SigningKey(bytes([i + 1]) * 32)).verifier.vkey for i in range(6)]
LOG = verifier_for("ledger.example/oil", SigningKey(bytes([9]) * 32).public_key.raw).vkey


def test_spec_example_shape() -> None:
    """The two-level example of tlog-policy §Example policy, with keys filled in."""
    text = f"""
# comment
log {LOG}

witness X1 {W[0]}
witness X2 {W[1]} http://x2.example:7380
witness X3 {W[2]}\thttps://x3.example/prefix/
group X-witnesses 2 X1 X2 X3

witness Y1 {W[3]}
witness Y2 {W[4]}
witness Y3 {W[5]}
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
"""
    policy = WitnessPolicy.parse(text)
    assert [w.name for w in policy.witnesses] == ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
    assert [log.vkey for log in policy.logs] == [LOG]
    x2 = policy.witness("X2")
    assert x2 is not None and x2.add_checkpoint_url == "http://x2.example:7380/add-checkpoint"
    x3 = policy.witness("X3")
    assert x3 is not None and x3.add_checkpoint_url == "https://x3.example/prefix/add-checkpoint"
    assert policy.satisfied({"X1", "X2", "Y3"})
    assert not policy.satisfied({"X1", "Y1", "Y2", "Y3"})
    assert not policy.satisfied({"X1", "X2", "X3"})
    assert not policy.satisfied(set())


def test_quorum_none_and_single_witness() -> None:
    assert WitnessPolicy.parse("quorum none\n").satisfied(set())
    single = WitnessPolicy.parse(f"witness a {W[0]} http://127.0.0.1:1\nquorum a\n")
    assert single.satisfied({"a"}) and not single.satisfied(set())


@given(k=st.integers(1, 5), cosigned=st.sets(st.sampled_from(["a", "b", "c", "d", "e"])))
def test_k_of_n(k: int, cosigned: set[str]) -> None:
    names = ["a", "b", "c", "d", "e"]
    lines = [f"witness {n} {W[i]}" for i, n in enumerate(names)]
    policy = WitnessPolicy.parse("\n".join([*lines, f"group g {k} a b c d e", "quorum g"]))
    assert policy.satisfied(cosigned) == (len(cosigned) >= k)


@pytest.mark.parametrize(
    ("case", "text"),
    [
        ("no-quorum", f"witness a {W[0]}\n"),
        ("two-quorums", f"witness a {W[0]}\nquorum a\nquorum none\n"),
        ("quorum-undefined", "quorum a\n"),
        ("forward-reference", f"group g any a\nwitness a {W[0]}\nquorum g\n"),
        ("duplicate-key", f"witness a {W[0]}\nwitness b {W[0]}\nquorum a\n"),
        ("duplicate-name", f"witness a {W[0]}\nwitness a {W[1]}\nquorum a\n"),
        ("group-named-like-witness", f"witness a {W[0]}\ngroup a any a\nquorum a\n"),
        ("member-twice", f"witness a {W[0]}\ngroup g 1 a a\nquorum g\n"),
        ("threshold-zero", f"witness a {W[0]}\ngroup g 0 a\nquorum g\n"),
        ("threshold-above-n", f"witness a {W[0]}\ngroup g 2 a\nquorum g\n"),
        ("threshold-leading-zero", f"witness a {W[0]}\ngroup g 01 a\nquorum g\n"),
        ("empty-group", f"witness a {W[0]}\ngroup g any\nquorum g\n"),
        ("none-as-name", f"witness none {W[0]}\nquorum none\n"),
        ("note-key-as-witness", f"witness a {LOG}\nquorum a\n"),
        ("cosigner-key-as-log", f"log {W[0]}\nquorum none\n"),
        ("bad-url", f"witness a {W[0]} ftp://x.example\nquorum a\n"),
        ("url-with-query", f"witness a {W[0]} http://x.example/?a=b\nquorum a\n"),
        ("too-many-items", f"witness a {W[0]} http://x.example extra\nquorum a\n"),
        ("unknown-keyword", "witnesses a\nquorum none\n"),
        ("control-character", "quorum none\r\n"),
        ("not-utf8", b"quorum none\n# \xff\n"),
    ],
)
def test_bad_policies_name_the_line(case: str, text: str | bytes) -> None:
    with pytest.raises(InvalidWitnessPolicy) as exc:
        WitnessPolicy.parse(text, source="policy.txt")
    assert exc.value.code == "invalid_witness_policy"
    assert "policy.txt" in exc.value.detail


def test_nested_groups_count_each_member_once() -> None:
    lines = [f"witness w{i} {W[i]}" for i in range(4)]
    policy = WitnessPolicy.parse("\n".join([*lines, "group a 2 w0 w1", "group b any w2 w3", "group top 2 a b", "quorum top"]))
    for r in range(5):
        for chosen in itertools.combinations(["w0", "w1", "w2", "w3"], r):
            s = set(chosen)
            expected = len(s & {"w0", "w1"}) >= 2 and len(s & {"w2", "w3"}) >= 1
            assert policy.satisfied(s) == expected, s
