"""Sealing races on a real database (PROTOCOL §5, TESTPLAN T5): conflicting entries from
several threads and processes, replays, group commit, ``202`` entries and a crash between
queueing and sealing. Every test ends with the chain's invariants and ``verify_chain``.

Each thread here has its own Sealer (its own Store and engine) where a test is about two
writers, as two gunicorn workers would; threads of one process share one Sealer otherwise, as
gunicorn's threads do. Processes are spawned (no fork of a threaded pytest).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from ledger.errors import KeyInUse, LedgerError, ParticipantExists, Unavailable
from ledger.keys import SigningKey
from ledger.sealing import Sealer
from ledger.storage import schema as t

from ..conftest import LedgerEnv
from ..factories import Member, key_add, register
from .conftest import check_chain, register_members
from .workers import Result, enqueue_and_die, submit_all, submit_one

SPAWN = multiprocessing.get_context("spawn")
PROCESS_LIMIT_S = 120.0
CONFLICT_ROUNDS = 8


def _count(sealer: Sealer, entry_id: str) -> int:
    with sealer.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(t.entries).where(t.entries.c.id == entry_id)).scalar_one())


def _blocks(sealer: Sealer) -> int:
    with sealer.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(t.blocks)).scalar_one())


def _race(sealers: list[Sealer], envelopes: list[dict[str, Any]]) -> list[Result]:
    """Submit envelope i from thread i with sealer i, all released at once."""
    barrier = threading.Barrier(len(envelopes))

    def run(i: int) -> Result:
        barrier.wait(timeout=30)
        return submit_one(sealers[i], envelopes[i])

    with ThreadPoolExecutor(len(envelopes)) as pool:
        return list(pool.map(run, range(len(envelopes))))


def _in_processes(env: LedgerEnv, batches: list[list[dict[str, Any]]], threads: int) -> list[Result]:
    """One spawned process per batch, each with its own Sealer and ``threads`` threads,
    released together; every Result of every process."""
    barrier = SPAWN.Barrier(len(batches))
    results = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=submit_all, args=(env.settings, batch, threads, barrier, results))
        for batch in batches
    ]
    for p in procs:
        p.start()
    collected: list[Result] = []
    try:
        for _ in procs:
            collected.extend(results.get(timeout=PROCESS_LIMIT_S))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return collected


# --- two conflicting entries ---------------------------------------------------------------


def _conflicts(env: LedgerEnv, sealer: Sealer, kind: str, rounds: int) -> list[tuple[dict[str, Any], dict[str, Any], str]]:
    """``rounds`` pairs of entries of which at most one can stand, with the loser's code."""
    pairs = []
    if kind == "same-participant-id":
        for i in range(rounds):
            pid = f"contested-{i}"
            pairs.append((register(env.admin, Member(pid), ["producer"]), register(env.admin, Member(pid), ["processor"]), ParticipantExists.code))
    else:  # the same new key claimed by two members
        members = register_members(sealer, env.admin, [m for i in range(rounds) for m in (f"left-{i}", f"right-{i}")])
        for i in range(rounds):
            key = SigningKey.generate()
            pairs.append((key_add(members[2 * i], key), key_add(members[2 * i + 1], key), KeyInUse.code))
    return pairs


CONFLICT_KINDS = ["same-participant-id", "same-new-key"]


@pytest.mark.parametrize("kind", CONFLICT_KINDS)
def test_two_threads_two_sealers_exactly_one_wins(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer], kind: str) -> None:
    sealers = [open_sealer(), open_sealer()]
    for a, b, loser_code in _conflicts(ledger_env, sealers[0], kind, CONFLICT_ROUNDS):
        results = _race(sealers, [a, b])
        statuses = sorted(r[0] for r in results)
        assert statuses == ["created", "rejected"], results
        assert [r[4] for r in results if r[0] == "rejected"] == [loser_code]
        winner = next(r for r in results if r[0] == "created")
        assert winner[1] is not None and _count(sealers[0], winner[1]) == 1
    check_chain(ledger_env.settings)


