"""TESTPLAN T2 and issue #4: random single edits of the stored log, each caught by both
`filiera verify` and the offline audit (`filiera audit` of a bundle exported from the edited
database), which must name the block and entry where the log first goes wrong.

A ledger of about FILIERA_T2_ENTRIES entries (400; tamper_ledger.py) is built once per
backend. Each edit (tamper_entry_edits.py: payload, leaf bytes, signature, key reference,
signer, leaf hash, id, swapped keys, entries re-signed by another member, the entries table's
own columns; tamper_row_edits.py: every block column, rehashed headers, blocks and entries
deleted, moved, swapped, replayed, forged entries appended or inserted, Merkle nodes, a cut
tail, a key swapped in the derived tables) is made on a fresh copy with the append-only
triggers dropped; an edit that changes no row is drawn again, not counted. Checks run
in-process (``verify_chain`` over ``db_source``; ``bundle_lines`` then
``audit_bundle(workers=0)``), and a few through the `filiera` commands.

The audit reads blocks and entries but no Merkle nodes: a valid entry moved or inserted inside
a block shows there only as the block's root (unless a rule breaks first), which the summary
counts as ``audit_block_only``. Edits of what no bundle carries (Merkle nodes, rows no block
seals, the entries table's own columns, the derived tables) leave the bundle byte for byte
unchanged, and the audit of it must pass.

Truncation is caught only against a checkpoint saved before the cut (``--trusted-checkpoint``):
a log cut cleanly is, on its own, a valid shorter log. The summary says so.

Sizes (CI, then the full T2 plan):
  FILIERA_T2_ENTRIES   400   2000   entries in the ledger
  FILIERA_T2_EDITS     200   1000   random edits on SQLite
  FILIERA_T2_PG_EDITS   30   1000   random edits on PostgreSQL
  FILIERA_T2_CLEAN      20    100   untouched copies that must verify and audit clean
  FILIERA_T2_FLIPS      20   1000   random byte flips (test_tamper_file_flips.py)
FILIERA_T2_SEED fixes the seed (random otherwise); every failure message and the one-line JSON
summary each test prints carry it. Marked ``slow`` (deselected by `make test-fast`).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ledger.errors import LedgerError

from ..cli.conftest import ModuleDbs, on, run, run_entry_point
from ..conftest import BACKENDS, drop_pg_schema
from ..tampering import tampered
from .tamper_edits import EXPORT_REFUSED, Edit, Kind, Where, drop_unique
from .tamper_entry_edits import ENTRY_KINDS
from .tamper_row_edits import ROW_KINDS
from .tamper_ledger import ENTRIES, SEED, Base, build_base, dump, export, run_audit, run_verify, say

pytestmark = pytest.mark.slow

EDITS = {"sqlite": int(os.environ.get("FILIERA_T2_EDITS", "200")), "postgresql": int(os.environ.get("FILIERA_T2_PG_EDITS", "30"))}
CLEAN = int(os.environ.get("FILIERA_T2_CLEAN", "20"))


KINDS: dict[str, Kind] = {**ENTRY_KINDS, **ROW_KINDS}


def draw(base: Base, rng: random.Random) -> Edit:
    """One edit of a kind chosen uniformly; a kind that cannot apply where it drew draws again."""
    while True:
        edit = KINDS[rng.choice(sorted(KINDS))](base, rng)
        if edit is not None:
            return edit


@pytest.fixture(scope="module", params=BACKENDS)
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    """The ledger every edit copies, built once per backend (the build follows the seed too)."""
    dbs = ModuleDbs(request.param, tmp_path_factory.mktemp(f"t2-{request.param}"), [])
    try:
        yield build_base(dbs, dbs.root / "data", entries=ENTRIES, rng=random.Random(SEED))
    finally:
        for schema in dbs.schemas:
            drop_pg_schema(schema)


# --- one edit, both checks -------------------------------------------------------------------


@dataclass
class Outcome:
    edit: Edit
    verify: dict[str, Any] | None = None
    audit: dict[str, Any] | str | None = None
    problems: list[str] = field(default_factory=list)
    audit_exact: bool = False


def _apply(base: Base, edit: Edit) -> str | None:
    """A copy with ``edit`` made; None (and no copy) if the edit changed no row."""
    url = base.copy()
    with tampered(url) as conn:
        if edit.unique_off:
            drop_unique(conn)
        edit.sql(conn)
        changed = dump(conn, base.tables) != base.digest
    if not changed:
        base.discard(url)
        return None
    return url


def _audit_failure(bundle: bytes, base: Base, trusted: str | None) -> dict[str, Any] | None:
    report = run_audit(bundle, base.vkey, trusted=trusted)
    return None if report.failure is None else report.failure.to_json()


def check(base: Base, edit: Edit, url: str) -> Outcome:
    """Run both checks on an edited copy and compare with what ``edit`` says they must name."""
    out = Outcome(edit)
    trusted = base.checkpoint() if edit.trusted else None
    settings = base.settings(url)
    try:
        out.verify = run_verify(settings, trusted=trusted)
    except Exception as exc:  # noqa: BLE001 -- a crash is a finding, reported with the rest
        out.problems.append(f"verify crashed: {exc.__class__.__name__}: {exc}")
    else:
        if out.verify is None:
            out.problems.append(f"verify MISSED it (expected {edit.verify})")
        elif not edit.verify.matches(out.verify):
            out.problems.append(f"verify named {_where(out.verify)}, expected {edit.verify}")
    try:
        bundle = export(settings)
    except LedgerError as exc:
        out.audit = f"{EXPORT_REFUSED}: {exc.code}: {exc.detail}"
        if edit.audit is None or EXPORT_REFUSED not in edit.audit:
            out.problems.append(f"the export refused: {exc.code}: {exc.detail}")
        return out
    except Exception as exc:  # noqa: BLE001
        out.problems.append(f"the export crashed: {exc.__class__.__name__}: {exc}")
        return out
    answers = [w for w in edit.audit or () if isinstance(w, Where)]
    if edit.audit is not None and not answers:
        out.problems.append("the export did not refuse")
        return out
    try:
        out.audit = _audit_failure(bundle, base, trusted) if edit.audit is not None or bundle != base.bundle else None
    except Exception as exc:  # noqa: BLE001
        out.problems.append(f"audit crashed: {exc.__class__.__name__}: {exc}")
        return out
    if edit.audit is None:
        # The audit is a function of the bundle's bytes: an unchanged bundle audits as the
        # untouched ledger's did (clean), so it is not audited again.
        if bundle != base.bundle:
            out.problems.append("the bundle changed, but the edit was expected not to reach it")
        if out.audit is not None:
            out.problems.append(f"audit of the bundle failed: {_where(out.audit)}")
        return out
    if out.audit is None:
        out.problems.append(f"audit MISSED it (expected {answers[0]})")
    elif not any(w.matches(out.audit) for w in answers):
        out.problems.append(f"audit named {_where(out.audit)}, expected one of {[str(w) for w in answers]}")
    else:
        out.audit_exact = answers[0].matches(out.audit)
    return out


def _where(f: dict[str, Any]) -> str:
    return f"block {f.get('height')} index {f.get('index')} reason {f.get('reason')} entry={f.get('entry')} ({f.get('detail')})"


def _edits(base: Base, count: int) -> Iterator[tuple[int, Edit, str]]:
    """``count`` edits that change something, each on its own copy: (attempt, edit, url)."""
    attempt = made = 0
    while made < count:
        edit = draw(base, random.Random(f"{SEED}:{attempt}"))
        url = _apply(base, edit)
        if url is not None:
            made += 1
            yield attempt, edit, url
        attempt += 1


# --- the tests -------------------------------------------------------------------------------


def test_random_edits_are_caught_and_named(base: Base, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    outcomes: list[tuple[int, Outcome]] = []
    attempts = 0
    for attempt, edit, url in _edits(base, EDITS[base.backend]):
        attempts = attempt + 1
        try:
            outcomes.append((attempt, check(base, edit, url)))
        finally:
            base.discard(url)
    bad = [(a, o) for a, o in outcomes if o.problems]
    audited = [o for _, o in outcomes if o.edit.audit is not None]
    summary = {
        "test": "T2 random edits",
        "backend": base.backend,
        "entries": base.size,
        "blocks": len(base.blocks),
        "edits": len(outcomes),
        "skipped_no_change": attempts - len(outcomes),
        "kinds": dict(sorted(Counter(o.edit.kind for _, o in outcomes).items())),
        "verify_detected": sum(o.verify is not None for _, o in outcomes),
        "verify_pinpointed": sum(o.verify is not None and o.edit.verify.matches(o.verify) for _, o in outcomes),
        "audit_edits_in_bundle": len(audited),
        "audit_detected": sum(isinstance(o.audit, dict) for o in audited),
        "audit_pinpointed_entry": sum(o.audit_exact for o in audited),
        "audit_block_only": sum(isinstance(o.audit, dict) and not o.audit_exact and not o.problems for o in audited),
        "bundle_unchanged_audit_clean": sum(o.edit.audit is None and not o.problems for _, o in outcomes),
        "export_refused": sum(isinstance(o.audit, str) for _, o in outcomes),
        "truncation": "detected only against a checkpoint saved before the cut",
        "problems": len(bad),
        "seconds": round(time.perf_counter() - started, 1),
    }
    say(capsys, summary)
    lines = [f"seed {SEED} attempt {a} [{o.edit.kind}] {o.edit.what}: " + "; ".join(o.problems) for a, o in bad]
    assert not bad, f"{len(bad)} of {len(outcomes)} edits not caught or misnamed (FILIERA_T2_SEED={SEED}):\n" + "\n".join(lines)


def test_untouched_copies_hold(base: Base, capsys: pytest.CaptureFixture[str]) -> None:
    """No false alarm: a copy with only its triggers dropped verifies, with and without the
    head's checkpoint, and exports the same bundle, which audits clean."""
    started = time.perf_counter()
    count = CLEAN if base.backend == "sqlite" else max(2, CLEAN // 10)
    alarms: list[str] = []
    for n in range(count):
        url = base.copy()
        try:
            with tampered(url):
                pass
            for trusted in (None, base.checkpoint()) if n == 0 else (None,):
                failure = run_verify(base.settings(url), trusted=trusted)
                if failure is not None:
                    alarms.append(f"verify: {_where(failure)}")
            bundle = export(base.settings(url))
            if bundle != base.bundle:
                alarms.append("the bundle differs from the untouched ledger's")
            report = run_audit(bundle, base.vkey)
            if not report.ok or report.entries != base.size:
                alarms.append(f"audit: {report.to_json()['failure']}")
        finally:
            base.discard(url)
    say(capsys, {"test": "T2 untouched copies", "backend": base.backend, "copies": count, "false_alarms": len(alarms), "seconds": round(time.perf_counter() - started, 1)})
    assert not alarms, alarms


def test_truncation_is_caught_only_against_a_saved_checkpoint(base: Base, capsys: pytest.CaptureFixture[str]) -> None:
    """A perfect rollback (every table as it stood before block h) is a valid shorter log:
    verify and the audit accept it alone, and both name block h against the checkpoint a
    monitor saved from the head before the rollback."""
    h, url = base.prefix
    size = base.blocks[h].first_index
    saved = base.checkpoint()
    alone = run_verify(base.settings(url))
    bundle = export(base.settings(url))
    report = run_audit(bundle, base.vkey)
    assert alone is None and report.ok and report.tree_size == size
    verified = run_verify(base.settings(url), trusted=saved)
    audited = run_audit(bundle, base.vkey, trusted=saved).failure
    assert verified is not None and audited is not None
    expected = Where(h, None, frozenset({"truncated"}), None)
    assert expected.matches(verified), _where(verified)
    assert expected.matches(audited.to_json()), audited
    assert verified["tree_size"] == size and verified["checkpoint_size"] == base.size
    say(capsys, {"test": "T2 truncation", "backend": base.backend, "cut_at_block": h, "tree_size": size, "checkpoint_size": base.size, "alone": "verifies and audits clean", "against_saved_checkpoint": "truncated, named by verify and audit"})


def test_a_damaged_genesis_is_refused_by_the_exporter_not_crashed_on(base: Base) -> None:
    """Entries 0 and 1 swapped: verify names entry 0; the exporter, which reads the ledger's
    origin and key from the stored genesis, must refuse with a clean error (or write a bundle
    the audit faults at entry 0), never crash."""
    url = base.copy()
    try:
        with tampered(url) as conn:
            conn.execute(text("UPDATE entries SET idx = -1 WHERE idx = 0"))
            conn.execute(text("UPDATE entries SET idx = 0 WHERE idx = 1"))
            conn.execute(text("UPDATE entries SET idx = 1 WHERE idx = -1"))
        failure = run_verify(base.settings(url))
        assert failure is not None and (failure["height"], failure["index"], failure["reason"]) == (0, 0, "rule"), failure
        try:
            bundle = export(base.settings(url))
        except LedgerError:
            return
        audited = run_audit(bundle, base.vkey).failure
        assert audited is not None and (audited.height, audited.index) == (0, 0), audited
    finally:
        base.discard(url)


def test_an_edited_genesis_is_named_by_the_audit_at_entry_0(base: Base) -> None:
    """Genesis with the ledger key replaced, its id and leaf hash recomputed: the exported
    bundle's header then names the forged key, and the audit still names entry 0 (the chain,
    checked against the verifier key, fails there) rather than only the header."""
    from ledger import jcs
    from ledger.entries import parse_envelope
    from ledger.keys import SigningKey

    leaf = base.rows[0].leaf()
    leaf["payload"]["ledger_key"] = SigningKey.generate().public_key.b64
    env = parse_envelope(leaf, origin=None)
    url = base.copy()
    try:
        with tampered(url) as conn:
            conn.execute(
                text("UPDATE entries SET leaf_data = :d, id = :id, leaf_hash = :lh WHERE idx = 0"),
                {"d": jcs.canonicalize(leaf).decode(), "id": env.id, "lh": env.leaf_hash.hex()},
            )
        failure = run_verify(base.settings(url))
        assert failure is not None and (failure["height"], failure["index"], failure["entry"]) == (0, 0, env.id), failure
        audited = run_audit(export(base.settings(url)), base.vkey).failure
        assert audited is not None and (audited.height, audited.index, audited.entry) == (0, 0, env.id), audited
    finally:
        base.discard(url)


CLI_KINDS = ["signature-bit", "entries-swapped", "block-field", "truncated", "resigned"]


def _cli_edits(base: Base, kinds: list[str]) -> Iterator[tuple[Edit, str]]:
    for n, kind in enumerate(kinds):
        attempt = 0
        while True:
            edit = KINDS[kind](base, random.Random(f"{SEED}:cli:{n}:{attempt}"))
            url = _apply(base, edit) if edit is not None else None
            if edit is not None and url is not None:
                yield edit, url
                break
            attempt += 1


def test_the_commands_name_the_same_place(base: Base, tmp_path: Path) -> None:
    """`filiera verify --json` and `filiera audit BUNDLE --verifier-key VKEY --json` on a few
    edits: the installed entry point for the first two on SQLite (the audit with its worker
    processes), in-process for the rest."""
    vkey = tmp_path / "ledger.vkey"
    vkey.write_text(base.vkey + "\n", encoding="utf-8")
    checkpoint = tmp_path / "seen.txt"
    checkpoint.write_text(base.checkpoint(), encoding="utf-8")
    for n, (edit, url) in enumerate(_cli_edits(base, CLI_KINDS)):
        try:
            where = f"seed {SEED} [{edit.kind}] {edit.what}"
            trusted = ["--trusted-checkpoint", str(checkpoint)] if edit.trusted else []
            bundle = tmp_path / f"bundle{n}.ndjson"
            bundle.write_bytes(export(base.settings(url)))
            verify_args = [*on(base.data, url), "verify", "--json", *trusted]
            audit_args = ["audit", str(bundle), "--verifier-key", str(vkey), "--json", *trusted]
            if base.backend == "sqlite" and n < 2:
                v = run_entry_point(verify_args)
                a = run_entry_point(audit_args)
                results = [(v.returncode, v.stdout), (a.returncode, a.stdout)]
            else:
                v2, a2 = run(verify_args), run([*audit_args, "--workers", "0"])
                results = [(v2.exit_code, v2.stdout), (a2.exit_code, a2.stdout)]
            (v_code, v_out), (a_code, a_out) = results
            verified, audited = json.loads(v_out), json.loads(a_out)
            assert (v_code, verified["ok"], verified["code"]) == (1, False, "chain_broken"), where
            assert edit.verify.matches(verified), f"{where}: verify said {_where(verified)}"
            assert (a_code, audited["ok"]) == (1, False), where
            answers = [w for w in edit.audit or () if isinstance(w, Where)]
            assert any(w.matches(audited["failure"]) for w in answers), f"{where}: audit said {_where(audited['failure'])}"
        finally:
            base.discard(url)
