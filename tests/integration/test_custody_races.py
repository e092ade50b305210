"""Custody races on a real database (PROTOCOL §4, TESTPLAN T5): two handoffs of the same lot
to two different recipients, submitted at the same moment by two writers, each with its own
Sealer on the same database (two threads, or two spawned processes as two gunicorn workers).

Custody rules run at sealing against the state at the entry's exact position, so exactly one
handoff is sealed; the other is refused with ``lot_in_transit`` (the lot left with the winning
handoff and awaits its receipt) or ``not_custodian`` (the winner was co-signed by its
recipient, who holds the lot at once). Every test ends with the chain's invariants and
``filiera verify``'s checks, the supply-chain projection included.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from ledger import jcs
from ledger.config import Settings
from ledger.sealing import Sealer
from ledger.storage import schema as t
from ledger.storage.store import Store

from ..conftest import LedgerEnv
from ..factories import Member
from ..supply import LedgerView, handoff, lot, origin, verify_with_projection
from .conftest import check_chain, register_members
from .workers import Result, submit_one

SPAWN = multiprocessing.get_context("spawn")
ROUNDS = 10
PROCESS_LIMIT_S = 120.0

# Which handoffs race: whether each is co-signed by its recipient.
VARIANTS = {
    "both-plain": (False, False),
    "both-cosigned": (True, True),
    "plain-vs-cosigned": (False, True),
}


def race_rounds(settings: Settings, envelopes: list[dict[str, Any]], barrier: Any, results: Any) -> None:
    """Child process: one Sealer on the test's database; for each round, wait for the other
    process at ``barrier``, submit that round's envelope, report (round, Result)."""
    from api import load_ledger_key

    sealer = Sealer(Store.open(settings), signing_key=load_ledger_key(settings), seal_timeout=settings.seal_timeout)
    try:
        for i, env in enumerate(envelopes):
            barrier.wait(timeout=PROCESS_LIMIT_S)
            results.put((i, submit_one(sealer, env)))
    finally:
        sealer.store.dispose()


def _in_threads(sealers: list[Sealer], rounds: list[list[dict[str, Any]]]) -> list[list[Result]]:
    """Round by round, envelope j from thread j with sealer j, released together."""
    barrier = threading.Barrier(len(sealers))

    def run(j: int) -> list[Result]:
        out = []
        for envs in rounds:
            barrier.wait(timeout=60)
            out.append(submit_one(sealers[j], envs[j]))
        return out

    with ThreadPoolExecutor(len(sealers)) as pool:
        per_writer = list(pool.map(run, range(len(sealers))))
    return [[per_writer[j][i] for j in range(len(sealers))] for i in range(len(rounds))]


def _in_processes(settings: Settings, rounds: list[list[dict[str, Any]]]) -> list[list[Result]]:
    """Round by round, envelope j from spawned process j (its own Sealer), released together."""
    writers = len(rounds[0])
    barrier = SPAWN.Barrier(writers)
    queue = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=race_rounds, args=(settings, [envs[j] for envs in rounds], barrier, queue))
        for j in range(writers)
    ]
    for p in procs:
        p.start()
    got: dict[tuple[int, int], Result] = {}
    try:
        for _ in range(writers * len(rounds)):
            i, res = queue.get(timeout=PROCESS_LIMIT_S)
            got[(i, len([k for k in got if k[0] == i]))] = res
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    assert [p.exitcode for p in procs] == [0] * writers
    # Which process answered first within a round does not matter: the pair is checked by
    # the entries' ids.
    return [[got[(i, j)] for j in range(writers)] for i in range(len(rounds))]


def entry_id(env: dict[str, Any]) -> str:
    return hashlib.sha256(jcs.canonicalize(env["payload"])).hexdigest()


def _count(sealer: Sealer, eid: str) -> int:
    with sealer.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(t.entries).where(t.entries.c.id == eid)).scalar_one())


