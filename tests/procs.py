"""Helpers for tests that start servers and processes of their own: a free loopback port, and
the processes a given one started."""

from __future__ import annotations

import os
import socket

__all__ = ["child_pids", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (it may be taken before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_pids(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The parent pid is the second field after the command name, which is in parentheses.
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(name))
    return found
