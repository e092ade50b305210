"""Submitting and reading entries (PROTOCOL §3, §6)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from ledger.encoding import unhex32
from ledger.errors import BatchTooLarge, EntryNotFound, InvalidField, error_for_code

from ..auth import current_member, member_required
from ..body import read_json
from ..openapi import operation
from ..problems import problem_body, status_for
from ..schemas.entries import (
    BatchRequestSchema,
    BatchResponseSchema,
    EntrySchema,
    EnvelopeSchema,
    PendingSchema,
    ReceiptSchema,
)
from ..services import services

bp = Blueprint("entries", __name__)


def _prefers_async() -> bool:
    prefer = request.headers.get("Prefer", "")
    return any(p.strip().lower() == "respond-async" for p in prefer.split(","))


@bp.post("/v1/entries")
@operation(
    summary="Submit one signed entry",
    tag="entries",
    body=EnvelopeSchema,
    responses={200: ReceiptSchema, 201: ReceiptSchema, 202: PendingSchema},
    headers={"Location": "the entry's URL"},
    errors=(400, 403, 404, 409, 413, 415, 422),
)
def submit() -> tuple[Response, int]:
    """``201`` with the receipt once the entry's block has committed; ``200`` with the same
    receipt if the entry was already sealed; ``202`` with ``Prefer: respond-async`` once the
    entry is queued durably (it is sealed without further action)."""
    obj = read_json()
    outcome = services().sealer.submit(obj, wait=not _prefers_async())
    assert outcome.id is not None
    location = url_for("entries.get_entry", entry_id=outcome.id)
    if outcome.status == "pending":
        resp = jsonify(id=outcome.id, status="pending")
        resp.headers["Location"] = location
        resp.headers["Preference-Applied"] = "respond-async"
        return resp, 202
    assert outcome.receipt is not None
    resp = jsonify(outcome.receipt.to_json())
    resp.headers["Location"] = location
    return resp, 201 if outcome.status == "created" else 200


@bp.post("/v1/entries/batch")
@operation(
    summary="Submit up to 1,000 entries, sealed in order",
    tag="entries",
    body=BatchRequestSchema,
    responses={200: BatchResponseSchema},
    errors=(400, 413, 415),
)
def submit_batch() -> Response:
    """Each entry is checked against the state left by the ones before it. The response lists,
    in order, what each entry alone would have got: its status and receipt or problem."""
    svc = services()
    obj = read_json()
    if not isinstance(obj, dict) or set(obj) != {"entries"} or not isinstance(obj["entries"], list):
        raise InvalidField('send {"entries": [envelope, ...]}', field="entries")
    entries = obj["entries"]
    if len(entries) > svc.settings.max_batch:
        raise BatchTooLarge(
            f"at most {svc.settings.max_batch} entries per batch, got {len(entries)}",
            limit=svc.settings.max_batch,
        )
    results: list[dict[str, Any]] = []
    for o in svc.sealer.submit_batch(entries, wait=True):
        if o.error is not None:
            results.append({"status": status_for(o.error), **({"id": o.id} if o.id else {}), "problem": problem_body(o.error)})
        elif o.receipt is not None:
            results.append({"status": 201 if o.status == "created" else 200, **o.receipt.to_json()})
        else:
            results.append({"status": 202, "id": o.id})
    return jsonify(results=results)


@bp.get("/v1/entries/<entry_id>")
@operation(
    summary="One entry with its position",
    tag="entries",
    responses={200: EntrySchema, 202: PendingSchema},
    errors=(400, 404, 422),
    member=True,
)
@member_required
def get_entry(entry_id: str) -> tuple[Response, int]:
    """A sealed entry; ``202`` while it is queued; the refusal's problem if sealing refused it.
    Members other than auditors and admins see only entries they author, sign or are named in:
    for any other entry the answer is 404, so that its existence does not leak."""
    unhex32(entry_id, field="id")
    svc = services()
    member = current_member()
    with svc.store.read() as conn:
        row = svc.store.entry_by_id(conn, entry_id)
        if row is not None and not member.sees_all and not svc.store.entry_visible_to(conn, member.id, row.idx):
            row = None
            hidden = True
        else:
            hidden = False
        pending = None if row or hidden else svc.store.pending_row(conn, entry_id)
        if pending is not None and not member.sees_all and member.id not in _named(pending.leaf_data):
            pending = None
    if row is not None:
        env = json.loads(row.leaf_data)
        return jsonify(
            id=row.id, index=row.idx, height=row.height, leaf_hash=row.leaf_hash,
            payload=env["payload"], signatures=env["signatures"],
        ), 200
    if pending is not None and pending.status == "pending":
        return jsonify(id=entry_id, status="pending"), 202
    if pending is not None:
        raise error_for_code(pending.code, pending.detail, entry=entry_id)
    # The same answer whether the entry does not exist or is not yours to see.
    raise EntryNotFound(f"no entry {entry_id} that you may see in this ledger", entry=entry_id)


def _named(leaf_data: str) -> set[str]:
    """Author and signers of a queued entry: who may follow it before it is sealed."""
    env = json.loads(leaf_data)
    return {env["payload"].get("author"), *(s.get("signer") for s in env.get("signatures", []))}