@pytest.mark.parametrize("writers", ["threads", "processes"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_two_handoffs_of_one_lot_exactly_one_is_sealed(
    ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer], writers: str, variant: str
) -> None:
    sealers = [open_sealer(), open_sealer()]
    (farm,) = register_members(sealers[0], ledger_env.admin, ["farm"], ("producer",))
    recipients: list[Member] = register_members(sealers[0], ledger_env.admin, ["mill-a", "mill-b"], ("processor",))
    lots = [f"OL-{i}" for i in range(ROUNDS)]
    assert sealers[0].submit(origin(farm, *(lot(x) for x in lots))).status == "created"
    cosigned = VARIANTS[variant]
    rounds = [
        [handoff(farm, recipients[j], [x], cosign=cosigned[j]) for j in range(2)]
        for x in lots
    ]
    ids = [[entry_id(e) for e in envs] for envs in rounds]

    results = _in_threads(sealers, rounds) if writers == "threads" else _in_processes(ledger_env.settings, rounds)

    view = LedgerView(ledger_env.settings)
    try:
        for x, (id_a, id_b), pair in zip(lots, ids, results):
            statuses = sorted(r[0] for r in pair)
            assert statuses == ["created", "rejected"], (x, pair)
            winner_id = next(r[1] for r in pair if r[0] == "created")
            assert winner_id in (id_a, id_b)
            w = 0 if winner_id == id_a else 1
            loser_code = next(r[4] for r in pair if r[0] == "rejected")
            assert loser_code == ("not_custodian" if cosigned[w] else "lot_in_transit"), (x, pair)
            assert _count(sealers[0], winner_id) == 1
            assert _count(sealers[0], id_b if w == 0 else id_a) == 0
            rec = view.record("lot", x)
            if cosigned[w]:
                assert (rec.custodian, rec.status, rec.handoff) == (recipients[w].id, "held", None)
            else:
                assert (rec.custodian, rec.status, rec.handoff) == ("farm", "in_transit", winner_id)
            assert view.record("handoff", winner_id).recipient == recipients[w].id
            assert view.record("handoff", id_b if w == 0 else id_a) is None
    finally:
        view.close()
    facts = check_chain(ledger_env.settings)
    assert facts.report.entries == 1 + 3 + 1 + ROUNDS  # genesis, members, origin, winners
    verify_with_projection(ledger_env.settings)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_two_handoffs_queued_together_one_is_sealed_the_other_refused_at_sealing(
    ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer], variant: str
) -> None:
    """Both handoffs pass the intake check (the lot is held when each arrives) and wait in the
    queue; one sealing round then applies them in order: the second meets the first's
    effects and is refused there, its refusal recorded for whoever asks (``GET
    /v1/entries/{id}``). The races above mostly end at the intake check; this is the other path,
    made certain."""
    sealers = [open_sealer(), open_sealer()]
    (farm,) = register_members(sealers[0], ledger_env.admin, ["farm"], ("producer",))
    recipients = register_members(sealers[0], ledger_env.admin, ["mill-a", "mill-b"], ("processor",))
    lots = [f"OL-{i}" for i in range(ROUNDS)]
    assert sealers[0].submit(origin(farm, *(lot(x) for x in lots))).status == "created"
    cosigned = VARIANTS[variant]
    view = LedgerView(ledger_env.settings)
    try:
        for x in lots:
            envs = [handoff(farm, recipients[j], [x], cosign=cosigned[j]) for j in range(2)]
            queued = [submit_one(sealers[j], envs[j], wait=False) for j in range(2)]
            assert [q[0] for q in queued] == ["pending", "pending"], queued
            sealers[1].seal_pending()  # one round, both entries
            sealed = [_count(sealers[0], entry_id(e)) for e in envs]
            assert sorted(sealed) == [0, 1]
            w = sealed.index(1)
            with sealers[0].store.read() as conn:
                loser = sealers[0].store.pending_row(conn, entry_id(envs[1 - w]))
            assert (loser.status, loser.code) == ("rejected", "not_custodian" if cosigned[w] else "lot_in_transit")
            rec = view.record("lot", x)
            if cosigned[w]:
                assert (rec.custodian, rec.status) == (recipients[w].id, "held")
            else:
                assert (rec.custodian, rec.status, rec.handoff) == ("farm", "in_transit", entry_id(envs[w]))
            # Asking again for the refused entry gives its refusal, as the waiting request got.
            assert submit_one(sealers[1 - w], envs[1 - w])[0] == "rejected"
    finally:
        view.close()
    check_chain(ledger_env.settings)
    verify_with_projection(ledger_env.settings)
