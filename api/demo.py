"""`filiera demo`: a living consortium on a fresh ledger, for `make run` and for load.

An extra-virgin olive oil chain from Puglia: three olive groves harvest lots of olives
(``origin``, with their organic and PDO claims), which an organic certifier attests; a mill
receives them and presses them into oil (``transform``), a bottler receives the oil and
bottles it; retailers in Milan and Munich order bottles from the bottler (``contract``, with a
delivery deadline), a carrier collects the pallets and delivers them (``handoff``,
``receipt``), the retailers pay and the bottler confirms (``payment``, ``payment.confirm``),
and the contract is closed. The mill settles with the groves every few runs.

The story is spread over the past weeks: ``dispatched_at``, ``received_at`` and ``paid_at``
are past times, while each entry's own ``time`` is when it was signed (now). Some deliveries
arrive after the contract's ``deliver_by``; exactly one pallet arrives damaged, is refused
(a rejected receipt returns it to the carrier), goes back to the bottler and its contract is
terminated. The carrier rotates its key half-way. The last run is still under way: one pallet
in transit, one payment not yet confirmed, contracts open.

Everything is signed here, on the client side, and sealed in-process by
:meth:`~ledger.sealing.Sealer.submit_batch` in batches of up to ``MAX_BLOCK_ENTRIES``: the same
rules as a server, without HTTP. Every member's key file is written to the data directory
(mode 0600) so the README's tour can sign entries as any of them.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ledger import jcs
from ledger.clock import Clock, SystemClock
from ledger.config import Settings
from ledger.encoding import b64, format_time
from ledger.entries import entry_message
from ledger.errors import LedgerExists, Unavailable, error_for_code
from ledger.keys import SigningKey, read_key_file, write_key_file
from ledger.sealing import MAX_BLOCK_ENTRIES, Sealer
from ledger.storage.store import Store

__all__ = ["CONSORTIUM", "DEFAULT_LOTS", "DemoSummary", "build_demo"]

DEFAULT_LOTS = 30

# (id, public trading name, roles, public attributes)
CONSORTIUM: list[tuple[str, str, list[str], dict[str, str]]] = [
    ("masseria-ulivi", "Masseria degli Ulivi", ["producer"], {"country": "IT", "region": "Puglia", "place": "Bitonto"}),
    ("tenuta-coratina", "Tenuta La Coratina", ["producer"], {"country": "IT", "region": "Puglia", "place": "Andria"}),
    ("uliveto-terlizzi", "Uliveto Terlizzi Società Agricola", ["producer"], {"country": "IT", "region": "Puglia", "place": "Terlizzi"}),
    ("frantoio-bari", "Frantoio Cooperativo di Bari", ["processor"], {"country": "IT", "region": "Puglia"}),
    ("oleificio-sud", "Oleificio del Sud Imbottigliamento", ["processor"], {"country": "IT", "region": "Puglia"}),
    ("trasporti-adriatica", "Trasporti Adriatica", ["carrier"], {"country": "IT"}),
    ("mercato-milano", "Mercato Centrale Milano", ["retailer", "buyer"], {"country": "IT", "city": "Milano"}),
    ("feinkost-muenchen", "Feinkost München", ["retailer", "buyer"], {"country": "DE", "city": "München"}),
    ("bio-cert-italia", "BioCert Italia", ["certifier"], {"scheme": "EU organic"}),
    ("revisori-associati", "Revisori Associati", ["auditor"], {}),
]

# The groves: (member, lot code, site, place, latitude, longitude, cultivar, certificate)
_GROVES = [
    ("masseria-ulivi", "MU", "Uliveto di Bitonto, contrada Palombaio", "Bitonto", 41.1087, 16.6912, "Coratina", "IT-BIO-006-10427"),
    ("tenuta-coratina", "TC", "Tenuta La Coratina, Castel del Monte", "Andria", 41.2268, 16.2963, "Coratina", "IT-BIO-006-11873"),
    ("uliveto-terlizzi", "UT", "Uliveto Terlizzi, contrada Sovereto", "Terlizzi", 41.1297, 16.5456, "Ogliarola barese", "IT-BIO-006-12290"),
]
_MILL, _BOTTLER, _CARRIER = "frantoio-bari", "oleificio-sud", "trasporti-adriatica"
_MILAN, _MUNICH, _CERTIFIER = "mercato-milano", "feinkost-muenchen", "bio-cert-italia"
_CLAIMS = ["organic", "PDO Terra di Bari"]

_OLIVES_EUR_PER_KG = Decimal("0.95")
_OIL_YIELD = 0.165  # kg of oil per kg of olives
_OIL_KG_PER_L = 0.916
# The retailers' orders: (retailer, code, bottle unit, litres per bottle, share of a run's
# oil, EUR per bottle, days to deliver, hours on the road)
_ORDERS = [
    (_MILAN, "MIL", "bottle-750ml", 0.75, 0.6, Decimal("9.80"), 13, (18, 30)),
    (_MUNICH, "MUC", "bottle-500ml", 0.5, 0.4, Decimal("7.40"), 14, (30, 54)),
]
_LATE_SHARE = 0.12  # share of deliveries that arrive after deliver_by
_SETTLE_EVERY = 4  # runs between the mill's payments to the groves


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What `filiera demo` built."""

    origin: str
    members: int
    lots: int
    entries: int
    blocks: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0


