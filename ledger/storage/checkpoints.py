"""SQLite WAL checkpoints, run beside the writers instead of inside their commits, and
deferred while they write.

In WAL mode every commit appends the pages it changed to the ``-wal`` file, and a checkpoint
copies them back into the database file and syncs it. By default SQLite checkpoints inside
whichever commit takes the WAL past 1,000 pages: that commit then also writes every page the
WAL holds to its place in the database file, before the writer may answer. In a small ledger
those pages are few and close together; in a million-entry one each append dirties its own
pages of the random-key indexes (entry ids, nonces, key ids), scattered over a file of a
gigabyte. Copied back after every block, those scattered writes and their sync made appends in
blocks of 100 cost about a fifth more per entry at 1M entries than at 10k (bench/results.md),
even from a thread of their own, since they share the disk with the next commits.

So each process that writes runs checkpoints from a thread of its own, and defers them, as
PostgreSQL's checkpointer defers its write-back: after a write transaction commits,
:meth:`Checkpointer.nudge` wakes the thread, which then waits until either

- the writers have been quiet for :data:`IDLE_S` (a burst of appends is copied back once, after
  it, while nobody waits for a commit), or
- :data:`MAX_DEFER_S` have passed since the first commit not yet copied back (under sustained
  writes the WAL stays bounded, and a page changed by many blocks meanwhile is written back
  once),

and runs a ``PASSIVE`` checkpoint, which never blocks writers or readers (it copies what no
reader still needs, and leaves the rest for the next round). Durability does not depend on it:
a committed transaction is already synced in the WAL. SQLite's own checkpoint at commit stays
as a backstop, at :data:`BACKSTOP_BYTES`, for a WAL that grows while nothing runs this thread
(another tool writing, or a checkpoint that cannot keep up); after a checkpoint the ``-wal``
file is cut back to :data:`WAL_LIMIT_BYTES` (``journal_size_limit``).

Deferring does not make the copying free: it is the same random writes, fewer of them (a page
written by several blocks is copied once), done while no append waits. bench/scale.py times it
apart, after each round of appends ("write-back"). Measured the same way, deferring made
appends in blocks of 100 cheaper at both sizes (10k: 540 -> 420 µs/entry; 1M: 602 -> 505); the
1M ledger still costs more per append, for its deeper random-key indexes (bench/results.md).

The thread does not look at the ``-wal`` or ``-shm`` files itself: opening and closing either
from this process would drop the POSIX locks SQLite holds on it (closing any descriptor of a
file releases all of a process's locks on it), and another process could then take this one's
database for closed and truncate what it maps ("How To Corrupt An SQLite Database File", 2.2).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref

from sqlalchemy import Engine

__all__ = ["BACKSTOP_BYTES", "IDLE_S", "MAX_DEFER_S", "WAL_LIMIT_BYTES", "Checkpointer"]

log = logging.getLogger("filiera.storage")

# Copy the WAL back once the writers have been quiet this long...
IDLE_S = 0.25
# ... or, under sustained writes, this long after the first commit not copied back yet.
MAX_DEFER_S = 2.0
# What a -wal file is cut back to after a checkpoint (journal_size_limit).
WAL_LIMIT_BYTES = 64 << 20
# SQLite's wal_autocheckpoint on Filiera's connections (set in pages of the file's size): a commit
# checkpoints itself only once the WAL holds this much.
BACKSTOP_BYTES = 4 * WAL_LIMIT_BYTES


class Checkpointer:
    """Checkpoints one SQLite database's WAL from a daemon thread, started on first nudge."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.idle_s, self.max_defer_s = IDLE_S, MAX_DEFER_S  # tests shorten them
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.rounds = 0  # checkpoint rounds run, for tests and metrics
        self.on_deadline = 0  # of those, rounds started by MAX_DEFER_S rather than by quiet
        ref = weakref.ref(self)

        def after_in_child() -> None:
            # A forked child has none of the parent's threads, and a lock the parent's thread
            # held at the fork would stay held: start afresh (the thread starts on first nudge).
            me = ref()
            if me is not None:
                me._lock, me._wake, me._thread = threading.Lock(), threading.Event(), None

        os.register_at_fork(after_in_child=after_in_child)

    def nudge(self) -> None:
        """A write transaction committed: checkpoint once writes pause (never in the caller's thread)."""
        if self._stop.is_set():
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="filiera-checkpoint", daemon=True)
                    self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """Stop the thread (the WAL keeps what was not copied yet; SQLite copies it back when the
        last connection closes, or the next process does)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _due(self) -> bool:
        """Wait for the writers to pause, or for ``max_defer_s`` after the commit that woke the
        thread; False if stopped."""
        deadline = time.monotonic() + self.max_defer_s
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                self.on_deadline += 1
                return True
            self._wake.clear()
            if not self._wake.wait(min(self.idle_s, left)) and self.idle_s <= left:
                return not self._stop.is_set()  # quiet for idle_s (a wait cut short by the deadline loops to it)
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if not self._due():
                return
            try:
                self.checkpoint()
            except Exception as exc:  # noqa: BLE001 - the next commit nudges again; the backstop remains
                log.warning("WAL checkpoint failed, retried after the next commit: %s", exc)

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
