"""TESTPLAN T1's negative controls on the server side: the crash hammer run for real against a
deliberately broken server (faults.py), each run required to turn a figure red. A checker or a
harness that never fires proves nothing; these show that the figures of the real runs are zero
because the server keeps its promises, not because the hammer cannot see a broken one.

Each control is short (4 clients, 24-30 s, a kill every 3-5 s). ``make reliability`` runs them
after the main runs (FILIERA_T1_CONTROLS) and fails if one does not turn red. Docs:
docs/reliability.md, "Negative controls".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .hammer import Plan

__all__ = ["Control", "CONTROLS", "SHORT", "judge"]

# The plan of test_smoke.py's healthy run, and the base of every control's.
SHORT = Plan(backend="sqlite", seconds=24, clients=4, kill_every=(3.0, 5.0), min_kills=3, seed=7)
# synchronous_commit=off, and a WAL writer that flushes every 10 s at most (1 GB of WAL before
# that): a commit is acknowledged from shared memory, and a crash loses what is not written yet.
# Kills of the server only: a database kill makes a healthy server answer 503 too, and the
# append-lock controls are judged by the 5xx answers.
SERVER_KILLS = ("worker", "group")
ASYNC_COMMIT = (("synchronous_commit", "off"), ("wal_writer_delay", "10s"), ("wal_writer_flush_after", "1GB"))


@dataclass(frozen=True)
class Control:
    name: str
    plan: Plan
    expect: str  # what must turn red, in words
    red: Callable[[dict[str, Any]], bool]  # True: the figure turned red, as it must
    positive: bool = False  # a safe twin: must pass instead (same plan, no fault)


def _lost(r: dict[str, Any]) -> bool:
    return bool(r["lost"])


def _append_conflicts(r: dict[str, Any]) -> bool:
    return bool(r["errors_5xx"])


def _history(r: dict[str, Any]) -> bool:
    return bool(r["forks"] or r["gaps"] or r["dup"]) and not r["verify_ok"]


CONTROLS: tuple[Control, ...] = (
    Control(
        "ack_before_commit", replace(SHORT, fault="ack_before_commit"),
        "lost > 0: entries answered 201 before their block committed die with the worker", _lost,
    ),
    Control(
        "no_append_lock_sqlite", replace(SHORT, fault="no_append_lock", kinds=SERVER_KILLS),
        "5xx > 0: without the writer lock and BEGIN IMMEDIATE, SQLite's single writer refuses the "
        "second round (database is locked) and the server answers 503", _append_conflicts,
    ),
    Control(
        "no_append_lock_postgresql", replace(SHORT, backend="postgresql", fault="no_append_lock", kinds=SERVER_KILLS),
        "5xx > 0: without the advisory lock, two rounds append after one head and the unique "
        "keys refuse the second (append conflicts, answered 503)", _append_conflicts,
    ),
    Control(
        "no_append_lock_no_unique_postgresql",
        replace(SHORT, backend="postgresql", fault="no_append_lock,no_unique_constraints", kinds=SERVER_KILLS),
        "forks, gaps or dup > 0 and filiera verify fails: with neither the lock nor the unique "
        "keys, two blocks are stored at one height", _history,
    ),
    Control(
        "synchronous_commit_off",
        replace(SHORT, backend="postgresql", seconds=30, kinds=("pg_cluster",), private_pg=ASYNC_COMMIT, fault="unsafe_durability_allowed"),
        "lost > 0: a private cluster with synchronous_commit=off, every postgres process killed "
        "(pg_cluster), loses commits it had acknowledged", _lost,
    ),
    Control(
        "pg_cluster_safe",
        replace(SHORT, backend="postgresql", seconds=30, kinds=("pg_cluster",), private_pg=ASYNC_COMMIT[1:]),
        "all figures 0: the same cluster kills with synchronous_commit=on (the safe twin of "
        "synchronous_commit_off) lose nothing", lambda r: bool(r["ok"]), positive=True,
    ),
)


def judge(control: Control, result: dict[str, Any]) -> dict[str, Any]:
    """The control's verdict added to its run's result: ``control_ok`` is True when a faulty
    run turned red (and its server did run with the fault), or a safe twin passed."""
    # The control ran against the broken server, not a healthy one: its processes said so.
    installed = not control.plan.fault or bool(result.get("fault_installed"))
    red = control.red(result)
    result.update(
        control=control.name,
        expect=control.expect,
        positive=control.positive,
        turned_red=not control.positive and red,
        control_ok=installed and red,
    )
    return result
