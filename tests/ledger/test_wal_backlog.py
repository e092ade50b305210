"""The WAL backlog the checkpoint thread reads from SQLite's WAL-index header
(ledger/storage/checkpoints.py; layout: https://sqlite.org/walformat.html, section 2.1)."""

from __future__ import annotations

import sys
from pathlib import Path

from ledger.storage.checkpoints import wal_backlog


def _header(mx_frame: int, backfilled: int, page: int = 4096) -> bytearray:
    header = bytearray(136)
    for copy in (0, 48):
        header[copy:copy + 4] = (3007000).to_bytes(4, sys.byteorder)  # iVersion
        header[copy + 14:copy + 16] = page.to_bytes(2, sys.byteorder)  # szPage
        header[copy + 16:copy + 20] = mx_frame.to_bytes(4, sys.byteorder)
    header[96:100] = backfilled.to_bytes(4, sys.byteorder)  # nBackfill, first field of WalCkptInfo
    return header


def test_a_missing_or_torn_wal_index_gives_no_backlog(tmp_path: Path) -> None:
    assert wal_backlog(tmp_path / "none-shm") is None
    shm = tmp_path / "db-shm"
    shm.write_bytes(b"\0" * 200)
    assert wal_backlog(shm) is None  # no WAL-index version: not a header
    header = _header(500, 120)
    shm.write_bytes(bytes(header))
    assert wal_backlog(shm) == 380 * 4096
    shm.write_bytes(bytes(_header(3, 1, page=1)))  # a page size of 65536 is stored as 1
    assert wal_backlog(shm) == 2 * 65536
    header[48 + 16] = 7  # the second copy differs: a writer is changing the header
    shm.write_bytes(bytes(header))
    assert wal_backlog(shm) is None
