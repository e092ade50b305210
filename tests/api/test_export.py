"""``GET /v1/export`` (PROTOCOL §6): the audit bundle (ledger/bundle.py, filiera-bundle/v1)
through HTTP as an auditor's tool reads it, on SQLite and PostgreSQL.

Every record is compared with what the ledger serves elsewhere (blocks, entries, checkpoint),
leaf hashes are recomputed from the leaf data and the whole log's root with a naive RFC 6962
tree; refusals are asserted by status and ``code``.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from ledger.bundle import (
    BundleBlock,
    BundleCheckpoint,
    BundleConsistency,
    BundleEnd,
    BundleEntry,
    BundleHeader,
    Record,
    read_records,
)
from ledger.errors import InvalidProof
from ledger.httpsig import sign_request
from ledger.merkle import leaf_hash, verify_consistency
from ledger.notes import NoteVerifier, verify_checkpoint

from ..conftest import LedgerEnv
from ..factories import ORIGIN, Member, post_batch, register
from ..ledger.test_merkle import naive_mth
from ..supply import lot, origin

NDJSON = "application/x-ndjson"


def _grow(client: FlaskClient, producer: Member, batches: list[int], tag: str) -> None:
    """One block per batch, of that many harvested lots (batches are sealed in one block)."""
    for b, n in enumerate(batches):
        resp = post_batch(client, [origin(producer, lot(f"L-{tag}-{b}-{i}")) for i in range(n)])
        assert resp.status_code == 200
        assert [r["status"] for r in resp.json["results"]] == [201] * n, resp.json


def _ledger(client: FlaskClient, env: LedgerEnv) -> dict[str, Member]:
    """Blocks 0 (genesis), 1 (three registrations), 2 to 4 (2, 3 and 4 lots): 13 entries."""
    ms = {"auditor": Member("revisori"), "producer": Member("masseria"), "retailer": Member("mercato")}
    roles = {"auditor": ["auditor"], "producer": ["producer"], "retailer": ["retailer"]}
    resp = post_batch(client, [register(env.admin, m, roles[k]) for k, m in ms.items()])
    assert [r["status"] for r in resp.json["results"]] == [201] * 3
    _grow(client, ms["producer"], [2, 3, 4], "a")
    return ms


def _blocks(client: FlaskClient) -> list[dict[str, Any]]:
    resp = client.get("/v1/blocks?from=0&limit=1000")
    assert resp.status_code == 200
    blocks: list[dict[str, Any]] = resp.json["blocks"]
    return blocks


def _records(resp: Any) -> list[Record]:
    assert resp.status_code == 200, resp.data[:500]
    assert resp.mimetype == NDJSON
    return list(read_records(resp.data.splitlines(keepends=True)))


def _check_bundle(client: FlaskClient, records: list[Record], *, heights: range) -> None:
    """The bundle holds exactly the blocks ``heights``, each followed by its entries once and
    in log order, all as the ledger serves them, then the last block's checkpoint and the end."""
    info = client.get("/v1/ledger").json
    served = {b["header"]["height"]: b for b in _blocks(client)}
    header, *body = records
    assert isinstance(header, BundleHeader)
    assert (header.origin, header.verifier_key, header.public_key, header.genesis) == (
        ORIGIN, info["verifier_key"], info["public_key"], info["genesis"],
    )
    if body and isinstance(body[0], BundleConsistency):
        body = body[1:]
    *body, checkpoint, end = body
    first = served[heights[0]]["header"]["first_index"]
    assert header.from_index == first

    seen_heights: list[int] = []
    index = first
    pos = 0
    while pos < len(body):
        block = body[pos]
        assert isinstance(block, BundleBlock), block
        want = served[block.header["height"]]
        assert (dict(block.header), block.hash, block.signature, block.checkpoint) == (
            want["header"], want["hash"], want["signature"], want["checkpoint"],
        )
        seen_heights.append(block.header["height"])
        count = block.header["tree_size"] - block.header["first_index"]
        entries = body[pos + 1 : pos + 1 + count]
        assert all(isinstance(e, BundleEntry) for e in entries)
        assert [e.index for e in entries if isinstance(e, BundleEntry)] == list(range(index, index + count))
        assert [e.id for e in entries if isinstance(e, BundleEntry)] == want["entries"]
        for e in entries:
            assert isinstance(e, BundleEntry)
            assert e.leaf_hash == leaf_hash(e.leaf_data).hex()
            assert e.leaf_hash == client.get(f"/v1/entries/{e.id}").json["leaf_hash"]
        index += count
        pos += 1 + count
    assert seen_heights == list(heights)
    last = served[heights[-1]]
    assert isinstance(checkpoint, BundleCheckpoint) and checkpoint.checkpoint == last["checkpoint"]
    assert isinstance(end, BundleEnd)
    assert (end.blocks, end.entries, end.tree_size) == (len(heights), index - first, last["header"]["tree_size"])


@pytest.mark.parametrize("who", ["admin", "auditor"])
def test_an_export_holds_every_block_and_entry_once_and_in_order(client: FlaskClient, ledger_env: LedgerEnv, who: str) -> None:
    ms = _ledger(client, ledger_env)
    reader = client if who == "admin" else client.as_member(ms["auditor"])
    resp = reader.get("/v1/export")
    records = _records(resp)
    _check_bundle(client, records, heights=range(0, 5))

    assert resp.headers["Content-Disposition"] == f"attachment; filename={ORIGIN}-0-13.ndjson"
    assert (resp.headers["Filiera-Export-From"], resp.headers["Filiera-Export-To"]) == ("0", "13")
    assert resp.headers["Cache-Control"] == "no-store"
    # The final checkpoint is the ledger's, signed by its key, and its root is the root of the
    # leaves the bundle carries (a naive RFC 6962 tree over them).
    final = records[-2]
    assert isinstance(final, BundleCheckpoint)
    assert final.checkpoint.encode() == client.get("/v1/checkpoint").data
    verifier = NoteVerifier.parse(client.get("/v1/ledger").json["verifier_key"])
    cp = verify_checkpoint(final.checkpoint, verifier=verifier, origin=ORIGIN)
    leaves = [r.leaf_data for r in records if isinstance(r, BundleEntry)]
    assert (cp.tree_size, cp.root) == (13, naive_mth(leaves))


