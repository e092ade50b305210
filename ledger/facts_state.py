"""What the facts projection remembers between blocks (docs/analytics.md).

A fact is derived when an entry completes it (a receipt completes a shipment, a payment its
days-to-pay), but some of what it reports was said by earlier entries: when a lot arrived
where it now leaves, which origins and certifications went into it, how much a contract has
delivered so far. :class:`FactsState` keeps that, per lot (:class:`LotTrace`) and per contract
(:class:`ContractProgress`). Like :class:`~ledger.state.LedgerState` it loads records from a
*source* on first use (the database, inside the sealing transaction) or starts empty and is
replayed from the log (``filiera verify``, ``filiera facts rebuild``); changed records are
flushed with the block. Derived data only: it is rebuilt from the log and compared.

Pure: no I/O here, the source does it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["LotTrace", "ContractProgress", "FactsSource", "FactsState"]


@dataclass(frozen=True, slots=True)
class LotTrace:
    """A lot's custody and provenance, as the facts need them.

    ``arrived_at``: when the lot reached its current custodian (receipt time, co-signed
    dispatch time, production date of an origin lot, earliest arrival of a transform's
    inputs); ``arrival``/``arrival_index``: the entry that says so. ``hops``: accepted
    handoffs on the longest path from an origin to this lot. ``origins``: (region, share of
    the lot's material) pairs, sorted by region. ``certified``: share of the material covered
    by an attestation (of the lot, or of the entry that made it), as known when it was made.
    """

    lot: str
    created_by: str
    custodian: str
    arrived_at: str
    arrival: str
    arrival_index: int
    hops: int
    origins: tuple[tuple[str, float], ...]
    certified: float

    @property
    def ident(self) -> str:
        return self.lot


@dataclass(frozen=True, slots=True)
class ContractProgress:
    """What a contract has delivered so far: accepted quantity in the contract's unit, the
    count of accepted deliveries, and the last one (its receipt, time and main origin region)."""

    contract: str
    delivered: str  # decimal string
    deliveries: int
    received_at: str | None = None
    receipt: str | None = None
    receipt_index: int | None = None
    region: str | None = None

    @property
    def ident(self) -> str:
        return self.contract


class FactsSource(Protocol):
    """Where traces and progress records not yet in memory come from."""

    def load_traces(self, lots: Sequence[str]) -> dict[str, LotTrace]: ...

    def load_traces_created_by(self, entries: Sequence[str]) -> dict[str, LotTrace]:
        """The traces of every lot that one of ``entries`` (origins, transforms) created."""
        ...

    def load_progress(self, contracts: Sequence[str]) -> dict[str, ContractProgress]: ...


@dataclass
class FactsState:
    """Traces and contract progress, loaded on first use; changes are tracked for flushing."""

    source: FactsSource | None = None
    _traces: dict[str, LotTrace | None] = field(default_factory=dict)
    _progress: dict[str, ContractProgress | None] = field(default_factory=dict)
    # Lots in memory by the entry that created them, and the creators already asked of the
    # source: an attestation of an entry certifies the lots it made.
    _by_creator: dict[str, set[str]] = field(default_factory=dict)
    _creators_loaded: set[str] = field(default_factory=set)
    _dirty_traces: set[str] = field(default_factory=set)
    _dirty_progress: set[str] = field(default_factory=set)
    # Keys the source was asked for and does not hold: flushing them is an insert.
    _absent_traces: set[str] = field(default_factory=set)
    _absent_progress: set[str] = field(default_factory=set)

    # --- reads ------------------------------------------------------------------------

    def prefetch(self, *, lots: Iterable[str] = (), contracts: Iterable[str] = (), creators: Iterable[str] = ()) -> None:
        """Load in one query per kind what the block will ask for (only a speed-up)."""
        todo = sorted({k for k in lots if k not in self._traces})
        if todo:
            found = self.source.load_traces(todo) if self.source else {}
            for k in todo:
                self._remember_trace(k, found.get(k))
        todo = sorted({k for k in contracts if k not in self._progress})
        if todo:
            got = self.source.load_progress(todo) if self.source else {}
            for k in todo:
                self._progress[k] = got.get(k)
                if k not in got:
                    self._absent_progress.add(k)
        todo = sorted({k for k in creators if k not in self._creators_loaded})
        if todo:
            self._creators_loaded.update(todo)
            if self.source is not None:
                for lot, trace in self.source.load_traces_created_by(todo).items():
                    if lot not in self._traces:
                        self._remember_trace(lot, trace)

    def _remember_trace(self, lot: str, trace: LotTrace | None) -> None:
        self._traces[lot] = trace
        if trace is None:
            self._absent_traces.add(lot)
        else:
            self._by_creator.setdefault(trace.created_by, set()).add(lot)

    def trace(self, lot: str) -> LotTrace | None:
        if lot not in self._traces:
            self.prefetch(lots=[lot])
        return self._traces[lot]

    def progress(self, contract: str) -> ContractProgress | None:
        if contract not in self._progress:
            self.prefetch(contracts=[contract])
        return self._progress[contract]

    def created_by(self, entry_id: str) -> list[LotTrace]:
        """The traces of the lots ``entry_id`` created, in lot order."""
        self.prefetch(creators=[entry_id])
        lots = sorted(self._by_creator.get(entry_id, ()))
        return [t for lot in lots if (t := self._traces.get(lot)) is not None]

    # --- writes -----------------------------------------------------------------------

    def put_trace(self, trace: LotTrace) -> None:
        if trace.lot not in self._traces:
            # Made here (an origin or a transform output): new to the source too.
            self._absent_traces.add(trace.lot)
        self._traces[trace.lot] = trace
        self._by_creator.setdefault(trace.created_by, set()).add(trace.lot)
        self._dirty_traces.add(trace.lot)

    def put_progress(self, progress: ContractProgress) -> None:
        if progress.contract not in self._progress:
            self._absent_progress.add(progress.contract)
        self._progress[progress.contract] = progress
        self._dirty_progress.add(progress.contract)

    # --- what changed, for flushing -----------------------------------------------------

    def changed_traces(self) -> list[LotTrace]:
        return [t for k in sorted(self._dirty_traces) if (t := self._traces.get(k)) is not None]

    def changed_progress(self) -> list[ContractProgress]:
        return [p for k in sorted(self._dirty_progress) if (p := self._progress.get(k)) is not None]

    def new_traces(self) -> frozenset[str]:
        """Changed traces the source is known not to hold (inserts, not updates)."""
        return frozenset(self._dirty_traces & self._absent_traces)

    def new_progress(self) -> frozenset[str]:
        return frozenset(self._dirty_progress & self._absent_progress)

    def clear_changes(self) -> None:
        """After a flush: what is in memory is now what the source holds."""
        self._absent_traces -= self._dirty_traces
        self._absent_progress -= self._dirty_progress
        self._dirty_traces.clear()
        self._dirty_progress.clear()

    def all_traces(self) -> Mapping[str, LotTrace]:
        """Every trace in memory (a replay from the log holds them all)."""
        return {k: v for k, v in self._traces.items() if v is not None}

    def all_progress(self) -> Mapping[str, ContractProgress]:
        return {k: v for k, v in self._progress.items() if v is not None}
