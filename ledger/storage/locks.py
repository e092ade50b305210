"""The SQLite writer lock: one writing transaction at a time, handed over without sleeping.

SQLite lets one writer in at a time and makes the others poll with sleeps that grow to 100 ms
(its busy handler). Under load that left the lock free for milliseconds at a time while the
next writer slept, and made p99 latency hundreds of milliseconds. Writers of one database
therefore queue first on a mutex (threads of this process) and then on an ``flock`` of a file
beside the database (other processes, e.g. gunicorn workers): both wake the next writer as
soon as the one before lets go. SQLite's own lock still guards the data; by the time a writer
says ``BEGIN IMMEDIATE`` it is normally free.

PostgreSQL serialises appends with an advisory lock in the transaction (``store.py``).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: threads still queue, processes poll
    fcntl = None  # type: ignore[assignment]

__all__ = ["WriterLock"]


class WriterLock:
    """Re-entrant per thread. ``path`` names the lock file (``None``: this process only)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._mutex = threading.Lock()
        self._local = threading.local()
        self._fd: int | None = None
        self._closer: Callable[[], object] | None = None
        ref = weakref.ref(self)

        def after_in_child() -> None:
            lock = ref()
            if lock is not None:
                lock._after_fork()

        os.register_at_fork(after_in_child=after_in_child)

    def _after_fork(self) -> None:
        # The child must not share the parent's open file: an flock belongs to the open file,
        # so a shared one would let parent and child both think they hold the lock.
        self._mutex = threading.Lock()
        self._local = threading.local()
        self.close()

    def close(self) -> None:
        """Close the lock file (it is opened again if the lock is used again)."""
        if self._closer is not None:
            self._closer()
            self._closer = None
        self._fd = None

    def _file(self) -> int | None:
        """The lock file's descriptor, opened on first use. Requires the mutex."""
        if self._fd is None and self._path is not None and fcntl is not None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            # Closed with the lock if nobody calls close(): a descriptor is not an object.
            self._closer = weakref.finalize(self, os.close, self._fd)
        return self._fd

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the body (at once if this thread holds it already).

        There is no timeout, as for the mutex: the holder is inside one short transaction,
        and the kernel releases an ``flock`` when its process dies.
        """
        if getattr(self._local, "held", False):
            yield
            return
        with self._mutex:
            self._local.held = True
            try:
                fd = self._file()
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    if fd is not None:
                        fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                self._local.held = False
