"""SQLite WAL checkpoints run in a thread of their own, not inside the commits of appends, once
the writers pause or at most MAX_DEFER_S after a commit (ledger/storage/checkpoints.py)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ledger.sealing import Sealer
from ledger.storage.checkpoints import BACKSTOP_BYTES, MAX_DEFER_S, WAL_LIMIT_BYTES, Checkpointer

from ..conftest import BACKENDS, LedgerEnv
from ..factories import Member, register

SQLITE = [b for b in BACKENDS if b == "sqlite"]
pytestmark = pytest.mark.parametrize("db", SQLITE, indirect=True)


def _wal(sealer: Sealer) -> tuple[int, int, int]:
    """(busy, pages in the WAL, pages of it copied back), as a checkpoint that finds nothing
    new to copy reports them."""
    raw = sealer.store.engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None
        row = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[0]), int(row[1]), int(row[2])
    finally:
        raw.close()


def test_appends_are_checkpointed_by_a_thread_of_their_own(
    ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer], monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    checkpoint = Checkpointer.checkpoint

    def recorded(self: Checkpointer) -> Any:
        threads.append(threading.current_thread().name)
        return checkpoint(self)

    monkeypatch.setattr(Checkpointer, "checkpoint", recorded)
    sealer = open_sealer()
    for i in range(3):
        out = sealer.submit_batch([register(ledger_env.admin, Member(f"c{i}-{j}"), ["producer"]) for j in range(20)])
        assert {o.status for o in out} == {"created"}
    checkpointer = sealer.store._checkpointer
    assert checkpointer is not None
    assert _wait(lambda: checkpointer.rounds >= 1)
    assert set(threads) == {"filiera-checkpoint"}, threads
    # Whatever the appends wrote to the WAL is (or, after the last round, can be) copied back.
    busy, pages, copied = _wal(sealer)
    assert (busy, copied) == (0, pages)


def _wait(predicate: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def _checkpointer(sealer: Sealer, *, idle_s: float, max_defer_s: float = MAX_DEFER_S) -> Checkpointer:
    checkpointer = sealer.store._checkpointer
    assert checkpointer is not None
    checkpointer.idle_s, checkpointer.max_defer_s = idle_s, max_defer_s
    return checkpointer


def test_nothing_is_copied_back_before_a_pause_or_the_deadline(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    sealer = open_sealer()
    checkpointer = _checkpointer(sealer, idle_s=3600, max_defer_s=3600)
    for i in range(3):
        sealer.submit_batch([register(ledger_env.admin, Member(f"b{i}-{j}"), ["producer"]) for j in range(10)])
    time.sleep(0.3)
    assert checkpointer.rounds == 0
    # All of it is still in the WAL: the checkpoint below is the first to copy any of it.
    _, pages, copied = _wal(sealer)
    assert pages > 0 and copied == pages


def test_a_burst_of_appends_is_copied_back_once_after_it(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    sealer = open_sealer()
    checkpointer = _checkpointer(sealer, idle_s=1.0, max_defer_s=60)
    started = time.monotonic()
    for i in range(4):
        sealer.submit_batch([register(ledger_env.admin, Member(f"d{i}-{j}"), ["producer"]) for j in range(10)])
    burst = time.monotonic() - started
    if burst < 0.9:  # a loaded machine may pause mid-burst for longer than idle_s
        assert checkpointer.rounds == 0
    assert _wait(lambda: checkpointer.rounds >= 1)
    assert checkpointer.on_deadline == 0
    time.sleep(1.2)
    assert checkpointer.rounds == 1  # nothing new was committed: no more rounds


def test_sustained_writes_are_copied_back_by_the_deadline(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    sealer = open_sealer()
    checkpointer = _checkpointer(sealer, idle_s=3600, max_defer_s=0.3)
    started, i = time.monotonic(), 0
    while checkpointer.rounds == 0 and time.monotonic() - started < 30:
        sealer.submit_batch([register(ledger_env.admin, Member(f"e{i}-{j}"), ["producer"]) for j in range(5)])
        i += 1
    assert checkpointer.rounds >= 1 and checkpointer.on_deadline >= 1
    assert i > 1  # the first commits stayed in the WAL until the deadline


def test_a_commit_checkpoints_itself_only_as_a_backstop(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    sealer = open_sealer()
    with sealer.store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() * 4096 == BACKSTOP_BYTES
        assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar_one() == WAL_LIMIT_BYTES
    # A disposed store stops its thread; a commit after that would start none.
    sealer.submit(register(ledger_env.admin, Member("late"), ["producer"]))
    checkpointer = sealer.store._checkpointer
    assert checkpointer is not None and checkpointer._thread is not None
    sealer.store.dispose()
    assert not checkpointer._thread.is_alive()
    checkpointer.nudge()
    assert not checkpointer._thread.is_alive()


def test_a_forked_child_checkpoints_from_a_thread_of_its_own(ledger_env: LedgerEnv, open_sealer: Callable[..., Sealer]) -> None:
    # gunicorn forks its workers: a child inherits the Store but not the parent's thread.
    sealer = open_sealer()
    sealer.submit(register(ledger_env.admin, Member("parent"), ["producer"]))
    checkpointer = sealer.store._checkpointer
    assert checkpointer is not None and checkpointer._thread is not None
    pid = os.fork()
    if pid == 0:  # the child: append, then wait for its own checkpoint round
        code = 1
        try:
            sealer.store.engine.dispose(close=False)
            before = checkpointer.rounds
            assert checkpointer._thread is None
            sealer.submit(register(ledger_env.admin, Member("child"), ["producer"]))
            deadline = time.monotonic() + 30
            while checkpointer.rounds == before and time.monotonic() < deadline:
                time.sleep(0.01)
            code = 0 if checkpointer.rounds > before and checkpointer._thread is not None else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
