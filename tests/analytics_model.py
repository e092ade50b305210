"""An independent model of the analytics (docs/analytics.md), for the tests: the facts a log
makes, computed from an audit bundle's entries with plain dictionaries and ``datetime``, and
the KPIs computed from a list of facts with ``statistics``. It shares no code with
``ledger.facts`` or ``ledger.storage.analytics``: it follows the documented definitions.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.bundle import BundleEntry, Record

DIMENSIONS = ("customer", "supplier", "region", "product", "month")


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _hours(start: str, end: str) -> float:
    return (_t(end) - _t(start)).total_seconds() / 3600


def _mix(parts: list[tuple[dict[str, Any], Decimal, str]]) -> tuple[dict[str, float], float]:
    """Origin shares and certified share of several lots: by quantity if they share a unit."""
    if not parts:
        return {}, 0.0
    by_quantity = len({u for _, _, u in parts}) == 1 and all(q > 0 for _, q, _ in parts)
    weights = [float(q) for _, q, _ in parts] if by_quantity else [1.0] * len(parts)
    total = sum(weights)
    shares: dict[str, float] = {}
    certified = 0.0
    for (lot, _, _), w in zip(parts, weights):
        for region, share in lot["origins"].items():
            shares[region] = shares.get(region, 0.0) + share * w / total
        certified += lot["certified"] * w / total
    return shares, certified


def _main(shares: dict[str, float]) -> str | None:
    return sorted(shares.items(), key=lambda rs: (-round(rs[1], 6), rs[0]))[0][0] if shares else None


def expected_facts(records: Iterable[Record]) -> list[dict[str, Any]]:
    """Every fact the bundle's log makes, as the feed shows them (without tree sizes)."""
    roles: dict[str, set[str]] = {}
    lots: dict[str, dict[str, Any]] = {}
    made_by: dict[str, list[str]] = {}
    handoffs: dict[str, dict[str, Any]] = {}
    contracts: dict[str, dict[str, Any]] = {}
    progress: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for rec in records:
        if not isinstance(rec, BundleEntry):
            continue
        env = json.loads(rec.leaf_data)
        p, eid, index = env["payload"], rec.id, rec.index
        signers = {s["signer"] for s in env["signatures"]}
        seq = [0]

        def fact(kind: str, entries: Sequence[str | None], day: str, **values: Any) -> None:
            named = list(dict.fromkeys(e for e in entries if e))
            out.append({"kind": kind, "index": index, "seq": seq[0], "entries": named, "day": day, **values})
            seq[0] += 1

        def receive(h: dict[str, Any], receipt: str | None, accepted: bool, received: str) -> None:
            c = contracts.get(h["contract"]) if h["contract"] else None
            held = [lots[x] for x in h["lots"]]
            units = {x["unit"] for x in held}
            shares, _ = _mix([(x, x["quantity"], x["unit"]) for x in held])
            if c:
                product = c["terms"]["product"]
            else:
                products = {x["product"] for x in held}
                product = products.pop() if len(products) == 1 else "mixed"
            customer, supplier = (c["buyer"], c["seller"]) if c else (h["to"], h["from"])
            named = [h["id"], receipt, c["entry"] if c else None]
            deadline = c["terms"]["deliver_by"] if c else None
            fact(
                "shipment", named, received[:10], handoff=h["id"], receipt=receipt, sender=h["from"],
                recipient=h["to"], customer=customer, supplier=supplier, contract=h["contract"],
                product=product, region=_main(shares), lots=len(held),
                quantity=float(sum(x["quantity"] for x in held)) if len(units) == 1 else None,
                unit=units.pop() if len(units) == 1 else None, dispatched_at=h["dispatched_at"],
                received_at=received, transit_hours=_hours(h["dispatched_at"], received), deliver_by=deadline,
                on_time=None if deadline is None else received[:10] <= deadline,
                status="accepted" if accepted else "rejected", cosigned=receipt is None,
            )
            arrival = receipt or h["id"]
            for x in held:
                x["custodian"] = h["to"] if accepted else h["from"]
                x["arrived"], x["arrival"] = received, arrival
                if accepted:
                    x["hops"] += 1
            if not accepted:
                return
            if c or roles.get(h["to"], set()) & {"retailer", "buyer"}:
                for x in held:
                    fact(
                        "delivery", named, received[:10], lot=x["lot"], product=product if c else x["product"],
                        quantity=float(x["quantity"]), unit=x["unit"], customer=customer, supplier=supplier,
                        contract=h["contract"], region=_main(x["origins"]), origins=dict(x["origins"]), hops=x["hops"],
                        certified=x["certified"], received_at=received,
                    )
            if c:
                pr = progress.setdefault(c["id"], {"delivered": Decimal(0), "deliveries": 0, "received": None, "receipt": None, "region": None})
                pr["delivered"] += sum((x["quantity"] for x in held if x["unit"] == c["terms"]["unit"]), Decimal(0))
                pr["deliveries"] += 1
                pr["received"], pr["receipt"], pr["region"] = received, arrival, _main(shares)

        kind = p["type"]
        if kind == "ledger.genesis":
            for a in p["admins"]:
                roles[a["id"]] = set(a["roles"])
        elif kind == "participant.register":
            roles[p["participant"]["id"]] = set(p["participant"]["roles"])
        elif kind == "participant.update" and "roles" in p:
            roles[p["participant"]] = set(p["roles"])
        elif kind == "origin":
            o = p["origin"]
            region = f"{o['country']}/{o['region']}" if o.get("region") else o["country"]
            arrived = f"{o['produced_on']}T00:00:00Z" if o.get("produced_on") else p["time"]
            for spec in p["lots"]:
                lots[spec["lot"]] = {
                    "lot": spec["lot"], "product": spec["product"], "quantity": Decimal(spec["quantity"]),
                    "unit": spec["unit"], "custodian": p["author"], "arrived": arrived, "arrival": eid,
                    "hops": 0, "origins": {region: 1.0}, "certified": 0.0,
                }
                made_by.setdefault(eid, []).append(spec["lot"])
        elif kind == "transform":
            ins = [lots[x] for x in p["inputs"]]
            shares, certified = _mix([(x, x["quantity"], x["unit"]) for x in ins])
            first = min(ins, key=lambda x: _t(x["arrived"]))
            for spec in p["outputs"]:
                lots[spec["lot"]] = {
                    "lot": spec["lot"], "product": spec["product"], "quantity": Decimal(spec["quantity"]),
                    "unit": spec["unit"], "custodian": p["author"], "arrived": first["arrived"],
                    "arrival": first["arrival"], "hops": max(x["hops"] for x in ins), "origins": shares,
                    "certified": certified,
                }
                made_by.setdefault(eid, []).append(spec["lot"])
        elif kind == "attestation":
            for lot in made_by.get(p["subject"], []) or ([p["subject"]] if p["subject"] in lots else []):
                lots[lot]["certified"] = 1.0
        elif kind == "contract":
            contracts[p["contract"]] = {"id": p["contract"], "entry": eid, "buyer": p["buyer"], "seller": p["seller"], "terms": p["terms"]}
        elif kind == "handoff":
            h = {"id": eid, "from": p["from"], "to": p["to"], "lots": p["lots"], "dispatched_at": p["dispatched_at"], "contract": p.get("contract")}
            handoffs[eid] = h
            for lot in p["lots"]:
                x = lots[lot]
                fact(
                    "dwell", [x["arrival"], eid], p["dispatched_at"][:10], lot=lot, site=p["from"],
                    product=x["product"], region=_main(x["origins"]), arrived_at=x["arrived"],
                    departed_at=p["dispatched_at"], hours=_hours(x["arrived"], p["dispatched_at"]),
                    arrival=x["arrival"], handoff=eid,
                )
            if p["to"] in signers:
                receive(h, None, True, p["dispatched_at"])
        elif kind == "receipt":
            receive(handoffs[p["handoff"]], eid, p["status"] == "accepted", p["received_at"])
        elif kind == "contract.close":
            c = contracts[p["contract"]]
            pr = progress.get(c["id"], {"delivered": Decimal(0), "deliveries": 0, "region": None})
            ordered = Decimal(c["terms"]["quantity"])
            fact(
                "contract", [c["entry"], eid], c["terms"]["deliver_by"], contract=c["id"], customer=c["buyer"],
                supplier=c["seller"], product=c["terms"]["product"], region=pr["region"], ordered=float(ordered),
                delivered=float(pr["delivered"]), unit=c["terms"]["unit"], fulfilment=float(pr["delivered"] / ordered),
                deliveries=pr["deliveries"], status=p["status"], deliver_by=c["terms"]["deliver_by"],
            )
        elif kind == "payment":
            c = contracts.get(p.get("contract", ""))
            pr = progress.get(c["id"]) if c else None
            received = pr["received"] if pr else None
            fact(
                "payment", [eid, c["entry"] if c else None, pr["receipt"] if pr else None], p["paid_at"][:10],
                payment=eid, customer=p["payer"], supplier=p["payee"], contract=p.get("contract"),
                product=c["terms"]["product"] if c else None, region=pr["region"] if pr else None,
                amount=float(Decimal(p["amount"])), currency=p["currency"], paid_at=p["paid_at"], received_at=received,
                days_to_pay=_hours(received, p["paid_at"]) / 24 if received else None,
            )
    return out


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return statistics.median(values) if q == 0.5 else cuts[8]