@pytest.mark.parametrize("kind", CONFLICT_KINDS)
def test_both_queued_then_sealed_together_exactly_one_wins(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer], kind: str) -> None:
    """Deterministic form of the race: both entries pass intake (neither is sealed yet), so
    the rules at sealing, in queue order, must refuse the second."""
    first, second = open_sealer(), open_sealer()
    ((a, b, loser_code),) = _conflicts(ledger_env, first, kind, 1)
    out_a, out_b = first.submit(a, wait=False), second.submit(b, wait=False)
    assert (out_a.status, out_b.status) == ("pending", "pending")
    blocks = _blocks(first)
    assert len(second.seal_pending()) == 1
    assert _blocks(first) == blocks + 1
    assert out_a.id is not None and out_b.id is not None
    assert _count(first, out_a.id) == 1 and _count(first, out_b.id) == 0
    with first.store.read() as conn:
        row = first.store.pending_row(conn, out_b.id)
    assert (row.status, row.code) == ("rejected", loser_code)
    # Asking again gets the same refusal, now from intake; nothing is written.
    with pytest.raises(LedgerError) as info:
        second.submit(b)
    assert info.value.code == loser_code
    assert _count(first, out_b.id) == 0
    check_chain(ledger_env.settings)


@pytest.mark.parametrize("kind", CONFLICT_KINDS)
def test_two_processes_exactly_one_wins(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer], kind: str) -> None:
    pairs = _conflicts(ledger_env, open_sealer(), kind, 4)
    results = _in_processes(ledger_env, [[a for a, _, _ in pairs], [b for _, b, _ in pairs]], threads=1)
    assert len(results) == 2 * len(pairs)
    assert Counter(r[0] for r in results) == {"created": len(pairs), "rejected": len(pairs)}
    assert {r[4] for r in results if r[0] == "rejected"} == {pairs[0][2]}
    check_chain(ledger_env.settings)


# --- one entry many times (T5) -----------------------------------------------------------


