"""Storing webhooks (docs/webhooks.md): members' subscriptions, and the outbox of deliveries
that ``filiera worker`` fills from the facts projection and works through.

The outbox is filled by cursor: each subscription remembers the position in the facts feed up
to which every fact its member may see has been queued. :func:`fill` reads on from there and,
in one write transaction, queues what it read and moves the cursor, so a crash at any point
either queues a page and moves past it, or does neither: no fact is skipped or queued twice,
and sealing never writes here. A subscription holds at most ``window`` undelivered facts; the
rest wait in the projection itself, so a dead endpoint costs the database nothing more than
its cursor.

Times are Unix milliseconds, from the caller's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from ..errors import TooManyWebhooks
from ..facts import Fact
from ..visibility import SEE_ALL_ROLES
from ..webhooks import MAX_SUBSCRIPTIONS, message_body, message_id
from . import schema as t
from .analytics import Cursor, feed
from .store import Store

__all__ = [
    "Subscription",
    "Delivery",
    "Backlog",
    "create_subscription",
    "subscriptions_of",
    "subscription",
    "active_subscriptions",
    "delete_subscription",
    "backlog",
    "fill",
    "head_delivery",
    "record_success",
    "record_failure",
    "mark_gone",
    "prune_delivered",
    "deliveries",
]

_S = t.webhook_subscriptions
_D = t.webhook_deliveries


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    member: str
    url: str
    types: tuple[str, ...]
    description: str | None
    sealed_secret: str
    created_at: str
    after: Cursor
    status: str


@dataclass(frozen=True, slots=True)
class Delivery:
    subscription: str
    index: int
    seq: int
    kind: str
    body: bytes
    status: str
    attempts: int
    created_at: int
    next_attempt_at: int
    last_attempt_at: int | None
    last_result: str | None
    delivered_at: int | None

    @property
    def msg_id(self) -> str:
        return message_id(self.subscription, self.index, self.seq)


@dataclass(frozen=True, slots=True)
class Backlog:
    """What a member sees of a subscription's deliveries."""

    pending: int
    attempts: int  # of the oldest pending delivery (0 if none is pending or it was not tried)
    next_attempt_at: int | None
    last_result: str | None
    last_delivered_at: int | None


def _subscription(row: Any) -> Subscription:
    return Subscription(
        id=row.id, member=row.member, url=row.url, types=tuple(row.types.split(",")),
        description=row.description, sealed_secret=row.secret, created_at=row.created_at,
        after=Cursor(row.after_idx, row.after_seq), status=row.status,
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        subscription=row.subscription, index=row.idx, seq=row.seq, kind=row.kind,
        body=row.body.encode("utf-8"), status=row.status, attempts=row.attempts,
        created_at=row.created_at, next_attempt_at=row.next_attempt_at,
        last_attempt_at=row.last_attempt_at, last_result=row.last_result, delivered_at=row.delivered_at,
    )


# --- subscriptions -------------------------------------------------------------------------


def create_subscription(
    store: Store, *, id: str, member: str, url: str, types: Sequence[str], description: str | None,
    sealed_secret: str, created_at: str, after: Cursor | None,
) -> Subscription:
    """Store a new subscription. Without ``after`` it starts at the head: it gets the facts
    sealed from now on. Raises TooManyWebhooks at the member's limit."""
    with store.write() as conn:
        count = conn.execute(select(func.count()).select_from(_S).where(_S.c.member == member)).scalar_one()
        if count >= MAX_SUBSCRIPTIONS:
            raise TooManyWebhooks(
                f"{member} has {count} webhook subscriptions, the most a member may have; delete one first",
                limit=MAX_SUBSCRIPTIONS,
            )
        if after is None:
            head = store.head(conn)
            after = Cursor(head.tree_size - 1 if head else -1)
        row = {
            "id": id, "member": member, "url": url, "types": ",".join(types), "description": description,
            "secret": sealed_secret, "created_at": created_at, "after_idx": after.index,
            "after_seq": after.seq, "status": "active",
        }
        conn.execute(insert(_S).values(**row))
    return Subscription(
        id=id, member=member, url=url, types=tuple(types), description=description, sealed_secret=sealed_secret,
        created_at=created_at, after=after, status="active",
    )


def subscriptions_of(conn: Connection, member: str) -> list[Subscription]:
    rows = conn.execute(select(_S).where(_S.c.member == member).order_by(_S.c.created_at, _S.c.id))
    return [_subscription(r) for r in rows]


def subscription(conn: Connection, id: str) -> Subscription | None:
    row = conn.execute(select(_S).where(_S.c.id == id)).first()
    return _subscription(row) if row else None


def active_subscriptions(conn: Connection) -> list[Subscription]:
    return [_subscription(r) for r in conn.execute(select(_S).where(_S.c.status == "active").order_by(_S.c.id))]


def delete_subscription(store: Store, *, member: str, id: str) -> bool:
    """Delete ``member``'s subscription ``id`` and its outbox; False if they have none such."""
    with store.write() as conn:
        gone = conn.execute(delete(_S).where(_S.c.id == id, _S.c.member == member)).rowcount
        if gone:
            conn.execute(delete(_D).where(_D.c.subscription == id))
    return bool(gone)


def backlog(conn: Connection, id: str) -> Backlog:
    pending = conn.execute(
        select(func.count()).select_from(_D).where(_D.c.subscription == id, _D.c.status == "pending")
    ).scalar_one()
    head = _head(conn, id)
    last = conn.execute(
        select(func.max(_D.c.delivered_at)).where(_D.c.subscription == id, _D.c.status == "delivered")
    ).scalar_one()
    return Backlog(
        pending=pending,
        attempts=head.attempts if head else 0,
        next_attempt_at=head.next_attempt_at if head else None,
        last_result=head.last_result if head else None,
        last_delivered_at=last,
    )


