"""The offline audit: check an exported bundle (:mod:`ledger.bundle`) with no server and no
database, trusting only the ledger's verifier key the auditor brings.

Everything :func:`ledger.verify.verify_chain` checks is checked here, by the same code: every
entry's canonical form, id and leaf hash, every signature strictly (libsodium), the signer's
key valid at the entry's position and its authority replayed from the governance entries
(roles, revocations, quorum), every supply-chain rule by replaying the state, every ``prev``
link, block hash, block signature, Merkle root and checkpoint. Parsing and the Ed25519 work,
most of the cost, run in worker processes ahead of the replay (:mod:`ledger.readahead`); the
replay runs in order in this process, so the first failure reported is the first in the log.

Memory stays bounded: the bundle is read line by line, a few worker tasks ahead, and the
replayed state spills to a scratch file past a budget (:mod:`ledger.spill`).

Incremental audits: with a trusted checkpoint (saved from an earlier audit) the bundle's
consistency record is checked first, so a forked or rewritten history fails before any entry
is read; entries the trusted checkpoint already pins skip only the Ed25519 work. With a state
snapshot from that earlier audit, a partial bundle holding only the new blocks is enough.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from .errors import ChainBroken, InvalidSnapshot, LedgerError
from .encoding import b64
from .merkle import verify_consistency
from .notes import Checkpoint, NoteVerifier, verify_checkpoint
from .readahead import BundleReader
from .snapshot import dump_snapshot, load_snapshot
from .spill import DEFAULT_BUDGET, SpillSource
from .verify import ChainCursor, VerifyReport, verify_chain

__all__ = ["AuditFailure", "AuditReport", "audit_bundle", "AUDIT_REASONS"]

# Reasons an audit adds to those of ledger.verify.REASONS: the bundle itself is unusable.
AUDIT_REASONS = frozenset({"bundle", "incomplete_bundle", "consistency"})

@dataclass(frozen=True, slots=True)
class AuditFailure:
    reason: str
    detail: str
    code: str  # chain_broken, or the code of a damaged bundle
    cause: str | None = None  # the rule's or signature's own code, as `filiera verify --json`
    height: int | None = None
    index: int | None = None
    entry: str | None = None
    line: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.facts.items() if k not in ("reason", "height", "index", "entry", "line", "cause")}
        out.update(
            reason=self.reason, code=self.code, cause=self.cause, detail=self.detail,
            height=self.height, index=self.index, entry=self.entry, line=self.line,
        )
        return out


@dataclass(frozen=True, slots=True)
class AuditReport:
    ok: bool
    origin: str
    verifier_key: str
    bundle_from: int | None  # first entry index the bundle holds
    blocks: int  # blocks checked in this run
    entries: int  # entries checked in this run
    signatures: int  # Ed25519 signatures checked in this run
    tree_size: int | None
    root: str | None
    checkpoint: str | None  # the bundle's last checkpoint, verified (the next trusted one)
    trusted_size: int | None
    consistency_checked: bool
    state_in: str | None  # SHA-256 of the snapshot resumed from
    state_out: str | None  # SHA-256 of the snapshot saved
    workers: int
    seconds: float
    failure: AuditFailure | None = None

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "origin": self.origin,
            "verifier_key": self.verifier_key,
            "bundle_from": self.bundle_from,
            "blocks": self.blocks,
            "entries": self.entries,
            "signatures": self.signatures,
            "tree_size": self.tree_size,
            "root": self.root,
            "checkpoint": self.checkpoint,
            "trusted_size": self.trusted_size,
            "consistency_checked": self.consistency_checked,
            "state_in_sha256": self.state_in,
            "state_out_sha256": self.state_out,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "entries_per_s": round(self.entries_per_s, 1),
        }
        out["failure"] = self.failure.to_json() if self.failure else None
        return out

    def to_text(self) -> str:
        lines = [f"audit of {self.origin or 'an unknown ledger'} (verifier key {self.verifier_key})"]
        if self.state_in:
            lines.append(f"  resumed from state snapshot sha256 {self.state_in}")
        if self.trusted_size is not None:
            lines.append(
                f"  trusted checkpoint at tree size {self.trusted_size}"
                + ("; consistency proof to the new checkpoint verified" if self.consistency_checked else "")
            )
        lines.append(
            f"  checked {self.blocks:,} blocks, {self.entries:,} entries, {self.signatures:,} signatures"
            f" in {self.seconds:.1f} s ({self.entries_per_s:,.0f} entries/s, {self.workers} worker processes)"
        )
        if self.failure is None:
            lines.append(f"  tree size {self.tree_size:,}, root {self.root}")
            if self.state_out:
                lines.append(f"  state snapshot saved, sha256 {self.state_out}")
            lines.append("RESULT: OK: every signature, authorisation, rule, hash, link, root and checkpoint holds")
        else:
            f = self.failure
            where = ", ".join(
                part for part in (
                    f"block {f.height}" if f.height is not None else "",
                    f"entry {f.index}" if f.index is not None else "",
                    f"id {f.entry}" if f.entry else "",
                    f"bundle line {f.line}" if f.line is not None else "",
                ) if part
            )
            lines.append(f"  first failure: {f.reason}" + (f" at {where}" if where else ""))
            lines.append(f"  {f.detail}")
            lines.append("RESULT: FAILED")
        return "\n".join(lines) + "\n"


def _trusted_checkpoint(note: str, verifier: NoteVerifier) -> Checkpoint:
    try:
        return verify_checkpoint(note, verifier=verifier, origin=verifier.name)
    except LedgerError as exc:
        raise InvalidSnapshot(
            f"the trusted checkpoint is not a checkpoint of {verifier.name} signed by the "
            f"verifier key ({exc.code})"
        ) from exc


def audit_bundle(
    lines: Iterable[bytes],
    *,
    verifier: NoteVerifier,
    trusted_checkpoint: str | None = None,
    state: Iterable[bytes] | None = None,
    state_sha256: str | None = None,
    save_state: IO[bytes] | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    recheck_signatures: bool = False,
    memory_budget: int = DEFAULT_BUDGET,
    scratch_dir: str | None = None,
) -> AuditReport:
    """Audit a bundle read from ``lines``. Never trusts the bundle; trusts ``verifier``.

    ``trusted_checkpoint``: a signed checkpoint from an earlier audit; the bundle must extend
    it. ``state``: the lines of a snapshot saved by that audit (required for a bundle that does
    not start at entry 0), refused unless its SHA-256 is ``state_sha256`` when that is given.
    ``save_state``: where to write the new snapshot after a clean audit. ``workers``: processes
    that parse entries and check signatures ahead of the replay (default: every core; 0: none).
    ``recheck_signatures``: check signatures below the trusted size too. ``memory_budget``:
    records held in memory before the replayed state spills to a scratch file in
    ``scratch_dir`` (ledger.spill).
    Returns a report whose ``failure`` names the first failure; raises only for unusable
    inputs of the auditor's own (InvalidSnapshot, MalformedNote).
    """
    started = time.perf_counter()
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    trusted = _trusted_checkpoint(trusted_checkpoint, verifier) if trusted_checkpoint else None
    spill = SpillSource(scratch_dir, budget=memory_budget)
    try:
        return _audit(
            lines, verifier=verifier, trusted=trusted, trusted_checkpoint=trusted_checkpoint,
            state=state, state_sha256=state_sha256, save_state=save_state, workers=n_workers,
            progress=progress, recheck_signatures=recheck_signatures, spill=spill, started=started,
        )
    finally:
        spill.close()


def _audit(
    lines: Iterable[bytes],
    *,
    verifier: NoteVerifier,
    trusted: Checkpoint | None,
    trusted_checkpoint: str | None,
    state: Iterable[bytes] | None,
    state_sha256: str | None,
    save_state: IO[bytes] | None,
    workers: int,
    progress: Callable[[int], None] | None,
    recheck_signatures: bool,
    spill: SpillSource,
    started: float,
) -> AuditReport:
    n_workers = workers
    state_in = None
    if state is not None:
        cursor, state_in = load_snapshot(state, spill)
        if state_sha256 is not None and state_in != state_sha256.lower():
            raise InvalidSnapshot(f"the state snapshot's SHA-256 is {state_in}, not {state_sha256}")
        if cursor.origin != verifier.name or cursor.key != verifier.public_key:
            raise InvalidSnapshot("the state snapshot belongs to another ledger or ledger key")
        if trusted is not None and (
            cursor.frontier.size != trusted.tree_size or cursor.frontier.root() != trusted.root
        ):
            raise InvalidSnapshot(
                f"the state snapshot ends at tree size {cursor.frontier.size}, not at the trusted "
                f"checkpoint ({trusted.tree_size}) with its root"
            )
    else:
        cursor = ChainCursor.start()
        cursor.state.source = spill
    state_keys = cursor.state.records("key")

    def keys() -> dict[str, bytes]:
        return {kid: rec.public_key for kid, rec in state_keys.items() if rec is not None}

    bundle: BundleReader | None = None
    report: VerifyReport | None = None
    consistency_checked = False

    def result(failure: AuditFailure | None, state_out: str | None = None) -> AuditReport:
        return AuditReport(
            ok=failure is None,
            origin=verifier.name,
            verifier_key=verifier.vkey,
            bundle_from=bundle.header.from_index if bundle else None,
            blocks=bundle.blocks if bundle else 0,
            entries=bundle.entries if bundle else 0,
            signatures=report.signatures_checked if report else 0,
            tree_size=report.tree_size if report else None,
            root=report.root if report else None,
            checkpoint=bundle.checkpoint.checkpoint if bundle and bundle.checkpoint and failure is None else None,
            trusted_size=trusted.tree_size if trusted else None,
            consistency_checked=consistency_checked,
            state_in=state_in,
            state_out=state_out,
            workers=n_workers,
            seconds=time.perf_counter() - started,
            failure=failure,
        )

    def fail(reason: str, detail: str, code: str = "chain_broken", **facts: Any) -> AuditReport:
        return result(AuditFailure(reason=reason, detail=detail, code=code, **facts))

    try:
        try:
            bundle = BundleReader(lines, workers=n_workers, keys=keys)
        except LedgerError as exc:
            return fail("bundle", exc.detail, code=exc.code, line=exc.facts.get("line"))
        header = bundle.header
        # The header repeats what the exporter read from the stored genesis entry, so an
        # edited genesis shows here first. The mismatch is reported if the chain holds or
        # fails only because genesis names another key (a bundle of another ledger); any other
        # failure of the chain, checked against the verifier key alone, names the block and
        # entry where the log goes wrong (an edited genesis: entry 0).
        mismatch: tuple[str, str] | None = None
        if header.origin != verifier.name:
            mismatch = ("origin", f"the bundle is of ledger {header.origin!r}, the verifier key is for {verifier.name!r}")
        elif header.public_key != b64(verifier.public_key):
            mismatch = ("ledger_key", "the bundle names another ledger key than the verifier key")
        start_index = cursor.frontier.size
        if header.from_index != start_index:
            if state is None:
                raise InvalidSnapshot(
                    f"the bundle starts at entry {header.from_index}: a partial bundle needs the "
                    "state snapshot (--state) of the audit that ended there"
                )
            raise InvalidSnapshot(
                f"the bundle starts at entry {header.from_index} but the state snapshot ends at {start_index}"
            )
        if trusted is not None and bundle.consistency is not None and mismatch is None:
            c = bundle.consistency
            try:
                new = verify_checkpoint(c.checkpoint, verifier=verifier, origin=verifier.name)
                if c.from_size != trusted.tree_size or c.to_size != new.tree_size:
                    raise ChainBroken("the consistency record is not from the trusted size to its checkpoint", reason="consistency")
                verify_consistency(
                    old_size=c.from_size, new_size=c.to_size,
                    proof=[bytes.fromhex(h) for h in c.hashes],
                    old_root=trusted.root, new_root=new.root,
                )
            except (LedgerError, ValueError) as exc:
                code = exc.code if isinstance(exc, LedgerError) else "invalid_proof"
                return fail(
                    "fork" if code == "invalid_proof" else "consistency",
                    f"the bundle's history is not an extension of the trusted checkpoint (size "
                    f"{trusted.tree_size}): its consistency proof fails ({code}); the ledger forked or was rewritten",
                    code=code, line=c.line,
                )
            consistency_checked = True
        try:
            report = verify_chain(
                bundle.blocks_iter(),
                ledger_key=verifier.public_key,
                trusted_checkpoint=trusted_checkpoint if state is None else None,
                resume=cursor,
                trust_below=0 if recheck_signatures or trusted is None else trusted.tree_size,
                progress=progress,
                after_block=lambda cur: spill.maybe_absorb(cur.state),
            )
        except ChainBroken as exc:
            f = exc.facts
            if mismatch is not None and f.get("reason") == "ledger_key":
                # A sound genesis of another ledger key: the verifier key is not this bundle's.
                return fail(*mismatch, line=1)
            return fail(
                str(f.get("reason", "chain")), exc.detail, code=exc.code, cause=f.get("cause"),
                height=f.get("height"), index=f.get("index"), entry=f.get("entry"), line=f.get("line"),
                facts=dict(f),
            )
        except LedgerError as exc:
            return fail("bundle", exc.detail, code=exc.code, line=exc.facts.get("line"))
        if mismatch is not None:
            return fail(*mismatch, line=1)
        if trusted is not None and report.tree_size < trusted.tree_size:
            return fail("truncated", f"the bundle ends at tree size {report.tree_size}, before the trusted checkpoint's {trusted.tree_size}")
        if bundle.checkpoint is None or bundle.end is None:
            return fail(
                "incomplete_bundle",
                "the bundle has no final checkpoint and end record: it was cut short in transit; "
                "continue the download with `filiera export --resume`",
            )
        try:
            last = verify_checkpoint(bundle.checkpoint.checkpoint, verifier=verifier, origin=verifier.name)
        except LedgerError as exc:
            return fail("checkpoint", f"the bundle's final checkpoint does not verify ({exc.code})", code=exc.code, line=bundle.checkpoint.line)
        if last.tree_size != report.tree_size or last.root.hex() != report.root:
            return fail("checkpoint", "the bundle's final checkpoint is not the last block's", line=bundle.checkpoint.line)
        end = bundle.end
        if (end.blocks, end.entries, end.tree_size) != (bundle.blocks, bundle.entries, report.tree_size):
            return fail(
                "bundle",
                f"the end record counts {end.blocks} blocks and {end.entries} entries to size "
                f"{end.tree_size}; the bundle holds {bundle.blocks}, {bundle.entries}, {report.tree_size}",
                line=end.line,
            )
        state_out = None
        if save_state is not None and report.cursor is not None:
            state_out = dump_snapshot(report.cursor, spill, save_state)
        return result(None, state_out)
    finally:
        if bundle is not None:
            bundle.close()