def expected_kpis(facts: Iterable[dict[str, Any]], group_by: Sequence[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The KPIs of docs/analytics.md per group key (a tuple in ``group_by`` order)."""
    groups: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for f in facts:
        if f["kind"] == "dwell":
            continue
        key = tuple(f["day"][:7] if d == "month" else f[d] for d in group_by)
        groups.setdefault(key, {}).setdefault(f["kind"], []).append(f)
    out = {}
    for key, kinds in groups.items():
        ships, dels = kinds.get("shipment", []), kinds.get("delivery", [])
        pays, cons = kinds.get("payment", []), kinds.get("contract", [])
        deadline = [s for s in ships if s["on_time"] is not None]
        transit = [s["transit_hours"] for s in ships if s["receipt"] is not None]
        days = [x["days_to_pay"] for x in pays if x["days_to_pay"] is not None]
        quantity = sum(d["quantity"] for d in dels)
        fulfil = [c["fulfilment"] for c in cons if c["fulfilment"] is not None]
        out[key] = {
            "shipments": len(ships),
            "on_time_rate": sum(s["on_time"] for s in deadline) / len(deadline) if deadline else None,
            "rejected": sum(s["status"] == "rejected" for s in ships),
            "transit_hours_median": _quantile(transit, 0.5),
            "transit_hours_p90": _quantile(transit, 0.9),
            "delivered_lots": len(dels),
            "delivered_quantity": float(quantity),
            "certified_share": sum(d["quantity"] * d["certified"] for d in dels) / quantity if quantity else None,
            "payments": len(pays),
            "days_to_pay_mean": statistics.fmean(days) if days else None,
            "days_to_pay_median": _quantile(days, 0.5),
            "contracts_closed": len(cons),
            "fulfilment_mean": statistics.fmean(fulfil) if fulfil else None,
        }
    return out
