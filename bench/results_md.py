"""``bench/results.md``: one run's results.json as markdown tables, merged into the file.

The file has a generated part, between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``,
which every run rewrites, and hand-maintained parts around it (the test plan figures, dated
by the test report they come from). In the test plan table, the row that starts ``| T1 |`` is
rewritten from ``bench/out/reliability.json`` (written by ``make reliability``) when that file
exists (a line, not markers: a comment line would end the markdown table).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

__all__ = ["carry_over", "render_markdown", "splice_sections", "write_results_md"]

# What each section of a run writes in results.json: (section, where).
_SECTIONS = {
    "single": ("backends", "single"),
    "batch": ("backends", "batch"),
    "demo": ("backends", "demo"),
    "proofs": ("scale",),
    "audit": ("audit",),
    "provenance": ("provenance",),
    "load": ("load",),
}

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
T1_ROW = "| T1 |"
LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _get(d: Any, *path: Any) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _n(v: Any, fmt: str = ",.0f") -> str:
    return "–" if v is None else format(v, fmt)


def _ok(ok: bool | None) -> str:
    return "" if ok is None else (" ✅" if ok else " ❌")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def _machine(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    la0, la1 = m.get("loadavg_start") or [None] * 3, m.get("loadavg_end") or [None] * 3
    load = f"start {_n(la0[0], '.2f')} / {_n(la0[1], '.2f')} / {_n(la0[2], '.2f')}, end {_n(la1[0], '.2f')} / {_n(la1[1], '.2f')} / {_n(la1[2], '.2f')}"
    lines = [
        f"**Machine:** {m['cpu_model']}, {m['cores']} cores ({m.get('usable_cores', m['cores'])} usable), "
        f"{_n(m.get('ram_gib'), '.1f')} GiB RAM; {m.get('platform', platform.platform())}; "
        f"Python {m['python']}, SQLite {m['sqlite']}, PostgreSQL {m['postgresql'] or 'unreachable'}, PyNaCl {m['pynacl']}.",
        "",
        f"**Load average** (1 / 5 / 15 min): {load}. The machine is shared: anything well above 0 at "
        "the start means other work was using these cores, and every figure (the baseline too) is low "
        "by about that much; the ratios to the same-run baseline are the steadier figures.",
        "",
    ]
    return lines


def _baseline(results: dict[str, Any]) -> list[str]:
    b = results["baseline"]
    v1, v2 = _get(b, "verify_1", "per_s"), _get(b, "verify_2", "per_s")
    if not (v1 or v2):
        return []
    return [
        "### Baseline: raw Ed25519 verify (same run)",
        "",
        *_table(["processes", "verifications/s", "note"], [
            ["1", _n(v1), "one core: the ceiling of anything single-threaded (sealing, append cost)"],
            ["2", _n(v2), "the 2-core ceiling of ingest" + (f"; scaling {v2 / v1:.2f}x" if v1 and v2 else "")],
        ]),
    ]


def _ingest(results: dict[str, Any]) -> list[str]:
    be = results["backends"]
    cols = [c for c in ("sqlite", "postgresql") if c in be and ({"single", "batch", "demo"} & set(be[c]))]
    if not cols:
        return []
    t = results["targets"]
    rows: list[list[str]] = []

    def row(label: str, fn: Any, target: str = "") -> None:
        cells = []
        for c in cols:
            try:
                cells.append(fn(be[c]))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("–")
        rows.append([label, *cells, target])

    row("single POST /v1/entries: entries/s", lambda r: _n(r["single"]["entries_per_s"]) + _ok(r["single"]["entries_per_s"] >= t["single_entries_per_s"]), f"≥ {t['single_entries_per_s']:,.0f}/s")
    row("single: ratio to 2-core verify (entries, signatures)", lambda r: f"{r['single']['ratio_to_2core_verify']:.3f}, {r['single']['signature_ratio_to_2core_verify']:.3f}")
    row("single: latency p50 / p99 ms", lambda r: f"{r['single']['p50_ms']:.1f} / {r['single']['p99_ms']:.1f}")
    row("batch POST /v1/entries/batch (1,000): entries/s", lambda r: _n(r["batch"]["entries_per_s"]))
    row("batch: ratio to 2-core verify (entries, signatures)", lambda r: f"{r['batch']['ratio_to_2core_verify']:.3f}{_ok(r['batch']['ratio_to_2core_verify'] >= t['batch_ratio_to_2core_verify'])}, {r['batch']['signature_ratio_to_2core_verify']:.3f}", f"≥ {t['batch_ratio_to_2core_verify']:.2f} (entries)")
    row("batch: request p50 / max ms", lambda r: f"{r['batch']['request_p50_ms']:.0f} / {r['batch']['request_max_ms']:.0f}")
    row("realistic mix (demo): lots, entries", lambda r: f"{r['demo']['lots']:,}, {r['demo']['entries']:,}")
    row("realistic mix: entries/s, ratio to 2-core verify", lambda r: f"{r['demo']['entries_per_s']:,.0f}, {r['demo']['ratio_to_2core_verify']:.3f}")
    row("realistic mix: CPU ms per entry", lambda r: f"{r['demo']['cpu_ms_per_entry']:.2f}")
    return ["### Ingest: single, batch, realistic mix", "", *_table(["", *(LABELS[c] for c in cols), "target"], rows)]


def _scale(results: dict[str, Any]) -> list[str]:
    sc = results.get("scale")
    if not sc:
        return []
    t = results["targets"]
    v1 = _get(results, "baseline", "verify_1", "per_s")
    out = [
        "### Ledgers of 10k, 100k and 1M entries: proofs, append cost, provenance",
        "",
        f"Each ledger: a {sc['demo_lots']}-lot `filiera demo` grown with signed `{sc['filler']}` entries by "
        f"`Sealer.submit_batch` in chunks of {sc['chunk']:,} (code version `{sc['code_version']}`). "
        "PostgreSQL gets the same ledger by `COPY` from the SQLite one, then `ANALYZE`.",
        "",
        "How each ledger was built (a cached ledger was built by an earlier run of the same code):",
        "",
    ]
    rows = []
    for m in sc["ledgers"]:
        how = f"reused cache (built {m['built_at']})" if m.get("reused") else "built in this run"
        start = f"from cached {m['grown_from']:,}" if m.get("grown_from") else f"from a {m['demo_lots']}-lot demo"
        rate = m["entries"] / m["seal_s"] if m.get("seal_s") else None
        rows.append([f"{m['size']:,}", how, start, f"{m['entries']:,}", f"{m['grow_s']:,.0f}", f"{m['seal_s']:,.0f}", _n(rate), f"{m['db_bytes'] / 2**20:,.0f}"])
    out += _table(["entries", "cache", "grown", "entries sealed", "grow s (signing overlapped)", "sealing s", "sealed/s", "SQLite MiB"], rows)
    for backend, sizes in sc["backends"].items():
        if not sizes:
            continue
        out += [f"#### {LABELS.get(backend, backend)}", ""]
        cols = [f"{r['tree_size']:,}" for r in sizes]
        rows = []

        def row(label: str, fn: Any, target: str = "", sizes: list[dict[str, Any]] = sizes) -> None:
            cells = []
            for r in sizes:
                try:
                    cells.append(fn(r))
                except (KeyError, TypeError, ZeroDivisionError):
                    cells.append("–")
            rows.append([label, *cells, target])

        def big(r: dict[str, Any]) -> bool:
            return bool(r["tree_size"] >= 1_000_000)  # the issue's targets are at 1M

        pt = t["proof_ms_at_1m"]
        for kind, label in (("inclusion_http", "inclusion proof, test client"), ("inclusion_direct", "inclusion proof, store + merkle"),
                            ("consistency_http", "consistency proof, test client"), ("consistency_direct", "consistency proof, store + merkle")):
            judged = kind.endswith("_http")
            row(f"{label}: p50 / p95 / p99 ms",
                lambda r, k=kind, j=judged: "{p50_ms:.2f} / {p95_ms:.2f} / {p99_ms:.2f}".format(**r["proofs"][k]) + (_ok(r["proofs"][k]["p99_ms"] < pt) if j and big(r) else ""),
                f"p99 < {pt:g} ms at 1M" if judged else "")
        row("provenance (10-step lineage, with proofs): p50 / p95 / p99 ms",
            lambda r: "{p50_ms:.1f} / {p95_ms:.1f} / {p99_ms:.1f}".format(**r["provenance"]) + (_ok(r["provenance"]["p95_ms"] < t["provenance_p95_ms"]) if big(r) else ""),
            f"p95 < {t['provenance_p95_ms']:g} ms at 1M")
        row("provenance: entries, response bytes", lambda r: f"{r['provenance']['entries']}, {r['provenance']['bytes']:,}")
        ab = sc["options"]
        row(f"append, {ab['append_batches']} × submit_batch of {ab['append_batch_size']}: µs/entry (entries/s)",
            lambda r: f"{r['append']['batch']['us_per_entry']:,.0f} ({r['append']['batch']['entries_per_s']:,.0f}/s)")
        row("append in batches: ratio to the smallest ledger, median of paired rounds (band)",
            lambda r: _ratio_cell(r["append"]["batch"]) + (_ok(_within_noise(r, "batch")) if big(r) else ""),
            "≤ 1 within noise at 1M")
        row(f"append, {ab['append_singles']} single-entry submit_batch: µs/entry (entries/s)",
            lambda r: f"{r['append']['single']['us_per_entry']:,.0f} ({r['append']['single']['entries_per_s']:,.0f}/s)")
        row("append one by one: ratio to the smallest ledger, median of paired rounds (band)",
            lambda r: _ratio_cell(r["append"]["single"]) + (_ok(_within_noise(r, "single")) if big(r) else ""),
            "≤ 1 within noise at 1M")
        if v1:
            row("append in batches: entries/s ÷ 1-core Ed25519 verify/s", lambda r: f"{r['append']['batch']['entries_per_s'] / v1:.3f}")
        row("write-back after each round (untimed): µs/entry (batch; single), ratio to the smallest",
            lambda r: "{:,.0f}; {:,.0f} ({:.2f}; {:.2f})".format(
                r["append"]["batch"]["write_back_us_per_entry"], r["append"]["single"]["write_back_us_per_entry"],
                r["append"]["batch"]["write_back_ratio_to_smallest"], r["append"]["single"]["write_back_ratio_to_smallest"]))
        row("append rounds, µs/entry (batch; single)", lambda r: ", ".join(f"{x:,.0f}" for x in r["append"]["batch"]["rounds_us_per_entry"]) + "; " + ", ".join(f"{x:,.0f}" for x in r["append"]["single"]["rounds_us_per_entry"]))
        row("append warm-up round (not counted), entries/s (batch; single)", lambda r: f"{r['append']['batch']['warmup_entries_per_s']:,.0f}; {r['append']['single']['warmup_entries_per_s']:,.0f}")
        row("database size on disk, MiB", lambda r: f"{r['db_bytes'] / 2**20:,.0f}")
        row("ledger", lambda r: r["built_by"] + (f", COPY {r['copy']['copy_s']:,.0f} s + ANALYZE {r['copy']['analyze_s']:,.0f} s" if "copy" in r else ""))
        row("bench process peak RSS so far, MiB", lambda r: f"{r['max_rss_mb']:,.0f}")
        out += _table(["", *cols, "target"], rows)
    out += [
        "Append rounds alternate between the sizes (smallest to largest, then back), so each round gives "
        "a paired ratio to the smallest ledger, measured in the same minutes; the band is the lowest and "
        "highest of those ratios. Append cost is judged \"no higher within noise\" when the median paired "
        "ratio is at most 1.10 and at least one round found the larger ledger no slower than the smallest "
        "(the lower end of the band at most 1.00): a cost that is really higher shows in every round.",
        "",
    ]
    return out


def _ratio_cell(a: dict[str, Any]) -> str:
    band = a.get("ratio_band")
    if band is None:  # results of a run before the rounds alternated
        return f"{a['ratio_to_smallest']:.2f}"
    return f"{a['ratio_median']:.2f} ({band[0]:.2f}–{band[1]:.2f})"


def _within_noise(r: dict[str, Any], kind: str) -> bool:
    a = r["append"][kind]
    return bool(a["ratio_median"] <= 1.10 and a["ratio_band"][0] <= 1.0)


def _audit(results: dict[str, Any]) -> list[str]:
    a = results.get("audit")
    if not a:
        return []
    t = results["targets"]
    ratio = a.get("ratio_to_all_core_verify")
    return [
        "### Offline audit throughput and memory (`filiera audit`)",
        "",
        *_table(["", "figure", "target"], [
            ["export", f"{a['lots']:,} lots, {a['entries']:,} entries, {a['signatures']:,} signatures, {a['bundle_bytes'] / 2**20:,.0f} MiB", ""],
            ["time, workers", f"{a['seconds']:,.1f} s, {a['workers']} processes", ""],
            ["entries/s (ratio to all-core verify)", f"{a['entries_per_s']:,.0f} ({_n(ratio, '.2f')}){_ok(ratio >= t['audit_ratio_to_all_core_verify']) if ratio else ''}", f"≥ {t['audit_ratio_to_all_core_verify']:.2f}"],
            ["signatures/s (ratio)", f"{a['signatures_per_s']:,.0f} ({_n(a.get('signature_ratio_to_all_core_verify'), '.2f')})", ""],
            ["peak memory, PSS of the process tree", f"{a['peak_pss_mb']:,.0f} MB{_ok(a['peak_pss_mb'] < t['audit_peak_mb'])}", f"< {t['audit_peak_mb']:.0f} MB"],
            ["peak RSS summed / main process", f"{a['peak_rss_sum_mb']:,.0f} / {a['peak_main_rss_mb']:,.0f} MB", ""],
        ]),
    ]


def _provenance_demo(results: dict[str, Any]) -> list[str]:
    prov = results.get("provenance") or {}
    if not prov:
        return []
    t = results["targets"]
    rows = [[LABELS.get(b, b), f"{r['tree_size']:,}", f"{r['entries']}", "{p50_ms:.1f} / {p95_ms:.1f} / {p99_ms:.1f}".format(**r) + _ok(r["p95_ms"] < t["provenance_p95_ms"])] for b, r in prov.items()]
    return ["### Provenance on a realistic demo ledger", "", *_table(["backend", "tree size", "entries", "p50 / p95 / p99 ms"], rows)]


def _load(results: dict[str, Any]) -> list[str]:
    from .load import saturation

    load = results.get("load") or {}
    if not load:
        return []
    v2 = _get(results, "baseline", "verify_2", "per_s")
    rows = []
    for backend, by_workers in load.items():
        for workers, r in by_workers.items():
            for kind, label in (("get", "public GETs"), ("post", "signed POSTs")):
                steps = r.get(kind) or []
                if not steps:
                    continue
                best = max(steps, key=lambda s: s["per_s"])
                sat = saturation(steps)
                cpu = best["cpu"]
                split = f"app {cpu['server_s']:.1f} s, db {cpu.get('postgres_s', 0):.1f} s, clients {cpu['clients_s']:.1f} s"
                ratio = f" ({best['per_s'] * 2 / v2:.2f} of 2-core verify, in signatures)" if kind == "post" and v2 else ""
                rows.append([
                    LABELS.get(backend, backend), workers, label,
                    " / ".join(f"{s['per_s']:,.0f}" for s in steps),
                    f"{best['per_s']:,.0f}{ratio}",
                    f"{best['p50_ms']} / {best['p99_ms']}",
                    "still growing" if sat is None else f"{sat} clients",
                    split, str(sum(s["errors"] for s in steps)),
                ])
    clients = ", ".join(str(s["clients"]) for s in next(iter(next(iter(load.values())).values()))["get"])
    return [
        "### Load: public GETs and signed POSTs (TESTPLAN T14)",
        "",
        f"Each step runs its client processes for `--load-seconds`; GET steps use {clients} clients. "
        "The GET mix is `/p/{lot}`, public provenance, `/v1/checkpoint` and inclusion proofs; POSTs "
        "are `key.add` entries with two signatures. Saturation: the smallest client count that reaches "
        "90% of the ramp's best throughput. CPU is that of the best step. Each POST carries two "
        "signatures, so the ratio to the 2-core verify rate is in signatures.",
        "",
        *_table(["backend", "workers", "load", "req/s per step", "best", "p50 / p99 ms (best)", "saturation", "CPU (best step)", "errors"], rows),
    ]


def carry_over(results: dict[str, Any], previous: dict[str, Any]) -> None:
    """Copy into ``results`` the sections ``previous`` has and ``results`` did not run, so that
    a partial run keeps the rest of the table; ``results["carried"]`` says from which run."""
    ran = set(results["config"]["only"].split(","))
    carried = results.setdefault("carried", {})
    for section, where in _SECTIONS.items():
        if section in ran:
            continue
        when = previous.get("carried", {}).get(section, previous.get("started"))
        if where[0] == "backends":
            for backend, res in (previous.get("backends") or {}).items():
                if where[1] in res and where[1] not in results["backends"].get(backend, {}):
                    results["backends"].setdefault(backend, {})[where[1]] = res[where[1]]
                    carried[section] = when
        elif where[0] in previous and where[0] not in results:
            results[where[0]] = previous[where[0]]
            carried[section] = when
    if "carried" in results and not results["carried"]:
        del results["carried"]


def render_markdown(results: dict[str, Any]) -> str:
    """The generated part of results.md (without its markers)."""
    c = results["config"]
    lines = [
        f"## Benchmark run of {results['started']}",
        "",
        f"Generated by `python -m bench --only {c['only']} --backends {c['backends']} --sizes {c['sizes']}` "
        f"({results.get('seconds', 0):,.0f} s). Do not edit between the markers: the next run rewrites it.",
        "",
        *_machine(results),
        *_baseline(results),
        *_ingest(results),
        *_scale(results),
        *_audit(results),
        *_provenance_demo(results),
        *_load(results),
    ]
    ran = set(c["only"].split(","))
    carried = results.get("carried") or {}
    if carried:
        by_run: dict[str, list[str]] = {}
        for section, when in carried.items():
            by_run.setdefault(str(when), []).append(section)
        lines += [
            "Carried over from earlier runs (not measured in this one; their ratios are to that run's "
            "baseline, not to the one above): "
            + "; ".join(f"{', '.join(v)} from the run of {k}" for k, v in sorted(by_run.items())) + ".",
            "",
        ]
    missing = [s for s in ("baseline", "single", "batch", "proofs", "demo", "audit", "provenance", "load") if s not in ran and s not in carried]
    if missing:
        lines += [f"Sections not in this table: {', '.join(missing)} (not run; see the README for their options).", ""]
    for e in results["errors"]:
        lines.append(f"- **error:** {e}")
    return "\n".join(lines).rstrip() + "\n"


def _reliability_row(path: Path) -> str | None:
    """The T1 row from ``make reliability``'s JSON (``tests/reliability``), if it exists."""
    if not path.exists():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    runs = doc.get("results") if isinstance(doc.get("results"), list) else [doc]
    keys = ("kills", "lost", "dup", "gaps", "forks", "phantom", "bad_proofs", "verify_ok", "worst_recovery_s")
    figures = []
    for x in runs:
        if not isinstance(x, dict):
            continue
        fig = ", ".join(f"{k} {x[k]}" for k in keys if k in x) or str(x.get("error", "no figures"))
        verdict = "PASS" if x.get("ok") else "FAIL"
        figures.append(f"{LABELS.get(x.get('backend', ''), x.get('backend', '?'))}: {fig} ({verdict})")
    controls = []
    for c in doc.get("controls") or []:
        if not isinstance(c, dict):
            continue
        fig = ", ".join(f"{k} {c[k]}" for k in ("kills", "lost", "dup", "gaps", "forks", "errors_5xx", "verify_ok") if k in c)
        verdict = ("passes" if c.get("positive") else "red") if c.get("control_ok") else "FAIL"
        controls.append(f"{c.get('control', '?')}: {fig or c.get('error', 'no figures')} ({verdict})")
    when = doc.get("recorded_at", "?")
    found = "; ".join(figures) or "no results"
    if controls:
        seeds = sorted({str(c.get("seed")) for c in doc["controls"] if isinstance(c, dict)})
        found += f"; negative controls (faulty servers, must turn red; seed {', '.join(seeds)}): " + "; ".join(controls)
    return (f"| T1 | crash hammer (kill -9) | `make reliability` (`tests/reliability`) | "
            f"{found}; seed {doc.get('seed', '?')} | `bench/out/reliability.json` of {when} |")


