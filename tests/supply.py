"""Builders for supply-chain entries (PROTOCOL §4). Every envelope is signed by factories."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .factories import ORIGIN, Member, envelope, now, payload


def lot(lot_id: str, product: str = "olives", quantity: str = "1000", unit: str = "kg") -> dict[str, str]:
    return {"lot": lot_id, "product": product, "quantity": quantity, "unit": unit}


def origin(producer: Member, *lots: dict[str, str], country: str = "IT", region: str = "Puglia", claims: list[str] | None = None, origin_: str = ORIGIN) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "lots": list(lots),
        "site": "Uliveto di Bitonto",
        "origin": {"country": country, "region": region, "produced_on": "2026-10-15"},
    }
    if claims:
        fields["claims"] = claims
    p = payload("origin", producer.id, origin=origin_)
    p.update(fields)
    return envelope(p, producer)


def handoff(sender: Member, recipient: Member, lots: list[str], *, cosign: bool = False, contract: str | None = None, signers: tuple[Member, ...] | None = None) -> dict[str, Any]:
    """``cosign``: ``to`` signs too (received at once); ``signers`` overrides who signs."""
    fields: dict[str, Any] = {"from": sender.id, "to": recipient.id, "lots": lots, "dispatched_at": now()}
    if contract:
        fields["contract"] = contract
    if signers is None:
        signers = (sender, recipient) if cosign else (sender,)
    return envelope(payload("handoff", sender.id, **fields), *signers)


def receipt(recipient: Member, handoff_id: str, status: str = "accepted") -> dict[str, Any]:
    return envelope(payload("receipt", recipient.id, handoff=handoff_id, status=status, received_at=now()), recipient)


def transform(processor: Member, inputs: list[str], *outputs: dict[str, str]) -> dict[str, Any]:
    return envelope(payload("transform", processor.id, inputs=inputs, outputs=list(outputs), site="Frantoio", process="cold pressing"), processor)


def attestation(certifier: Member, subject: str, claims: list[str]) -> dict[str, Any]:
    cert = {"scheme": "EU organic", "number": "IT-BIO-006-1234", "valid_until": "2027-12-31"}
    return envelope(payload("attestation", certifier.id, subject=subject, claims=claims, certificate=cert), certifier)


def contract(buyer: Member, seller: Member, contract_id: str, *, signers: tuple[Member, ...] | None = None, currency: str = "EUR") -> dict[str, Any]:
    terms = {
        "product": "extra virgin olive oil", "quantity": "500", "unit": "l", "price": "4250.00",
        "currency": currency, "deliver_by": "2026-12-20",
        "requirements": {"countries": ["IT"], "claims": ["organic"]},
    }
    p = payload("contract", buyer.id, contract=contract_id, buyer=buyer.id, seller=seller.id, terms=terms)
    return envelope(p, *(signers or (buyer, seller)))


def close_contract(party: Member, contract_id: str, status: str = "fulfilled") -> dict[str, Any]:
    return envelope(payload("contract.close", party.id, contract=contract_id, status=status), party)


def payment(payer: Member, payee: Member, amount: str = "4250.00", *, contract: str | None = None, currency: str = "EUR") -> dict[str, Any]:
    fields: dict[str, Any] = {"payer": payer.id, "payee": payee.id, "amount": amount, "currency": currency, "paid_at": now()}
    if contract:
        fields["contract"] = contract
    return envelope(payload("payment", payer.id, **fields), payer)


def confirm(payee: Member, payment_id: str) -> dict[str, Any]:
    return envelope(payload("payment.confirm", payee.id, payment=payment_id), payee)


# --- reads, ledgers and checks for the supply-chain suites ---------------------------------


def get_as(client: Any, member: Member, path: str) -> Any:
    """GET ``path`` as ``member`` (a signed request where the client can sign, PROTOCOL §6)."""
    as_member = getattr(client, "as_member", None)
    return (as_member(member) if as_member is not None else client).get(path)


class LedgerView:
    """The supply-chain projection as the sealing transactions left it, read through the
    store: the tables themselves, beneath what the provenance endpoint derives."""

    def __init__(self, settings: Any) -> None:
        from ledger.storage.store import Store

        self.store = Store.open(settings)

    def record(self, kind: str, key: str) -> Any:
        """The lot, handoff, contract, payment or attestation ``key``, or None."""
        return self.records(kind, [key])[key]

    def records(self, kind: str, keys: Iterable[str]) -> dict[str, Any]:
        from ledger.storage import projection

        with self.store.read() as conn:
            return {k: projection.load(conn, kind, k) for k in keys}

    def parents(self, lot_id: str) -> list[str]:
        """The lot's parents as the lineage table records them."""
        from sqlalchemy import select

        from ledger.storage import schema as t

        with self.store.read() as conn:
            rows = conn.execute(select(t.lot_lineage.c.parent).where(t.lot_lineage.c.child == lot_id))
            return sorted(r.parent for r in rows)

    def close(self) -> None:
        self.store.dispose()