def test_hundred_concurrent_copies_make_one_leaf(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    """100 copies of one entry: 2 processes x 4 threads x 10, and 4 threads x 5 in this
    process. Exactly one leaf; every copy gets the same receipt."""
    sealer = open_sealer()
    copy = register(ledger_env.admin, Member("replayed"), ["producer"])
    proc_batches = [[copy] * 40, [copy] * 40]

    local: list[Result] = []

    def local_run() -> None:
        with ThreadPoolExecutor(4) as pool:
            local.extend(pool.map(lambda e: submit_one(sealer, e), [copy] * 20))

    thread = threading.Thread(target=local_run)
    thread.start()
    try:
        remote = _in_processes(ledger_env, proc_batches, threads=4)
    finally:
        thread.join(timeout=PROCESS_LIMIT_S)
    results = remote + local
    assert len(results) == 100
    assert {r[0] for r in results} <= {"created", "exists"}, Counter((r[0], r[4]) for r in results)
    assert any(r[0] == "created" for r in results)
    assert len({(r[1], r[2], r[3]) for r in results}) == 1
    entry_id = results[0][1]
    assert entry_id is not None and _count(sealer, entry_id) == 1
    facts = check_chain(ledger_env.settings)
    assert facts.report.entries == 2


def test_replay_after_sealing_answers_exists(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    sealer, other = open_sealer(), open_sealer()
    env = register(ledger_env.admin, Member("once"), ["producer"])
    first = sealer.submit(env)
    again = other.submit(env)
    assert (first.status, again.status) == ("created", "exists")
    assert again.receipt == first.receipt
    assert check_chain(ledger_env.settings).report.entries == 2


def test_copy_sealed_during_intake_is_not_refused(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer], monkeypatch: pytest.MonkeyPatch) -> None:
    """The narrow window of the race above, made certain: another worker seals the entry
    while this one is checking its signatures. Under PostgreSQL's READ COMMITTED the rules
    then see the entry's own effects (the participant exists) and, unless intake looks
    again, refuse an entry that is in the log. The copy must get the receipt instead."""
    import ledger.sealing as sealing

    sealer, other = open_sealer(), open_sealer()
    copy = register(ledger_env.admin, Member("raced"), ["producer"])
    real = sealing.verify_signatures
    fired: list[bool] = []

    def sealed_meanwhile(state: Any, env: Any) -> Any:
        if not fired:
            fired.append(True)
            assert other.submit(copy).status == "created"
        return real(state, env)

    monkeypatch.setattr(sealing, "verify_signatures", sealed_meanwhile)
    out = sealer.submit(copy)
    assert fired
    assert out.status in ("created", "exists") and out.receipt is not None
    assert out.receipt == other.receipt(copy_id := out.id or "")
    assert _count(sealer, copy_id) == 1
    check_chain(ledger_env.settings)


def test_concurrent_copies_of_a_losing_entry_all_get_the_refusal(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    """8 threads (8 Sealers) send copies of an entry that loses to one queued just before:
    every copy that asked to wait gets ``participant_exists``, none an unsettled "pending"
    (a refusal read and deleted by one request used to leave the others with nothing)."""
    sealers = [open_sealer() for _ in range(8)]
    outcomes: Counter[tuple[str, str | None]] = Counter()
    for i in range(CONFLICT_ROUNDS):
        winner = register(ledger_env.admin, Member(f"first-{i}"), ["producer"])
        loser = register(ledger_env.admin, Member(f"first-{i}"), ["processor"])
        assert sealers[0].submit(winner, wait=False).status == "pending"
        outcomes.update((r[0], r[4]) for r in _race(sealers, [loser] * len(sealers)))
    assert outcomes == {("rejected", ParticipantExists.code): CONFLICT_ROUNDS * len(sealers)}
    check_chain(ledger_env.settings)


# --- group commit --------------------------------------------------------------------------


def test_group_commit_under_concurrency(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    """16 threads sharing one Sealer, 5 entries each: every entry sealed once, in fewer
    blocks than entries."""
    threads, each = 16, 5
    sealer = open_sealer()
    envs = [register(ledger_env.admin, Member(f"m{i:03d}"), ["producer"]) for i in range(threads * each)]
    blocks_before = _blocks(sealer)
    barrier = threading.Barrier(threads)

    def run(k: int) -> list[Result]:
        barrier.wait(timeout=30)
        return [submit_one(sealer, e) for e in envs[k * each : (k + 1) * each]]

    with ThreadPoolExecutor(threads) as pool:
        results = [r for rs in pool.map(run, range(threads)) for r in rs]
    assert Counter(r[0] for r in results) == {"created": threads * each}
    assert sorted(r[2] for r in results if r[2] is not None) == list(range(1, 1 + threads * each))
    new_blocks = _blocks(sealer) - blocks_before
    assert 1 <= new_blocks < threads * each
    facts = check_chain(ledger_env.settings)
    assert max(facts.block_sizes) > 1


def test_queued_entries_are_sealed_in_one_block(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    sealer = open_sealer()
    outs = [sealer.submit(register(ledger_env.admin, Member(f"q{i}"), ["producer"]), wait=False) for i in range(10)]
    assert {o.status for o in outs} == {"pending"}
    blocks = _blocks(sealer)
    assert len(sealer.seal_pending()) == 10
    assert len(sealer.seal_pending()) == 0
    assert _blocks(sealer) == blocks + 1
    receipts = [sealer.receipt(o.id) for o in outs if o.id]
    assert [r.index for r in receipts] == list(range(1, 11))
    assert {r.height for r in receipts} == {blocks}
    facts = check_chain(ledger_env.settings)
    assert facts.block_sizes[-1] == 10


def _key_reads(sealer: Sealer, envelopes: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """How many statements read participant_keys while ``envelopes`` are submitted in one
    batch (intake, then sealing), and the outcomes' statuses."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM participant_keys" in statement:
            seen.append(statement)

    event.listen(sealer.store.engine, "before_cursor_execute", record)
    try:
        outcomes = sealer.submit_batch(envelopes)
    finally:
        event.remove(sealer.store.engine, "before_cursor_execute", record)
    return len(seen), [o.status for o in outcomes]


def test_the_keys_a_batch_registers_are_looked_up_once_per_block(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    # Each registration's new key must be checked unused (KeyInUse), at intake and again when
    # sealing; one query per phase for the whole batch, not one per entry, so that an append
    # costs no more probes of the key index than it must.
    sealer = open_sealer()
    members = [Member(f"k-{i}") for i in range(20)]
    one, one_status = _key_reads(sealer, [register(ledger_env.admin, Member("k-solo"), ["producer"])])
    many, many_status = _key_reads(sealer, [register(ledger_env.admin, m, ["producer"]) for m in members])
    assert one_status == ["created"] and many_status == ["created"] * 20
    assert many == one <= 2, (one, many)
    # The batched look-up still refuses a key already in use: registered in an earlier block,
    # or earlier in the same batch.
    earlier = members[0]  # its key was registered by the batch above
    taken = Member("k-taken")
    outcomes = sealer.submit_batch([
        register(ledger_env.admin, Member("k-old", earlier.key), ["producer"]),
        register(ledger_env.admin, taken, ["producer"]),
        register(ledger_env.admin, Member("k-dup", taken.key), ["producer"]),
    ])
    assert [o.status for o in outcomes] == ["rejected", "created", "rejected"]
    assert all(isinstance(o.error, KeyInUse) for o in (outcomes[0], outcomes[2]))


# --- 202 entries ---------------------------------------------------------------------------


def test_queued_entry_is_sealed_by_a_later_round(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    sealer, later = open_sealer(), open_sealer()
    queued = sealer.submit(register(ledger_env.admin, Member("later"), ["producer"]), wait=False)
    assert queued.status == "pending" and queued.receipt is None and queued.id is not None
    assert _count(sealer, queued.id) == 0
    # Another writer's sealing round (here: another request that waits) takes it too.
    other = later.submit(register(ledger_env.admin, Member("other"), ["producer"]))
    assert other.status == "created"
    receipt = later.receipt(queued.id)
    assert other.receipt is not None
    assert receipt.height == other.receipt.height
    assert {receipt.index, other.receipt.index} == {1, 2}
    check_chain(ledger_env.settings)


def test_queued_entry_is_sealed_by_the_background_sealer(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    sealer, background = open_sealer(), open_sealer()
    background.start_background(0.05)
    outs = [sealer.submit(register(ledger_env.admin, Member(f"bg{i}"), ["producer"]), wait=False) for i in range(5)]
    ids = [o.id for o in outs if o.id]
    assert len(ids) == 5
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_count(sealer, i) == 0 for i in ids):
        time.sleep(0.05)
    background.stop_background()
    assert [_count(sealer, i) for i in ids] == [1] * 5
    with sealer.store.read() as conn:
        assert not sealer.store.has_pending(conn)
    check_chain(ledger_env.settings)


def test_background_sealer_outlives_a_lost_database_connection(
    ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A round cut by the database (a terminated backend, a restart: OperationalError) is a
    warning without a traceback, and the next round seals the queue."""
    sealer, background = open_sealer(), open_sealer()
    real = background.store.has_pending
    failures = iter([True, True])

    def flaky(conn: Any) -> bool:
        if next(failures, False):
            raise OperationalError("SELECT 1", {}, Exception("terminating connection due to administrator command"))
        return real(conn)

    monkeypatch.setattr(background.store, "has_pending", flaky)
    out = sealer.submit(register(ledger_env.admin, Member("after-cut"), ["producer"]), wait=False)
    assert out.id
    with caplog.at_level("WARNING", logger="filiera.sealing"):
        background.start_background(0.05)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _count(sealer, out.id) == 0:
            time.sleep(0.05)
        background.stop_background()
    assert _count(sealer, out.id) == 1
    cut = [r for r in caplog.records if "interrupted" in r.getMessage()]
    assert len(cut) == 2 and all(r.levelname == "WARNING" and r.exc_info is None for r in cut)
    assert "administrator command" in cut[0].getMessage()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# --- a crash between queueing and sealing --------------------------------------------------


def test_restart_after_queueing_loses_nothing(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    """A process queues entries, then goes away without sealing; a brand-new Store and Sealer
    (a restarted process) seal them."""
    crashed = open_sealer()
    outs = [crashed.submit(register(ledger_env.admin, Member(f"c{i}"), ["producer"]), wait=False) for i in range(3)]
    crashed.store.dispose()
    restarted = open_sealer()
    assert len(restarted.seal_pending()) == 3
    assert [restarted.receipt(o.id).index for o in outs if o.id] == [1, 2, 3]
    check_chain(ledger_env.settings)


def test_sigkill_after_queueing_loses_nothing(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    """The same with a real crash: a child process answers 202 and dies by SIGKILL."""
    env = register(ledger_env.admin, Member("killed"), ["producer"])
    results = SPAWN.Queue()
    proc = SPAWN.Process(target=enqueue_and_die, args=(ledger_env.settings, env, results))
    proc.start()
    status, entry_id, _, _, _ = results.get(timeout=PROCESS_LIMIT_S)
    proc.join(timeout=30)
    assert proc.exitcode == -9
    assert status == "pending" and entry_id is not None
    restarted = open_sealer()
    assert _count(restarted, entry_id) == 0
    # The next request seals the orphan with its own entry, in one block.
    mine = restarted.submit(register(ledger_env.admin, Member("next"), ["producer"]))
    assert mine.status == "created" and mine.receipt is not None
    orphan = restarted.receipt(entry_id)
    assert orphan.height == mine.receipt.height
    assert _count(restarted, entry_id) == 1
    check_chain(ledger_env.settings)


# --- a conflict the append lock should have prevented -------------------------------------


def test_an_append_conflict_is_refused_503_and_logged(
    ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """If another writer took the block's position (a unique key refuses the insert), the
    submitter is told to submit again (Unavailable: 503), nothing is acknowledged or written,
    and the error is logged: it means the append lock failed (TESTPLAN T1's no-lock control
    showed a 500 here before)."""
    sealer = open_sealer()
    env = register(ledger_env.admin, Member("conflicted"), ["producer"])
    real = sealer.store.write_block

    def taken(*args: Any, **kwargs: Any) -> Any:
        raise IntegrityError("INSERT INTO blocks ...", {}, Exception("duplicate key value violates unique constraint"))

    monkeypatch.setattr(sealer.store, "write_block", taken)
    with caplog.at_level("ERROR", logger="filiera"), pytest.raises(Unavailable, match="append conflict"):
        sealer.submit(env)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "append conflict under the append lock: duplicate key value violates unique constraint"
    ]
    monkeypatch.setattr(sealer.store, "write_block", real)
    before = _blocks(sealer)
    out = sealer.submit(env)  # submitted again: sealed once
    assert out.status == "created" and _count(sealer, out.id) == 1 and _blocks(sealer) == before + 1


def test_only_a_sqlite_file_gets_a_checkpoint_thread(
    ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer], caplog: pytest.LogCaptureFixture
) -> None:
    """WAL checkpoints (ledger/storage/checkpoints.py) are SQLite's: a PostgreSQL store runs no
    such thread, so appends there log no failed `PRAGMA wal_checkpoint` (they did, every 50 ms,
    when the check looked only for a database name)."""
    sealer = open_sealer()
    with caplog.at_level("WARNING", logger="filiera"):
        for i in range(3):
            sealer.submit(register(ledger_env.admin, Member(f"ckpt{i}"), ["producer"]))
        time.sleep(0.3)  # a checkpoint thread, if any, has had several rounds by now
    assert (sealer.store._checkpointer is not None) == (sealer.store.dialect == "sqlite")
    assert not [r for r in caplog.records if "checkpoint" in r.getMessage()]
    assert not [t for t in threading.enumerate() if t.name == "filiera-checkpoint" and sealer.store.dialect != "sqlite"]
