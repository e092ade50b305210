"""SQLite WAL checkpoints, run beside the writers instead of inside their commits.

In WAL mode every commit appends the pages it changed to the ``-wal`` file, and a checkpoint
copies them back into the database file. By default SQLite checkpoints inside whichever commit
takes the WAL past 1,000 pages: that commit then also writes every page the WAL holds to its
place in the database file and syncs it, before the writer may answer. In a small ledger those
pages are few and close together; in a million-entry one each append dirties its own pages of
the random-key indexes (entry ids, nonces, key ids), scattered over a file of a gigabyte, and the
checkpoint's writes and sync made appends in blocks of 100 cost about a third more per entry at
1M entries than at 10k (bench/results.md).

So each process that writes checkpoints from a thread of its own: after a write transaction
commits, :meth:`Checkpointer.nudge` wakes it, and it runs a ``PASSIVE`` checkpoint, which never
blocks writers or readers (it copies what no reader still needs, and leaves the rest for the
next round). Durability does not depend on it: a committed transaction is already synced in the
WAL. SQLite's own checkpoint at commit stays as a backstop, at :data:`BACKSTOP_PAGES`, for a
WAL that grows while nothing runs this thread (another tool writing, or a checkpoint that
cannot keep up).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref

from sqlalchemy import Engine

__all__ = ["BACKSTOP_PAGES", "Checkpointer"]

log = logging.getLogger("filiera.storage")

# SQLite's wal_autocheckpoint on Filiera's connections: checkpoints in a commit only once the
# WAL holds this many pages (about 40 MB of 4 KiB pages), ten times SQLite's default.
BACKSTOP_PAGES = 10_000

# At most one checkpoint round per this many seconds: a burst of commits is copied back in one
# round (each round syncs the database file), a lone commit within this delay.
MIN_INTERVAL_S = 0.05


class Checkpointer:
    """Checkpoints one SQLite database's WAL from a daemon thread, started on first nudge."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.rounds = 0  # checkpoint rounds run, for tests and metrics
        ref = weakref.ref(self)

        def after_in_child() -> None:
            # A forked child has none of the parent's threads, and a lock the parent's thread
            # held at the fork would stay held: start afresh (the thread starts on first nudge).
            me = ref()
            if me is not None:
                me._lock, me._wake, me._thread = threading.Lock(), threading.Event(), None

        os.register_at_fork(after_in_child=after_in_child)

    def nudge(self) -> None:
        """A write transaction committed: checkpoint soon (never in the caller's thread)."""
        if self._stop.is_set():
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="filiera-checkpoint", daemon=True)
                    self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """Stop the thread after its current round (the WAL keeps what was not copied yet)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            started = time.monotonic()
            try:
                self.checkpoint()
            except Exception as exc:  # noqa: BLE001 - the next commit nudges again; the backstop remains
                log.warning("WAL checkpoint failed, retried after the next commit: %s", exc)
            self._stop.wait(max(0.0, MIN_INTERVAL_S - (time.monotonic() - started)))

    def checkpoint(self) -> tuple[int, int, int]:
        """One ``PASSIVE`` checkpoint: (busy, pages in the WAL, pages copied back)."""
        raw = self._engine.raw_connection()
        try:
            # Outside any transaction (the driver connection is in autocommit mode): a
            # connection inside one could not checkpoint.
            driver = raw.driver_connection
            assert driver is not None
            row = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            raw.close()
        self.rounds += 1
        return int(row[0]), int(row[1]), int(row[2])