@contextmanager
def fresh_ledger(backend: str, directory: Path) -> Iterator[Any]:
    """A new, initialised ledger (a ``tests.conftest.LedgerEnv``) on ``backend``, for
    fixtures wider than one test: an SQLite file in ``directory`` or a fresh PostgreSQL
    schema, dropped afterwards."""
    import uuid

    import pytest

    from api.cli import init_ledger
    from ledger.config import Settings
    from ledger.keys import read_key_file

    from .conftest import PG_URL, LedgerEnv, _pg_admin_engine

    engine = None
    if backend == "sqlite":
        url = f"sqlite:///{directory / 'filiera.db'}"
    else:
        schema = "t_" + uuid.uuid4().hex[:12]
        engine = _pg_admin_engine()
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"PostgreSQL is part of the suite but {PG_URL} is unreachable: {exc}")
        url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    try:
        settings = Settings.from_env(
            {},
            data_dir=directory / "data",
            ledger_key_file=directory / "data" / "ledger.key",
            database_url=url,
            seal_interval=0.0,
        )
        init_ledger(settings, origin=ORIGIN, admin="admin", admin_name="Consortium admin")
        yield LedgerEnv(
            settings=settings,
            admin=Member("admin", read_key_file(settings.data_dir / "admin.key").signing_key),
            ledger_key=read_key_file(settings.ledger_key_file).signing_key,
            backend=backend,
        )
    finally:
        if engine is not None:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            engine.dispose()


def verify_with_projection(settings: Any) -> Any:
    """What ``filiera verify`` runs on the local database: ``verify_chain`` over
    ``db_source``, the projection check included. Returns the report (raises ChainBroken)."""
    from api.verify_sources import db_source
    from ledger.verify import verify_chain

    src = db_source(settings)
    try:
        report = verify_chain(src.blocks, node_check=src.node_check, state_check=src.state_check)
    finally:
        src.close()
    assert report.entries == report.tree_size == src.total
    return report


# --- a lot's whole story, for the provenance and certificate suites --------------------------

# Who the story needs, with their roles.
STORY_CAST: dict[str, list[str]] = {
    "farm": ["producer"], "farm2": ["producer"], "carrier": ["carrier"], "mill": ["processor"],
    "bottler": ["processor"], "shop": ["retailer", "buyer"], "cert": ["certifier"],
}


def lineage_story(
    ok: Any, m: dict[str, Member], prefix: str, *, steps: int = 10, receive_last: bool = True,
    contract_id: str | None = None, country2: str = "IT", claims2: tuple[str, ...] = ("organic",),
) -> dict[str, Any]:
    """Two groves' harvests (three lots, claims attested: one harvest entry, one lot) reach a
    mill through a co-signed handoff and a carrier's two legs; ``steps`` transforms (half at
    the mill, half at a bottler it ships to) make the final lot, sent to the shop (under
    ``contract_id`` if given) and received unless ``receive_last`` is false. ``ok`` posts an
    envelope and returns its entry id. Returns the lot ids and entry ids of the story."""
    a1, a2, b1 = f"{prefix}-A1", f"{prefix}-A2", f"{prefix}-B1"
    o1 = ok(origin(m["farm"], lot(a1), lot(a2), claims=["organic"]))
    ok(attestation(m["cert"], o1, ["organic"]))
    o2 = ok(origin(m["farm2"], lot(b1), country=country2, claims=list(claims2)))
    ok(attestation(m["cert"], b1, ["organic"]))
    ok(handoff(m["farm"], m["mill"], [a1, a2], cosign=True))
    legs = [ok(handoff(m["farm2"], m["carrier"], [b1]))]
    ok(receipt(m["carrier"], legs[0]))
    legs.append(ok(handoff(m["carrier"], m["mill"], [b1])))
    ok(receipt(m["mill"], legs[1]))
    made, holder, inputs = [], m["mill"], [a1, a2, b1]
    for i in range(1, steps + 1):
        out = f"{prefix}-S{i}"
        ok(transform(holder, inputs, lot(out, "oil", "100", "l")))
        made.append(out)
        inputs = [out]
        if i == steps // 2:
            h = ok(handoff(m["mill"], m["bottler"], [out]))
            ok(receipt(m["bottler"], h))
            holder = m["bottler"]
    if contract_id is not None:
        ok(contract(m["shop"], m["bottler"], contract_id))
    last = ok(handoff(holder, m["shop"], [made[-1]], contract=contract_id))
    if receive_last:
        ok(receipt(m["shop"], last))
    return {"final": made[-1], "made": made, "origins": [o1, o2], "harvest": [a1, a2, b1], "carrier_legs": legs, "last_handoff": last}