class _Signer:
    """A member's key with its key id worked out once."""

    __slots__ = ("id", "key", "key_id")

    def __init__(self, pid: str, key: SigningKey) -> None:
        self.id, self.key, self.key_id = pid, key, key.public_key.key_id


class _Story:
    """The demo's entries in log order, each signed once as it is produced.

    An entry's id is the hash of its payload, known before it is sealed, so a receipt can
    name its handoff and a confirmation its payment within the same batch.
    """

    def __init__(self, *, origin: str, lots: int, admin: _Signer, members: dict[str, _Signer], clock: Clock) -> None:
        self.origin, self.lots, self.admin, self.members, self.clock = origin, lots, admin, members, clock
        self.now0 = clock.now().replace(microsecond=0)
        self.rng = random.Random(20251104)
        self.per_run = max(2, min(10, lots // 6))
        self.runs = math.ceil(lots / self.per_run)
        self.reject_run = 1 if self.runs >= 3 else 0
        self.rotated_key = SigningKey.generate()
        self.owed: dict[str, Decimal] = {}
        self._stamp, self._stamped = "", 0

    # --- signing ---------------------------------------------------------------------

    def _time(self) -> str:
        # The signing time, refreshed every few hundred entries: formatting costs more than
        # the drift it saves.
        if self._stamped % 256 == 0:
            self._stamp = format_time(self.clock.now())
        self._stamped += 1
        return self._stamp

    def _entry(self, type_: str, author: _Signer, fields: dict[str, Any], *cosigners: _Signer) -> tuple[dict[str, Any], str]:
        payload = {"ledger": self.origin, "type": type_, "author": author.id, "time": self._time(), "nonce": secrets.token_urlsafe(18), **fields}
        raw = hashlib.sha256(jcs.canonicalize(payload)).digest()
        message = entry_message(raw)
        sigs = [{"signer": s.id, "key_id": s.key_id, "sig": b64(s.key.unsafe_sign(message))} for s in (author, *cosigners)]
        return {"payload": payload, "signatures": sigs}, raw.hex()

    def _past(self, t: datetime) -> str:
        """A simulated event time, never later than an hour ago."""
        return format_time(min(t, self.now0 - timedelta(hours=1)))

    # --- the story -------------------------------------------------------------------

    def entries(self) -> Iterator[tuple[dict[str, Any], int]]:
        """(envelope, olive lots it harvests) in log order."""
        for pid, name, roles, attrs in CONSORTIUM:
            fields = {"participant": {"id": pid, "name": name, "roles": roles, "keys": [{"public_key": self.members[pid].key.public_key.b64}], "attributes": attrs}}
            yield self._entry("participant.register", self.admin, fields)[0], 0
        # The bottler also stores pallets for the retailers.
        yield self._entry("participant.update", self.admin, {"participant": _BOTTLER, "roles": ["processor", "warehouse"]})[0], 0
        made = 0
        for r in range(self.runs):
            n = min(self.per_run, self.lots - made)
            yield from self._run(r, n, first_lot=made)
            made += n
            if r == 0:
                yield from self._rotate_carrier_key()
            if r < self.runs - 1 and (r % _SETTLE_EVERY == _SETTLE_EVERY - 1 or r == self.runs - 2):
                yield from self._settle_groves(self._t0(r) + timedelta(days=20))

    def _t0(self, r: int) -> datetime:
        """When run ``r`` starts: complete runs spread over the past five months, the last
        one eleven days ago (still under way)."""
        if r == self.runs - 1:
            return self.now0 - timedelta(days=11)
        first, last = self.now0 - timedelta(days=150), self.now0 - timedelta(days=32)
        span = (last - first) * (r / max(1, self.runs - 2))
        return (first + span).replace(microsecond=0)

    def _rotate_carrier_key(self) -> Iterator[tuple[dict[str, Any], int]]:
        """key.add (old and new key sign) then key.revoke of the old key, signed with the new."""
        carrier = self.members[_CARRIER]
        new = _Signer(_CARRIER, self.rotated_key)
        yield self._entry("key.add", carrier, {"participant": _CARRIER, "public_key": new.key.public_key.b64}, new)[0], 0
        yield self._entry("key.revoke", new, {"participant": _CARRIER, "key_id": carrier.key_id, "reason": "scheduled rotation"})[0], 0
        self.members[_CARRIER] = new

    def _settle_groves(self, when: datetime) -> Iterator[tuple[dict[str, Any], int]]:
        mill = self.members[_MILL]
        for pid in sorted(self.owed):
            amount, grove = self.owed[pid], self.members[pid]
            fields = {"payer": _MILL, "payee": pid, "amount": f"{amount:.2f}", "currency": "EUR", "invoice": f"FB-OLIVE-{pid[:2].upper()}-{self.rng.randrange(10**6):06d}", "paid_at": self._past(when)}
            env, pay_id = self._entry("payment", mill, fields)
            yield env, 0
            yield self._entry("payment.confirm", grove, {"payment": pay_id})[0], 0
        self.owed.clear()

    def _run(self, r: int, n: int, *, first_lot: int) -> Iterator[tuple[dict[str, Any], int]]:
        """One mill run: orders, two groves' deliveries, milling, bottling, two shipments."""
        rng, m = self.rng, self.members
        t0, final = self._t0(r), r == self.runs - 1
        mill, bottler = m[_MILL], m[_BOTTLER]
        seq = f"{r + 1:06d}"

        # 1. The retailers order (both parties sign the contract).
        kg = [rng.randrange(1200, 2600, 10) for _ in range(n)]
        litres = sum(kg) * _OIL_YIELD / _OIL_KG_PER_L
        orders = []
        for retailer, code, unit, per_bottle, share, price, days, road in _ORDERS:
            bottles = max(1, int(litres * share / per_bottle))
            contract_id = f"CTR-{code}-{seq}"
            deliver_by = (t0 + timedelta(days=days)).date()
            terms = {
                "product": f"extra virgin olive oil PDO Terra di Bari, organic, {unit.split('-')[1]} bottles",
                "quantity": str(bottles), "unit": unit, "price": f"{price * bottles:.2f}", "currency": "EUR",
                "deliver_by": deliver_by.isoformat(),
                "requirements": {"countries": ["IT"], "claims": list(_CLAIMS)},
            }
            yield self._entry("contract", m[retailer], {"contract": contract_id, "buyer": retailer, "seller": _BOTTLER, "terms": terms}, bottler)[0], 0
            orders.append((retailer, code, unit, bottles, contract_id, deliver_by, road, price * bottles))

        # 2. Two groves harvest and deliver to the mill; the certifier attests each harvest.
        split = [n] if n == 1 else [a := rng.randint(max(1, n // 2 - 1), min(n - 1, n // 2 + 1)), n - a]
        olive_lots: list[str] = []
        lot_no = first_lot
        for k, count in enumerate(split):
            pid, code, site, place, lat, lon, cultivar, cert = _GROVES[(r + k) % len(_GROVES)]
            grove = m[pid]
            picked = t0 + timedelta(days=k)
            lots = []
            for i in range(count):
                lots.append({"lot": f"OLV-{code}-{lot_no + 1:07d}", "product": f"olives, {cultivar}", "quantity": str(kg[lot_no - first_lot]), "unit": "kg"})
                lot_no += 1
            fields = {
                "lots": lots, "site": site,
                "origin": {"country": "IT", "region": "Puglia", "place": place, "geo": {"lat": lat, "lon": lon}, "produced_on": picked.date().isoformat()},
                "claims": list(_CLAIMS),
            }
            env, origin_id = self._entry("origin", grove, fields)
            yield env, count
            cert_fields = {"subject": origin_id, "claims": list(_CLAIMS), "certificate": {"scheme": "EU organic, Reg. (EU) 2018/848", "number": cert, "valid_until": f"{self.now0.year + 1}-12-31"}}
            yield self._entry("attestation", m[_CERTIFIER], cert_fields)[0], 0
            ids = [lot["lot"] for lot in lots]
            olive_lots.extend(ids)
            dispatched = picked + timedelta(hours=15)
            handoff = {"from": pid, "to": _MILL, "lots": ids, "dispatched_at": self._past(dispatched), "location": place}
            if rng.random() < 0.5:  # weighed in at the mill with the grower there: both sign
                yield self._entry("handoff", grove, handoff, mill)[0], 0
            else:
                env, handoff_id = self._entry("handoff", grove, handoff)
                yield env, 0
                received = {"handoff": handoff_id, "status": "accepted", "received_at": self._past(dispatched + timedelta(minutes=rng.randrange(40, 180))), "location": "Bari"}
                yield self._entry("receipt", mill, received)[0], 0
            self.owed[pid] = self.owed.get(pid, Decimal(0)) + _OLIVES_EUR_PER_KG * sum(int(lot["quantity"]) for lot in lots)

        # 3. The mill presses the olives and sends the oil to the bottler.
        oil = f"OIL-FB-{seq}"
        yield self._entry("transform", mill, {"inputs": olive_lots, "outputs": [{"lot": oil, "product": "extra virgin olive oil, unfiltered", "quantity": f"{litres:.1f}", "unit": "l"}], "site": "Frantoio Cooperativo di Bari", "process": "cold extraction below 27 °C"})[0], 0
        sent = t0 + timedelta(days=3, hours=8)
        env, handoff_id = self._entry("handoff", mill, {"from": _MILL, "to": _BOTTLER, "lots": [oil], "dispatched_at": self._past(sent), "location": "Bari"})
        yield env, 0
        yield self._entry("receipt", bottler, {"handoff": handoff_id, "status": "accepted", "received_at": self._past(sent + timedelta(hours=5)), "location": "Modugno"})[0], 0

        # 4. The bottler bottles it for the two orders; the carrier collects both pallets.
        outputs = [{"lot": f"EVO-{code}-{seq}", "product": f"extra virgin olive oil PDO Terra di Bari, organic, {unit.split('-')[1]}", "quantity": str(bottles), "unit": unit} for _, code, unit, bottles, *_ in orders]
        yield self._entry("transform", bottler, {"inputs": [oil], "outputs": outputs, "site": "Oleificio del Sud, Modugno", "process": "filtering and bottling"})[0], 0
        pickup = t0 + timedelta(days=8, hours=7) + (timedelta(0) if final else timedelta(hours=rng.randrange(0, 48)))
        carrier = m[_CARRIER]
        yield self._entry("handoff", bottler, {"from": _BOTTLER, "to": _CARRIER, "lots": [o["lot"] for o in outputs], "dispatched_at": self._past(pickup), "location": "Modugno", "shipment": f"TA-{seq}"}, carrier)[0], 0

        # 5. Deliveries, receipts, payments and closing.
        for j, ((retailer, code, _unit, _bottles, contract_id, deliver_by, road, amount), lot) in enumerate(zip(orders, outputs)):
            buyer = m[retailer]
            dispatched = pickup + timedelta(hours=2 + j)
            delivery = {"from": _CARRIER, "to": retailer, "lots": [lot["lot"]], "dispatched_at": self._past(dispatched), "contract": contract_id, "shipment": f"TA-{seq}-{code}"}
            env, handoff_id = self._entry("handoff", carrier, delivery)
            yield env, 0
            if final and j == 1:
                continue  # still on the road
            late = not final and ((r == 0 and j == 1) or rng.random() < _LATE_SHARE)
            if late:
                arrived = datetime.combine(deliver_by, dispatched.timetz()) + timedelta(days=rng.randint(1, 4))
            else:
                arrived = dispatched + timedelta(hours=rng.randrange(*road))
            rejected = r == self.reject_run and j == 0
            receipt = {"handoff": handoff_id, "status": "rejected" if rejected else "accepted", "received_at": self._past(arrived), "location": "Milano" if retailer == _MILAN else "München"}
            yield self._entry("receipt", buyer, receipt)[0], 0
            if rejected:
                # A pallet crushed in transit: refused at the door, back with the carrier,
                # returned to the bottler (which signs for it), and the order is cancelled.
                back = {"from": _CARRIER, "to": _BOTTLER, "lots": [lot["lot"]], "dispatched_at": self._past(arrived + timedelta(hours=3)), "location": "Milano", "shipment": f"TA-{seq}-RET"}
                yield self._entry("handoff", carrier, back, bottler)[0], 0
                reason = "pallet damaged in transit: receipt rejected, goods returned to the bottler"
                yield self._entry("contract.close", buyer, {"contract": contract_id, "status": "terminated", "reason": reason})[0], 0
                continue
            paid = {"payer": retailer, "payee": _BOTTLER, "amount": f"{amount:.2f}", "currency": "EUR", "contract": contract_id, "invoice": f"OS-{code}-{seq}", "paid_at": self._past(arrived + (timedelta(hours=12) if final else timedelta(days=rng.randint(3, 10))))}
            env, pay_id = self._entry("payment", buyer, paid)
            yield env, 0
            if final:
                continue  # paid, not yet confirmed; the contract stays open
            yield self._entry("payment.confirm", bottler, {"payment": pay_id})[0], 0
            closer = bottler if j == 0 else buyer
            yield self._entry("contract.close", closer, {"contract": contract_id, "status": "fulfilled"})[0], 0


def _chunks(items: Iterator[tuple[dict[str, Any], int]], size: int) -> Iterator[list[tuple[dict[str, Any], int]]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def build_demo(
    settings: Settings,
    *,
    origin: str,
    if_missing: bool,
    lots: int = DEFAULT_LOTS,
    progress: Callable[[int], None] | None = None,
    clock: Clock | None = None,
) -> DemoSummary | None:
    """Initialise a ledger and tell the consortium's story with ``lots`` harvested lots.

    ``progress`` is called once the ledger is created (with 0), then with the number of
    harvested lots in each sealed batch. Returns
    None if a ledger exists and ``if_missing``; raises LedgerExists if one exists otherwise,
    and any LedgerError the ledger raises (none is expected: the story obeys the rules).
    """
    from .cli import init_ledger

    if lots < 1:
        raise ValueError("lots must be positive")
    clock = clock or SystemClock()
    try:
        init_ledger(settings, origin=origin, admin="admin", admin_name="Consorzio Olio Extravergine di Puglia")
    except LedgerExists:
        if if_missing:
            return None
        raise
    if progress is not None:
        progress(0)  # the ledger exists: the work starts
    started = time.monotonic()
    admin = _Signer("admin", read_key_file(settings.data_dir / "admin.key").signing_key)
    members = {pid: _Signer(pid, SigningKey.generate()) for pid, *_ in CONSORTIUM}
    for pid, member in members.items():
        write_key_file(settings.data_dir / f"{pid}.key", participant=pid, signing_key=member.key, overwrite=True)
    story = _Story(origin=origin, lots=lots, admin=admin, members=members, clock=clock)
    batch = max(20, min(MAX_BLOCK_ENTRIES, 3 * lots // 8))
    store = Store.open(settings)
    try:
        sealer = Sealer(store, signing_key=read_key_file(settings.ledger_key_file).signing_key, clock=clock)
        for chunk in _chunks(story.entries(), batch):
            _seal(sealer, [env for env, _ in chunk])
            if progress is not None:
                progress(sum(n for _, n in chunk))
        with store.read() as conn:
            head = store.head(conn)
        assert head is not None
    finally:
        store.dispose()
    # The carrier rotated its key: its key file now holds the new one.
    write_key_file(settings.data_dir / f"{_CARRIER}.key", participant=_CARRIER, signing_key=story.rotated_key, overwrite=True)
    return DemoSummary(
        origin=origin, members=len(CONSORTIUM), lots=lots, entries=head.tree_size,
        blocks=head.height + 1, seconds=time.monotonic() - started,
    )


def _seal(sealer: Sealer, envelopes: list[dict[str, Any]]) -> None:
    """Take a batch in (checked in order, signatures verified) and seal it into blocks now.

    ``wait=False`` skips building a receipt per entry, which a demo does not keep.
    """
    outcomes = sealer.submit_batch(envelopes, wait=False, raise_first=True)
    queued = [o.id for o in outcomes if o.status == "pending" and o.id]
    sealed = sealer.seal_pending()
    if len(sealed) == len(queued):
        return
    store = sealer.store
    with store.read() as conn:
        for entry_id in queued:
            row = store.pending_row(conn, entry_id)
            if row is not None and row.status == "rejected":
                raise error_for_code(row.code, row.detail, entry=entry_id)
    raise Unavailable(f"sealed {len(sealed)} of {len(queued)} demo entries; is another process writing to this ledger?")