# --- the outbox ----------------------------------------------------------------------------


def _block_times(conn: Connection, sizes: set[int]) -> dict[int, str]:
    rows = conn.execute(select(t.blocks.c.tree_size, t.blocks.c.time).where(t.blocks.c.tree_size.in_(sorted(sizes))))
    return {r.tree_size: r.time for r in rows}


def fill(store: Store, sub: Subscription, *, window: int, now_ms: int) -> int:
    """Queue the facts after ``sub``'s cursor that its member may see, of its types, until
    it has ``window`` undelivered; returns how many were queued. The member's roles are read
    afresh each time: what they may see is what the ledger says now."""
    with store.read() as conn:
        pending = conn.execute(
            select(func.count()).select_from(_D).where(_D.c.subscription == sub.id, _D.c.status == "pending")
        ).scalar_one()
        room = window - pending
        participant = store.participant(conn, sub.member)
        if room <= 0 or participant is None:
            return 0
        # The head first: every fact below its tree size is committed (a fact is written in
        # its block's transaction), whatever PostgreSQL's READ COMMITTED shows later queries.
        head = store.head(conn)
        if head is None:
            return 0
        viewer = None if not SEE_ALL_ROLES.isdisjoint(participant.roles) else participant.id
        page = feed(conn, after=sub.after, limit=room, viewer=viewer, kinds=sub.types)
        complete = [f for f in page if f.index < head.tree_size]
        if len(complete) == room:
            after = Cursor(complete[-1].index, complete[-1].seq)
        else:
            # Everything visible below the head is in the page: skip past the facts this
            # member may not see too, so they are not read again.
            after = Cursor(head.tree_size - 1)
        times = _block_times(conn, {f.tree_size for f in complete}) if complete else {}
    if after == sub.after and not complete:
        return 0
    rows = [_row(sub.id, f, times.get(f.tree_size, ""), now_ms) for f in complete]
    with store.write() as conn:
        # Moved only from where this read started: if anything else moved it meanwhile
        # (a second worker despite the lock, or the subscription was deleted), do nothing.
        moved = conn.execute(
            update(_S)
            .where(_S.c.id == sub.id, _S.c.after_idx == sub.after.index, _cursor_seq_is(sub.after.seq))
            .values(after_idx=after.index, after_seq=after.seq)
        ).rowcount
        if moved and rows:
            conn.execute(insert(_D), rows)
    return len(rows) if moved else 0


def _cursor_seq_is(seq: int | None) -> Any:
    return _S.c.after_seq.is_(None) if seq is None else _S.c.after_seq == seq


def _row(sub: str, fact: Fact, sealed_at: str, now_ms: int) -> dict[str, Any]:
    return {
        "subscription": sub, "idx": fact.index, "seq": fact.seq, "kind": fact.kind,
        "body": message_body(fact.to_json(), sealed_at=sealed_at).decode("utf-8"),
        "status": "pending", "attempts": 0, "created_at": now_ms, "next_attempt_at": now_ms,
        "last_attempt_at": None, "last_result": None, "delivered_at": None,
    }


def _head(conn: Connection, sub: str) -> Delivery | None:
    row = conn.execute(
        select(_D).where(_D.c.subscription == sub, _D.c.status == "pending").order_by(_D.c.idx, _D.c.seq).limit(1)
    ).first()
    return _delivery(row) if row else None


def head_delivery(store: Store, sub: str) -> Delivery | None:
    """The oldest undelivered fact of ``sub``: the only one that may be sent (in order)."""
    with store.read() as conn:
        return _head(conn, sub)


def _where(d: Delivery) -> list[Any]:
    return [_D.c.subscription == d.subscription, _D.c.idx == d.index, _D.c.seq == d.seq, _D.c.status == "pending"]


def record_success(store: Store, d: Delivery, *, now_ms: int, result: str) -> None:
    with store.write() as conn:
        conn.execute(update(_D).where(*_where(d)).values(
            status="delivered", attempts=d.attempts + 1, last_attempt_at=now_ms, delivered_at=now_ms,
            last_result=result[:200],
        ))


def record_failure(store: Store, d: Delivery, *, now_ms: int, next_ms: int, result: str) -> None:
    with store.write() as conn:
        conn.execute(update(_D).where(*_where(d)).values(
            attempts=d.attempts + 1, last_attempt_at=now_ms, next_attempt_at=next_ms, last_result=result[:200],
        ))


def mark_gone(store: Store, sub: str) -> None:
    """The endpoint answered 410 Gone: stop delivering to it (Standard Webhooks)."""
    with store.write() as conn:
        conn.execute(update(_S).where(_S.c.id == sub).values(status="gone"))


def prune_delivered(store: Store, *, before_ms: int) -> int:
    """Forget deliveries that succeeded before ``before_ms``."""
    with store.write() as conn:
        return int(conn.execute(delete(_D).where(_D.c.status == "delivered", _D.c.delivered_at < before_ms)).rowcount)


def deliveries(conn: Connection, sub: str) -> list[Delivery]:
    """Every delivery still kept for ``sub``, in log order (for tests and operators)."""
    rows = conn.execute(select(_D).where(_D.c.subscription == sub).order_by(_D.c.idx, _D.c.seq))
    return [_delivery(r) for r in rows]
