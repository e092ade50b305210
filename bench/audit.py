"""Offline audit throughput and memory: `filiera audit` of a `filiera demo` bundle.

The demo ledger and its export are built once and kept under bench/out/audit-<lots>/ (building
a million entries takes minutes and is not what this section measures). The audit then runs as
the installed command, in its own process tree; a sampler reads the proportional set size (PSS,
which counts pages shared by the forked workers once) of the whole tree every 50 ms, so the
peak is the memory the audit really needed. Entries/s is set beside the raw PyNaCl verify rate
of all cores measured in the same run (bench.baseline).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["run_audit", "prepare"]

FILIERA = str(Path(sys.executable).with_name("filiera"))


def _children(pid: int) -> list[int]:
    found = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    found.extend(_children(int(child)))
    except OSError:
        pass
    return found


def _kb(pid: int, field: str, path: str) -> int:
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class _Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_pss_kb = 0
        self.peak_rss_kb = 0
        self.peak_main_rss_kb = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pids = _children(self.pid)
            self.peak_pss_kb = max(self.peak_pss_kb, sum(_kb(p, "Pss:", "smaps_rollup") for p in pids))
            self.peak_rss_kb = max(self.peak_rss_kb, sum(_kb(p, "VmRSS:", "status") for p in pids))
            self.peak_main_rss_kb = max(self.peak_main_rss_kb, _kb(self.pid, "VmRSS:", "status"))
            self.stop.wait(0.05)


def prepare(lots: int, cache: Path, log: Any) -> tuple[Path, Path, str]:
    """The cached demo ledger of ``lots`` lots and its export: (data dir, bundle, origin)."""
    bundle, _ = _prepare(lots, cache, log)
    with open(bundle, "rb") as f:
        origin = json.loads(f.readline())["origin"]
    return bundle.parent, bundle, origin


def _prepare(lots: int, cache: Path, log: Any) -> tuple[Path, str]:
    data = cache / f"audit-{lots}"
    bundle = data / "bundle.ndjson"
    env = {**os.environ, "FILIERA_DATA_DIR": str(data)}
    env.pop("FILIERA_DATABASE_URL", None)
    if not bundle.exists():
        data.mkdir(parents=True, exist_ok=True)
        log(f"audit: building the demo ledger of {lots:,} lots once (cached in {data})")
        subprocess.run([FILIERA, "demo", "--lots", str(lots), "--if-missing"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([FILIERA, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        log("audit: exporting it")
        subprocess.run([FILIERA, "export", "--out", str(bundle), "--force"], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(bundle, "rb") as f:
        vkey = json.loads(f.readline())["verifier_key"]
    return bundle, vkey


def run_audit(*, lots: int, cache: Path, workers: int | None, log: Any) -> dict[str, Any]:
    bundle, vkey = _prepare(lots, cache, log)
    args = [FILIERA, "audit", str(bundle), "--verifier-key", vkey, "--json"]
    if workers is not None:
        args += ["--workers", str(workers)]
    started = time.perf_counter()
    cpu0 = os.times()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    sampler = _Sampler(proc.pid)
    sampler.start()
    out, _ = proc.communicate()
    sampler.stop.set()
    sampler.join()
    wall = time.perf_counter() - started
    cpu1 = os.times()
    report = json.loads(out)
    if not report["ok"]:
        raise RuntimeError(f"the benchmark bundle did not audit clean: {report['failure']}")
    return {
        "lots": lots,
        "bundle_bytes": bundle.stat().st_size,
        "entries": report["entries"],
        "signatures": report["signatures"],
        "blocks": report["blocks"],
        "workers": report["workers"],
        "seconds": report["seconds"],
        "wall_seconds": wall,
        "entries_per_s": report["entries"] / report["seconds"],
        "signatures_per_s": report["signatures"] / report["seconds"],
        "cpu_seconds": (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system),
        "peak_pss_mb": sampler.peak_pss_kb / 1024,
        "peak_rss_sum_mb": sampler.peak_rss_kb / 1024,
        "peak_main_rss_mb": sampler.peak_main_rss_kb / 1024,
    }
