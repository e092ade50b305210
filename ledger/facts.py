"""The facts projection: analytics facts derived from sealed entries (docs/analytics.md).

:func:`derive_block` turns the entries one block sealed, and the ledger state its replay left,
into immutable facts, one table per kind:

``shipment``
    a handoff closed by a receipt (or received at once, co-signed): transit hours, on time or
    late against the contract's ``deliver_by``, accepted or rejected.
``dwell``
    a lot leaving a site: hours between its arrival there and its dispatch.
``delivery``
    a lot accepted under a contract, or by a retailer or buyer: custody chain length, origin
    mix and certified share.
``contract``
    a contract closed: quantity delivered against its terms.
``payment``
    a payment: days from the receipt of the contract's last delivery.

A fact sits at the log position of the entry that completes it, ``(index, seq)`` with ``seq``
its ordinal among that entry's facts: the feed's cursor. It names the entries it is derived
from and the tree size of the block that sealed it. Sealing derives and writes a block's facts
in the block's own transaction, so a fact exists exactly when its block does; ``filiera
verify`` and ``filiera facts rebuild`` replay the log through this same function.

Pure: no I/O, clock or database. Derivation never raises on a valid log: a record it cannot
find (which the rules make impossible) leaves that fact out rather than stop sealing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .encoding import parse_time
from .entries import Envelope
from .facts_state import ContractProgress, FactsState, LotTrace
from .payloads import EntryType
from .state import ContractRecord, HandoffRecord, LedgerState, LotRecord

__all__ = ["Fact", "KINDS", "COLUMNS", "MAX_ENTRIES", "DELIVERY_ROLES", "derive_block", "prefetch_block", "region_of"]

# A fact names at most this many entries (the storage has a column for each).
MAX_ENTRIES = 3

# Recipients who take delivery as customers, when no contract says so.
DELIVERY_ROLES = frozenset({"retailer", "buyer"})

# The columns of each kind's table besides the common ones (index, seq, tree_size, entries,
# day): name -> type ("text", "int", "float", "bool", or "time": RFC 3339 text that exports
# type as a timestamp). The order is the export's.
COLUMNS: Mapping[str, Mapping[str, str]] = {
    "shipment": {
        "handoff": "text", "receipt": "text", "sender": "text", "recipient": "text",
        "customer": "text", "supplier": "text", "contract": "text", "product": "text",
        "region": "text", "lots": "int", "quantity": "float", "unit": "text",
        "dispatched_at": "time", "received_at": "time", "transit_hours": "float",
        "deliver_by": "text", "on_time": "bool", "status": "text", "cosigned": "bool",
    },
    "dwell": {
        "lot": "text", "site": "text", "product": "text", "region": "text", "arrived_at": "time",
        "departed_at": "time", "hours": "float", "arrival": "text", "handoff": "text",
    },
    "delivery": {
        "lot": "text", "product": "text", "quantity": "float", "unit": "text", "customer": "text",
        "supplier": "text", "contract": "text", "region": "text", "origins": "text", "hops": "int",
        "certified": "float", "received_at": "time",
    },
    "contract": {
        "contract": "text", "customer": "text", "supplier": "text", "product": "text",
        "region": "text", "ordered": "float", "delivered": "float", "unit": "text",
        "fulfilment": "float", "deliveries": "int", "status": "text", "deliver_by": "text",
    },
    "payment": {
        "payment": "text", "customer": "text", "supplier": "text", "contract": "text",
        "product": "text", "region": "text", "amount": "float", "currency": "text",
        "paid_at": "time", "received_at": "time", "days_to_pay": "float",
    },
}
KINDS = tuple(COLUMNS)


@dataclass(frozen=True, slots=True)
class Fact:
    """One fact: its kind, position, the tree size it was sealed at, the (entry id, log
    index) pairs it is derived from, its date (``YYYY-MM-DD``, what date filters and months
    use) and the columns of its kind."""

    kind: str
    index: int
    seq: int
    tree_size: int
    entries: tuple[tuple[str, int], ...]
    day: str
    values: Mapping[str, Any]

    @property
    def cursor(self) -> str:
        return f"{self.index}.{self.seq}"

    def to_json(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor, "kind": self.kind, "index": self.index, "seq": self.seq,
            "tree_size": self.tree_size, "entries": [e for e, _ in self.entries], "day": self.day,
            **self.values,
        }


def region_of(origin: Mapping[str, Any]) -> str:
    """``COUNTRY/region`` of an origin payload's ``origin`` object (``COUNTRY`` alone without
    a region)."""
    country = str(origin.get("country", ""))
    return f"{country}/{origin['region']}" if origin.get("region") else country


@functools.lru_cache(maxsize=4096)
def _seconds(value: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (the lots of one handoff share theirs)."""
    return parse_time(value, field="time").timestamp()


