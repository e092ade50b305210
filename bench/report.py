"""The human summary of one run: a table, each figure beside its baseline and target."""

from __future__ import annotations

from typing import Any

__all__ = ["render"]

BACKENDS = ("sqlite", "postgresql")
LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _n(v: float | None, fmt: str = ",.0f") -> str:
    return "-" if v is None else format(v, fmt)


def _get(d: dict[str, Any], *path: Any) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ok" if ok else " MISS")


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    t = results["targets"]
    b = results["baseline"]
    lines = [
        f"Filiera benchmarks, {results['started']}",
        f"machine: {m['cpu_model']}, {m['cores']} cores, Python {m['python']}, "
        f"SQLite {m['sqlite']}, PostgreSQL {m['postgresql'] or 'unreachable'}, "
        f"PyNaCl {m['pynacl']}",
    ]
    load = m.get("loadavg_start"), m.get("loadavg_end")
    if all(load):
        lines.append(
            f"load average (1 min) at start {load[0][0]:.2f}, at end {load[1][0]:.2f}: anything well "
            "above 0 means other work shared these cores and the figures are low"
        )
    v1, v2 = _get(b, "verify_1", "per_s"), _get(b, "verify_2", "per_s")
    lines.append(
        f"baseline: raw Ed25519 verify of a 300-byte message: {_n(v1)}/s on 1 core, "
        f"{_n(v2)}/s with 2 processes (the '2-core ceiling')"
        + (f"; 2-process scaling {v2 / v1:.2f}x (about 2x on an idle machine)" if v1 and v2 else "")
    )
    be = results["backends"]
    cols = [k for k in BACKENDS if k in be]
    w = 26
    head = f"{'':44}" + "".join(f"{LABELS[c]:>{w}}" for c in cols) + "   target"
    rows: list[str] = ["", head, "-" * len(head)]

    def row(label: str, cells: list[str], target: str = "") -> None:
        rows.append(f"{label:44}" + "".join(f"{c:>{w}}" for c in cells) + (f"   {target}" if target else ""))

    def cell(c: str, fn: Any) -> str:
        try:
            return fn(be[c])
        except (KeyError, TypeError):
            return "-"

    single_target = t["single_entries_per_s"]
    batch_target = t["batch_ratio_to_2core_verify"]
    rows.append("single-entry POST /v1/entries (key.add, 2 sigs)")
    row("  entries/s", [cell(c, lambda r: _n(r["single"]["entries_per_s"]) + _mark(r["single"]["entries_per_s"] >= single_target)) for c in cols], f">= {single_target:,.0f}/s")
    row("  ratio to 2-core verify (entries, sigs)", [cell(c, lambda r: f"{r['single']['ratio_to_2core_verify']:.3f}, {r['single']['signature_ratio_to_2core_verify']:.3f}") for c in cols])
    row("  latency p50 / p99 ms", [cell(c, lambda r: f"{r['single']['p50_ms']:.1f} / {r['single']['p99_ms']:.1f}") for c in cols])
    row("  clients, entries, errors", [cell(c, lambda r: f"{r['single']['clients']}, {r['single']['entries']}, {r['single']['requests'] - r['single']['entries']}") for c in cols])
    row("  CPU s: server / postgres / clients", [cell(c, lambda r: "{server_s:.0f} / {postgres_s:.0f} / {clients_s:.0f}".format(**r["single"]["cpu"])) for c in cols])
    row("  blocks sealed, entries per block", [cell(c, lambda r: "{blocks}, {entries_per_block:.1f}".format(**r["single"]["sealing"])) for c in cols])
    rows.append("batch POST /v1/entries/batch (1,000 key.add)")
    row("  entries/s", [cell(c, lambda r: _n(r["batch"]["entries_per_s"])) for c in cols])
    row("  ratio to 2-core verify (entries, sigs)", [cell(c, lambda r: f"{r['batch']['ratio_to_2core_verify']:.3f}{_mark(r['batch']['ratio_to_2core_verify'] >= batch_target)}, {r['batch']['signature_ratio_to_2core_verify']:.3f}") for c in cols], f">= {batch_target:.2f} (entries)")
    row("  request p50 / max ms", [cell(c, lambda r: f"{r['batch']['request_p50_ms']:.0f} / {r['batch']['request_max_ms']:.0f}") for c in cols])
    row("  clients x requests, entries", [cell(c, lambda r: f"{r['batch']['clients']} x {r['batch']['batches'] // r['batch']['clients']}, {r['batch']['entries']}") for c in cols])
    row("  CPU s: server / postgres / clients", [cell(c, lambda r: "{server_s:.0f} / {postgres_s:.0f} / {clients_s:.0f}".format(**r["batch"]["cpu"])) for c in cols])
    row("  blocks sealed, entries per block", [cell(c, lambda r: "{blocks}, {entries_per_block:.1f}".format(**r["batch"]["sealing"])) for c in cols])

    sc = results.get("scale") or {}
    sizes = sorted({r["tree_size"] for c in cols for r in (sc.get("backends") or {}).get(c, [])})
    proof_target = t.get("proof_ms_at_1m", t["proof_ms_at_100k"])
    for size in sizes:
        rows.append(f"ledger of {size:,} entries: proofs p50 / p99 ms, append, provenance")

        def at(r: dict[str, Any], c: str = "", size: int = size) -> dict[str, Any]:
            return next(s for s in sc["backends"][c] if s["tree_size"] == size)

        def scell(c: str, fn: Any) -> str:
            try:
                return str(fn(at({}, c)))
            except (KeyError, TypeError, StopIteration):
                return "-"

        for kind, label in (
            ("inclusion_http", "  inclusion, Flask test client"),
            ("inclusion_direct", "  inclusion, store + merkle"),
            ("consistency_http", "  consistency, Flask test client"),
            ("consistency_direct", "  consistency, store + merkle"),
        ):
            judged = size >= 1_000_000 and kind.endswith("_http")
            row(label, [scell(c, lambda r, k=kind, j=judged: f"{r['proofs'][k]['p50_ms']:.2f} / {r['proofs'][k]['p99_ms']:.2f}" + (_mark(r["proofs"][k]["p99_ms"] < proof_target) if j else "")) for c in cols],
                f"p99 < {proof_target:g} ms" if judged else "")
        row("  append, batch of 100: us/entry (x smallest)", [scell(c, lambda r: f"{r['append']['batch']['us_per_entry']:,.0f} ({r['append']['batch'].get('ratio_to_smallest', 0):.2f}x)") for c in cols])
        row("  append, one entry: us/entry (x smallest)", [scell(c, lambda r: f"{r['append']['single']['us_per_entry']:,.0f} ({r['append']['single'].get('ratio_to_smallest', 0):.2f}x)") for c in cols])
        row("  provenance p50 / p95 ms", [scell(c, lambda r, j=size >= 1_000_000: f"{r['provenance']['p50_ms']:.1f} / {r['provenance']['p95_ms']:.1f}" + (_mark(r["provenance"]["p95_ms"] < t["provenance_p95_ms"]) if j else "")) for c in cols],
            f"p95 < {t['provenance_p95_ms']:g} ms" if size >= 1_000_000 else "")
        row("  ledger", [scell(c, lambda r: "copied" if "copy" in r else r["built_by"]) for c in cols])
    if any("demo" in be[c] for c in cols):
        rows.append("realistic mix: filiera demo --lots N, in-process")
        row("  lots, entries, blocks", [cell(c, lambda r: "{lots:,}, {entries:,}, {blocks:,}".format(**r["demo"])) for c in cols])
        row("  time to build, entries/s", [cell(c, lambda r: "{seconds:,.0f} s, {entries_per_s:,.0f}/s".format(**r["demo"])) for c in cols])
        row("  projection: snapshots with head's facts / all", [cell(c, lambda r: "{head_block_facts_visible:,} / {snapshots:,}".format(**r["demo"]["projection"]) if "projection" in r["demo"] else "-") for c in cols], "lag < 1 s")
        row("  ratio to 2-core verify, CPU ms per entry", [cell(c, lambda r: "{:.3f}, {:.2f}".format(r["demo"].get("ratio_to_2core_verify", 0.0), r["demo"]["cpu_ms_per_entry"])) for c in cols])
    lines.extend(rows)
    audit = results.get("audit")
    if audit:
        ratio = audit.get("ratio_to_all_core_verify", 0.0)
        lines += [
            "",
            f"offline audit (filiera audit, {audit['workers']} worker processes) of a {audit['lots']:,}-lot demo export "
            f"({audit['bundle_bytes'] / 2**20:,.0f} MiB, {audit['entries']:,} entries, {audit['signatures']:,} signatures):",
            f"  {audit['seconds']:,.1f} s: {audit['entries_per_s']:,.0f} entries/s = {ratio:.2f} of the all-core verify rate "
            f"{_mark(ratio >= t['audit_ratio_to_all_core_verify'])} (target >= {t['audit_ratio_to_all_core_verify']:.2f}); "
            f"{audit['signatures_per_s']:,.0f} signatures/s = {audit.get('signature_ratio_to_all_core_verify', 0.0):.2f}",
            f"  peak memory {audit['peak_pss_mb']:,.0f} MB PSS of the process tree "
            f"{_mark(audit['peak_pss_mb'] < t['audit_peak_mb'])} (target < {t['audit_peak_mb']:.0f} MB; "
            f"RSS summed over processes {audit['peak_rss_sum_mb']:,.0f} MB, main process {audit['peak_main_rss_mb']:,.0f} MB)",
            f"  CPU {audit['cpu_seconds']:,.1f} s over {audit['seconds']:,.1f} s of wall time",
        ]
    prov = results.get("provenance") or {}
    if prov:
        lines.append("")
        lines.append("provenance of a lot with a 10-step lineage, with proofs (GET /v1/lots/{lot}/provenance, in-process):")
        for backend, r in prov.items():
            lines.append(
                f"  {LABELS.get(backend, backend)}: tree size {r['tree_size']:,}, {r['entries']} entries, {r['bytes']:,} bytes: "
                f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms{_mark(r['p95_ms'] < t['provenance_p95_ms'])}, p99 {r['p99_ms']:.1f} ms "
                f"(target p95 < {t['provenance_p95_ms']:.0f} ms)"
            )
    for e in results["errors"]:
        lines.append(f"ERROR: {e}")
    return "\n".join(lines)