def test_the_export_is_streamed_a_line_at_a_time(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    _ledger(client, ledger_env)
    headers = sign_request("GET", "http://localhost/v1/export", ledger_env.admin.key)
    resp = client.get("/v1/export", headers=headers, unsigned=True, buffered=False)
    try:
        assert resp.is_streamed
        chunks = list(resp.iter_encoded())
    finally:
        resp.close()
    # header, 5 blocks, 13 entries, checkpoint, end: one chunk each, never the whole body.
    assert len(chunks) == 1 + 5 + 13 + 2
    assert all(c.endswith(b"\n") and c.count(b"\n") == 1 for c in chunks)


def test_other_members_are_refused_and_unsigned_requests_unauthenticated(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    ms = _ledger(client, ledger_env)
    for who in ("producer", "retailer"):
        resp = client.as_member(ms[who]).get("/v1/export")
        assert (resp.status_code, resp.mimetype, resp.json["code"]) == (403, "application/problem+json", "auditors_only")
        assert resp.json["participant"] == ms[who].id
    resp = client.get("/v1/export", unsigned=True)
    assert (resp.status_code, resp.json["code"]) == (401, "signature_required")


@pytest.mark.parametrize(
    "query",
    [
        "from=-1", "to=-3", "since=-1", "from=abc", "to=1.5", "since=x", "from=",
        "from=13", "from=99999999999999999999", "to=14", "from=5&to=3", "from=4&to=4",
        "from=2&to=5",  # inside block 1 and block 2: no whole block
        "since=0", "since=14", "to=4&since=5", "tree_size=3",
    ],
)
def test_bad_ranges_are_400_invalid_export_range(client: FlaskClient, ledger_env: LedgerEnv, query: str) -> None:
    _ledger(client, ledger_env)
    before = client.get("/v1/checkpoint").data
    resp = client.get(f"/v1/export?{query}")
    assert (resp.status_code, resp.mimetype) == (400, "application/problem+json"), resp.data[:300]
    assert resp.json["code"] == "invalid_export_range"
    assert "Content-Disposition" not in resp.headers
    assert client.get("/v1/checkpoint").data == before


def test_a_range_starting_inside_a_block_starts_at_the_next_whole_block(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    _ledger(client, ledger_env)
    blocks = {b["header"]["height"]: b["header"] for b in _blocks(client)}
    inside_2 = blocks[2]["first_index"] + 1
    inside_4 = blocks[4]["first_index"] + 2
    resp = client.get(f"/v1/export?from={inside_2}&to={inside_4}")
    # Block 2 began before `from` and block 4 ends after `to`: only block 3 is whole inside.
    _check_bundle(client, _records(resp), heights=range(3, 4))
    assert resp.headers["Content-Disposition"] == (
        f"attachment; filename={ORIGIN}-{blocks[3]['first_index']}-{blocks[3]['tree_size']}.ndjson"
    )
    # A range on block boundaries is kept as it is.
    exact = client.get(f"/v1/export?from={blocks[1]['first_index']}&to={blocks[3]['tree_size']}")
    _check_bundle(client, _records(exact), heights=range(1, 4))


def test_since_adds_a_consistency_record_that_verifies(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    ms = _ledger(client, ledger_env)
    verifier = NoteVerifier.parse(client.get("/v1/ledger").json["verifier_key"])
    trusted = verify_checkpoint(client.get("/v1/checkpoint").data, verifier=verifier, origin=ORIGIN)
    _grow(client, ms["producer"], [1, 5], "b")

    resp = client.as_member(ms["auditor"]).get(f"/v1/export?from={trusted.tree_size}&since={trusted.tree_size}")
    records = _records(resp)
    _check_bundle(client, records, heights=range(5, 7))
    consistency = records[1]
    assert isinstance(consistency, BundleConsistency)
    final = records[-2]
    assert isinstance(final, BundleCheckpoint)
    new = verify_checkpoint(final.checkpoint, verifier=verifier, origin=ORIGIN)
    assert (consistency.from_size, consistency.to_size, new.tree_size) == (13, 19, 19)
    assert consistency.checkpoint == final.checkpoint
    proof = [bytes.fromhex(h) for h in consistency.hashes]
    verify_consistency(old_size=13, new_size=19, proof=proof, old_root=trusted.root, new_root=new.root)
    # The proof ties the two roots: any other trusted root is refused.
    with pytest.raises(InvalidProof):
        verify_consistency(old_size=13, new_size=19, proof=proof, old_root=new.root, new_root=new.root)


def test_the_export_is_documented_as_a_signed_ndjson_operation(client: FlaskClient, ledger_env: LedgerEnv) -> None:
    op = client.get("/openapi.json").json["paths"]["/v1/export"]["get"]
    assert op["security"] == [{"memberSignature": []}]
    assert set(op["responses"]) >= {"200", "400", "401", "403"}
    assert "application/x-ndjson" in op["responses"]["200"]["content"]
    assert {p["name"] for p in op["parameters"] if p["in"] == "query"} == {"from", "to", "since"}
