"""Members of the ledger: roles and keys with their status and heights (PROTOCOL §4)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import Connection

from ledger.encoding import check_participant_id
from ledger.errors import InvalidPage, ParticipantNotFound
from ledger.state import ParticipantRecord

from ..auth import member_required
from ..openapi import operation
from ..schemas.participants import ParticipantListSchema, ParticipantSchema, ParticipantsQuerySchema
from ..services import load_query, services

bp = Blueprint("participants", __name__)


def _participant_json(conn: Connection, rec: ParticipantRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "name": rec.name,
        "roles": list(rec.roles),
        "attributes": rec.attributes,
        "registered_index": rec.registered_index,
        "registered_height": rec.registered_height,
        "keys": [k.to_json() for k in services().store.keys_of(conn, rec.id)],
    }


@bp.get("/v1/participants")
@operation(summary="Members, a page at a time", tag="participants", query=ParticipantsQuerySchema, responses={200: ParticipantListSchema}, member=True)
@member_required
def list_participants() -> Response:
    """Members ordered by id, after ``after``; ``next`` is the cursor for the next page."""
    svc = services()
    args = load_query(ParticipantsQuerySchema)
    if args["limit"] > svc.settings.page_max:
        raise InvalidPage(f"limit must be at most {svc.settings.page_max}", limit=svc.settings.page_max)
    with svc.store.read() as conn:
        recs = svc.store.participants(conn, after=args["after"], limit=args["limit"])
        items = [_participant_json(conn, r) for r in recs]
    nxt = items[-1]["id"] if len(items) == args["limit"] else None
    return jsonify(participants=items, next=nxt)


@bp.get("/v1/participants/<participant_id>")
@operation(summary="One member", tag="participants", responses={200: ParticipantSchema}, errors=(400, 404), member=True)
@member_required
def get_participant(participant_id: str) -> Response:
    check_participant_id(participant_id, field="id")
    svc = services()
    with svc.store.read() as conn:
        rec = svc.store.participant(conn, participant_id)
        if rec is None:
            raise ParticipantNotFound(f"no participant {participant_id}", participant=participant_id)
        return jsonify(_participant_json(conn, rec))