def _t9_row(out: Path) -> str | None:
    """The T9 row from the JSON ``tests/integration/test_load.py`` writes, if any."""
    found = sorted(out.glob("t9_*.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    latest: dict[str, dict[str, Any]] = {}
    for f in found:  # the newest file of each backend
        r = json.loads(f.read_text(encoding="utf-8"))
        latest[r.get("backend", f.stem)] = r
    figures, dates = [], []
    for backend, r in latest.items():
        o = r.get("overall", {})
        figures.append(
            f"{LABELS.get(backend, backend)}: {r.get('client_threads')} threads x {r.get('appends_per_thread')} x "
            f"{r.get('repetitions')} reps over {r.get('workers')} workers, {o.get('appends', '?')} appends, "
            f"{_n(o.get('throughput_per_s'), ',.0f')}/s, p50 {_n(o.get('latency_p50_ms'), '.0f')} / p99 {_n(o.get('latency_p99_ms'), '.0f')} ms, "
            f"5xx {r.get('server_5xx')}, chain verified ({_get(r, 'chain', 'entries')} entries)"
        )
        dates.append(str(r.get("recorded_at", "?")))
    return (f"| T9 | concurrent appends without kills | `tests/integration/test_load.py` (`make test`) | "
            f"{'; '.join(figures)} | `bench/out/t9_*.json` of {', '.join(dates)} |")


def write_results_md(results: dict[str, Any], path: Path, *, reliability: Path | None = None) -> None:
    """Replace the generated part of ``path`` (created with its markers if missing)."""
    body = render_markdown(results)
    text = path.read_text(encoding="utf-8") if path.exists() else f"# Filiera benchmark results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    text = f"{head}{BEGIN}\n{body}{END}{tail}"
    rows = {T1_ROW: _reliability_row(reliability) if reliability is not None else None}
    if reliability is not None:
        rows["| T9 |"] = _t9_row(reliability.parent)
    path.write_text(_with_rows(text, rows), encoding="utf-8")


def _with_rows(text: str, rows: dict[str, str | None]) -> str:
    """``text`` with each line that starts with a key of ``rows`` replaced by its row (None: kept)."""
    for prefix, row in rows.items():
        if row is not None:
            text = "\n".join(row if line.startswith(prefix) else line for line in text.split("\n"))
    return text


# The subsection of the generated part each section's figures fill, by its renderer.
_RENDERERS = {"proofs": "_scale", "audit": "_audit", "provenance": "_provenance_demo", "load": "_load"}


def splice_sections(results: dict[str, Any], path: Path, sections: list[str]) -> list[str]:
    """Replace, in the generated part of ``path``, only the subsections of ``sections`` (e.g.
    ``proofs``: the 10k/100k/1M tables) with those of ``results``, each marked with the run it
    comes from; the rest stays as the earlier run wrote it. For a partial run when that earlier
    run's results.json is gone (carry_over needs it). Returns the headings replaced."""
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    body, tail = rest.split(END, 1)
    lines = body.split("\n")
    done = []
    for section in sections:
        if section not in _RENDERERS:
            raise SystemExit(f"--splice: no subsection for {section!r}; one of {sorted(_RENDERERS)}")
        new = globals()[_RENDERERS[section]](results)
        if not new:
            raise SystemExit(f"--splice: the run has no {section!r} figures")
        heading = new[0]
        if heading not in lines:
            raise SystemExit(f"--splice: {path} has no {heading!r} to replace")
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("### ")), len(lines))
        while end > start and not lines[end - 1].strip():
            end -= 1
        note = [f"Re-measured by `python -m bench --only {results['config']['only']}` of {results['started']} "
                "(spliced in: the rest of this part is from the run named at its top).", ""]
        block = [new[0], "", *note, *new[2:]]
        while block and not block[-1].strip():
            block.pop()
        lines[start:end] = block
        done.append(heading)
    path.write_text(f"{head}{BEGIN}" + "\n".join(lines) + f"{END}{tail}", encoding="utf-8")
    return done


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.results_md [results.json [older.json ...]]``: rewrite results.md from a
    saved run, with the sections it did not run taken from the older ones (newest first).
    ``python -m bench.results_md --splice proofs[,audit...] results.json``: replace only those
    subsections (see :func:`splice_sections`)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    here = Path(__file__).resolve().parent
    if args[:1] == ["--splice"]:
        if len(args) != 3:
            raise SystemExit("usage: python -m bench.results_md --splice SECTION[,SECTION] results.json")
        results = json.loads(Path(args[2]).read_text(encoding="utf-8"))
        done = splice_sections(results, here / "results.md", args[1].split(","))
        text = (here / "results.md").read_text(encoding="utf-8")
        rows = {T1_ROW: _reliability_row(here / "out" / "reliability.json")}
        (here / "results.md").write_text(_with_rows(text, rows), encoding="utf-8")
        print(f"{here / 'results.md'}: replaced {'; '.join(done)} from {args[2]}")
        return 0
    files = [Path(a) for a in args] or [here / "out" / "results.json"]
    results = json.loads(files[0].read_text(encoding="utf-8"))
    for older in files[1:]:
        carry_over(results, json.loads(older.read_text(encoding="utf-8")))
    write_results_md(results, here / "results.md", reliability=here / "out" / "reliability.json")
    print(f"{here / 'results.md'} rewritten from {', '.join(map(str, files))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