def _hours(start: str, end: str) -> float:
    return (_seconds(end) - _seconds(start)) / 3600


def _dec(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        return Decimal(0)


def _mix(parts: Sequence[tuple[LotTrace, Decimal, str]]) -> tuple[tuple[tuple[str, float], ...], float]:
    """The combined origin mix and certified share of lots (trace, quantity, unit): weighted by
    quantity when they share a unit, equally otherwise."""
    if not parts:
        return (), 0.0
    same = len({u for _, _, u in parts}) == 1 and all(q > 0 for _, q, _ in parts)
    total = sum((q for _, q, _ in parts), Decimal(0)) if same else Decimal(len(parts))
    shares: dict[str, float] = {}
    certified = 0.0
    for trace, q, _ in parts:
        w = float((q if same else Decimal(1)) / total)
        for region, share in trace.origins:
            shares[region] = shares.get(region, 0.0) + share * w
        certified += trace.certified * w
    return tuple(sorted((r, round(s, 9)) for r, s in shares.items())), round(certified, 9)


def _main_region(origins: Sequence[tuple[str, float]]) -> str | None:
    if not origins:
        return None
    return min(origins, key=lambda rs: (-rs[1], rs[0]))[0]


class _Block:
    """Derivation of one block's facts (one instance per block)."""

    def __init__(self, state: LedgerState, facts: FactsState, tree_size: int) -> None:
        self.state, self.facts, self.tree_size = state, facts, tree_size
        self.out: list[Fact] = []
        self.index = 0
        self.seq = 0

    def emit(self, kind: str, entries: Sequence[tuple[str, int] | None], day: str, **values: Any) -> None:
        named = tuple(dict.fromkeys(e for e in entries if e is not None))
        assert 1 <= len(named) <= MAX_ENTRIES
        cols = COLUMNS[kind]
        self.out.append(Fact(kind, self.index, self.seq, self.tree_size, named, day, {c: values.get(c) for c in cols}))
        self.seq += 1

    def entry(self, index: int, env: Envelope) -> None:
        self.index, self.seq = index, 0
        handler = _HANDLERS.get(env.type)
        if handler is not None:
            handler(self, env)

    # --- lots ---------------------------------------------------------------------------

    def _lots(self, lot_ids: Sequence[str]) -> list[tuple[LotRecord, LotTrace]]:
        found = []
        for lot_id in lot_ids:
            rec, trace = self.state.lot(lot_id), self.facts.trace(lot_id)
            if rec is not None and trace is not None:
                found.append((rec, trace))
        return found

    def origin(self, env: Envelope) -> None:
        p = env.payload
        origin = p["origin"]
        arrived = f"{origin['produced_on']}T00:00:00Z" if origin.get("produced_on") else env.time
        for spec in p["lots"]:
            self.facts.put_trace(
                LotTrace(
                    lot=spec["lot"], created_by=env.id, custodian=env.author, arrived_at=arrived,
                    arrival=env.id, arrival_index=self.index, hops=0,
                    origins=((region_of(origin), 1.0),), certified=0.0,
                )
            )

    def transform(self, env: Envelope) -> None:
        p = env.payload
        inputs = self._lots(p["inputs"])
        origins, certified = _mix([(t, _dec(r.quantity), r.unit) for r, t in inputs])
        # The outputs were on site since the first of their inputs arrived.
        first = min(inputs, key=lambda rt: _seconds(rt[1].arrived_at), default=None)
        arrived, arrival, arrival_index = (
            (first[1].arrived_at, first[1].arrival, first[1].arrival_index) if first else (env.time, env.id, self.index)
        )
        hops = max((t.hops for _, t in inputs), default=0)
        for spec in p["outputs"]:
            self.facts.put_trace(
                LotTrace(
                    lot=spec["lot"], created_by=env.id, custodian=env.author, arrived_at=arrived,
                    arrival=arrival, arrival_index=arrival_index, hops=hops, origins=origins,
                    certified=certified,
                )
            )

    def attestation(self, env: Envelope) -> None:
        subject = str(env.payload["subject"])
        covered = self.facts.created_by(subject)
        trace = self.facts.trace(subject) if not covered else None
        for t in [*covered, *([trace] if trace is not None else [])]:
            self.facts.put_trace(_replace(t, certified=1.0))

    # --- custody --------------------------------------------------------------------------

    def handoff(self, env: Envelope) -> None:
        h = self.state.handoff(env.id)
        if h is None:
            return
        me = (env.id, self.index)
        for rec, t in self._lots(h.lots):
            self.emit(
                "dwell", [(t.arrival, t.arrival_index), me], h.dispatched_at[:10],
                lot=rec.lot, site=h.sender, product=rec.product, region=_main_region(t.origins),
                arrived_at=t.arrived_at, departed_at=h.dispatched_at,
                hours=_hours(t.arrived_at, h.dispatched_at), arrival=t.arrival, handoff=env.id,
            )
        if h.closed_by == env.id:
            # Co-signed by the recipient: received at once (PROTOCOL §4).
            self.closed(h, None, accepted=True, received_at=h.dispatched_at)

    def receipt(self, env: Envelope) -> None:
        h = self.state.handoff(str(env.payload["handoff"]))
        if h is None:
            return
        accepted = env.payload["status"] == "accepted"
        self.closed(h, (env.id, self.index), accepted=accepted, received_at=str(env.payload["received_at"]))

    def closed(self, h: HandoffRecord, receipt: tuple[str, int] | None, *, accepted: bool, received_at: str) -> None:
        """A handoff received (``receipt`` None: co-signed): the shipment, the deliveries, and
        where its lots now are."""
        lots = self._lots(h.lots)
        contract = self.state.contract(h.contract) if h.contract else None
        c_entry = (contract.entry, contract.index) if contract else None
        units = {r.unit for r, _ in lots}
        unit = next(iter(units)) if len(units) == 1 else None
        quantity = float(sum((_dec(r.quantity) for r, _ in lots), Decimal(0))) if unit else None
        origins, _ = _mix([(t, _dec(r.quantity), r.unit) for r, t in lots])
        region = _main_region(origins)
        product = _product(contract, lots)
        customer, supplier = (contract.buyer, contract.seller) if contract else (h.recipient, h.sender)
        deliver_by = str(contract.terms["deliver_by"]) if contract else None
        named = [(h.id, h.index), receipt, c_entry]
        self.emit(
            "shipment", named, received_at[:10],
            handoff=h.id, receipt=receipt[0] if receipt else None, sender=h.sender,
            recipient=h.recipient, customer=customer, supplier=supplier,
            contract=h.contract, product=product, region=region, lots=len(h.lots), quantity=quantity,
            unit=unit, dispatched_at=h.dispatched_at,
            received_at=received_at, transit_hours=_hours(h.dispatched_at, received_at),
            deliver_by=deliver_by, on_time=(received_at[:10] <= deliver_by) if deliver_by else None,
            status="accepted" if accepted else "rejected", cosigned=receipt is None,
        )
        arrival = receipt or (h.id, h.index)
        for rec, t in lots:
            moved = _replace(
                t, custodian=h.recipient if accepted else h.sender, arrived_at=received_at,
                arrival=arrival[0], arrival_index=arrival[1], hops=t.hops + 1 if accepted else t.hops,
            )
            self.facts.put_trace(moved)
        if not accepted:
            return
        who = self.state.participant(h.recipient)
        if contract is not None or (who is not None and who.has_any_role(DELIVERY_ROLES)):
            for rec, t in lots:
                self.emit(
                    "delivery", named, received_at[:10],
                    lot=rec.lot, product=product if contract else rec.product, quantity=float(_dec(rec.quantity)),
                    unit=rec.unit, customer=customer, supplier=supplier, contract=h.contract,
                    region=_main_region(t.origins), origins=json.dumps(dict(t.origins), sort_keys=True),
                    hops=t.hops + 1, certified=t.certified, received_at=received_at,
                )
        if contract is not None:
            before = self.facts.progress(contract.id) or ContractProgress(contract.id, "0", 0)
            unit = contract.terms.get("unit")
            add = sum((_dec(r.quantity) for r, _ in lots if r.unit == unit), Decimal(0))
            self.facts.put_progress(
                ContractProgress(
                    contract=contract.id, delivered=str(_dec(before.delivered) + add),
                    deliveries=before.deliveries + 1, received_at=received_at,
                    receipt=arrival[0], receipt_index=arrival[1], region=region,
                )
            )

    # --- commerce -------------------------------------------------------------------------

    def contract_close(self, env: Envelope) -> None:
        c = self.state.contract(str(env.payload["contract"]))
        if c is None:
            return
        progress = self.facts.progress(c.id) or ContractProgress(c.id, "0", 0)
        ordered, delivered = _dec(str(c.terms["quantity"])), _dec(progress.delivered)
        self.emit(
            "contract", [(c.entry, c.index), (env.id, self.index)], str(c.terms["deliver_by"]),
            contract=c.id, customer=c.buyer, supplier=c.seller, product=str(c.terms["product"]),
            region=progress.region, ordered=float(ordered), delivered=float(delivered),
            unit=str(c.terms["unit"]), fulfilment=float(delivered / ordered) if ordered else None,
            deliveries=progress.deliveries, status=str(env.payload["status"]),
            deliver_by=str(c.terms["deliver_by"]),
        )

    def payment(self, env: Envelope) -> None:
        p = env.payload
        cid = p.get("contract")
        c = self.state.contract(str(cid)) if cid else None
        progress = self.facts.progress(c.id) if c else None
        receipt = (progress.receipt, progress.receipt_index) if progress and progress.receipt and progress.receipt_index is not None else None
        received = progress.received_at if receipt and progress else None
        paid = str(p["paid_at"])
        self.emit(
            "payment", [(env.id, self.index), (c.entry, c.index) if c else None, receipt], paid[:10],
            payment=env.id, customer=str(p["payer"]), supplier=str(p["payee"]), contract=cid,
            product=str(c.terms["product"]) if c else None, region=progress.region if progress else None,
            amount=float(_dec(str(p["amount"]))), currency=str(p["currency"]), paid_at=paid,
            received_at=received, days_to_pay=_hours(received, paid) / 24 if received else None,
        )


def _product(contract: ContractRecord | None, lots: Sequence[tuple[LotRecord, LotTrace]]) -> str | None:
    """The contract's product; without one, the lots' product (``mixed`` if they differ)."""
    if contract is not None:
        return str(contract.terms["product"])
    products = {r.product for r, _ in lots}
    return products.pop() if len(products) == 1 else ("mixed" if products else None)


def _replace(t: LotTrace, **changes: Any) -> LotTrace:
    return dataclasses.replace(t, **changes)


_HANDLERS = {
    EntryType.ORIGIN: _Block.origin,
    EntryType.TRANSFORM: _Block.transform,
    EntryType.ATTESTATION: _Block.attestation,
    EntryType.HANDOFF: _Block.handoff,
    EntryType.RECEIPT: _Block.receipt,
    EntryType.CONTRACT_CLOSE: _Block.contract_close,
    EntryType.PAYMENT: _Block.payment,
}


def prefetch_block(state: LedgerState, facts: FactsState, sealed: Sequence[tuple[int, Envelope]]) -> None:
    """Load in bulk the traces and contract progress ``sealed`` will need (one query per kind
    with a database source); only a speed-up."""
    lots: set[str] = set()
    contracts: set[str] = set()
    creators: list[str] = []
    for _, env in sealed:
        p = env.payload
        if env.type is EntryType.HANDOFF:
            lots.update(p["lots"])
        elif env.type is EntryType.TRANSFORM:
            lots.update(p["inputs"])
        elif env.type is EntryType.RECEIPT:
            h = state.handoff(str(p["handoff"]))
            if h is not None:
                lots.update(h.lots)
                if h.contract:
                    contracts.add(h.contract)
        elif env.type is EntryType.ATTESTATION:
            lots.add(str(p["subject"]))
            creators.append(str(p["subject"]))
        if env.type in (EntryType.HANDOFF, EntryType.PAYMENT, EntryType.CONTRACT_CLOSE) and p.get("contract"):
            contracts.add(str(p["contract"]))
    facts.prefetch(lots=lots, contracts=contracts, creators=creators)


def derive_block(
    state: LedgerState, facts: FactsState, sealed: Sequence[tuple[int, Envelope]], *, tree_size: int
) -> list[Fact]:
    """The facts of one block: ``sealed`` are its (log index, envelope) pairs in log order,
    ``state`` the ledger state after the block, ``tree_size`` the block's. Updates ``facts``
    (flush its changes with the block)."""
    prefetch_block(state, facts, sealed)
    block = _Block(state, facts, tree_size)
    for index, env in sealed:
        block.entry(index, env)
    return block.out
