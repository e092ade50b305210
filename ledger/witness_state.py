"""A witness's memory: the latest checkpoint it cosigned for each log, one file per origin.

c2sp.org/tlog-witness §add-checkpoint requires the check of the old size against the record
and the update of the record to be atomic, and the record to be durable before the
cosignature leaves. So each origin has a lock file, held (``flock``) from reading the record
to writing the new one; every process and thread takes its own open file, so the lock
serialises gunicorn workers and the threads of one worker alike. A record is replaced by
writing a temporary file, ``fsync``, ``rename`` over the old one and ``fsync`` of the
directory: after a crash the record is the old one or the new one, never a mix, and once the
cosignature is sent the new one survives power loss.

A record that cannot be read is an error, never "no record": forgetting a log would let it
roll back its history.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ledger.encoding import sha256
from ledger.errors import ConfigurationError, MalformedNote
from ledger.notes import Checkpoint, split_note

__all__ = ["WitnessState", "LogRecord"]


@dataclass
class LogRecord:
    """The record of one origin while its lock is held: read ``latest``, then :meth:`save`."""

    origin: str
    latest: Checkpoint | None
    _path: Path

    def save(self, note: str) -> None:
        """Durably replace the record with ``note`` (a verified, signed checkpoint of this
        origin). Raises ConfigurationError if the state directory cannot be written."""
        _write_durably(self._path, note.encode("utf-8"))
        text, _ = split_note(note)
        self.latest = Checkpoint.parse_body(text)


class WitnessState:
    """The state directory of one witness (created 0700 if missing)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the witness state directory {directory}: {exc.strerror}"
            ) from exc

    def _stem(self, origin: str) -> Path:
        # Origins are arbitrary text (slashes included); a hash is a safe file name.
        return self.directory / sha256(origin.encode("utf-8")).hex()[:40]

    @contextmanager
    def locked(self, origin: str) -> Iterator[LogRecord]:
        """Hold ``origin``'s lock and yield its record. Raises ConfigurationError if the
        record exists but cannot be read or is not a checkpoint of ``origin``."""
        stem = self._stem(origin)
        fd = os.open(f"{stem}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = stem.with_suffix(".checkpoint")
            yield LogRecord(origin=origin, latest=_read(path, origin), _path=path)
        finally:
            # Closing the file releases the lock, also if the process dies.
            os.close(fd)

    def latest(self, origin: str) -> Checkpoint | None:
        """The current record of ``origin`` (under its lock, so never a half-written one)."""
        with self.locked(origin) as record:
            return record.latest


def _read(path: Path, origin: str) -> Checkpoint | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the witness record {path}: {exc}") from exc
    try:
        body, _ = split_note(text)
        checkpoint = Checkpoint.parse_body(body)
    except MalformedNote as exc:
        raise ConfigurationError(f"the witness record {path} is damaged: {exc.detail}") from exc
    if checkpoint.origin != origin:
        raise ConfigurationError(f"the witness record {path} is for another log")
    return checkpoint


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        # The rename is durable only once the directory entry is.
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigurationError(f"cannot write the witness record {path}: {exc.strerror}") from exc
