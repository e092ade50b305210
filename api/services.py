"""What a request needs from the ledger: settings, the store and the sealer of this process."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app, request

from ledger.config import Settings
from ledger.errors import InvalidPage
from ledger.keys import PublicKey
from ledger.sealing import Sealer
from ledger.storage.store import Store
from ledger.witness_policy import WitnessPolicy
from ledger.witnessing import Witnessing
from marshmallow import Schema, ValidationError

__all__ = ["Services", "services", "load_query"]


@dataclass
class Services:
    settings: Settings
    store: Store
    sealer: Sealer
    ledger_key: PublicKey | None
    witness_policy: WitnessPolicy | None = None
    witnessing: Witnessing | None = None
    # Records a signed request's nonce (raises RequestReplayed for one seen before): the
    # ledger's database on a primary, the node's own file on a read-only node.
    remember_nonce: Callable[[str, str, int], None] | None = None

    def record_nonce(self, nonce: str, key_id: str, now: int) -> None:
        (self.remember_nonce or self.store.remember_nonce)(nonce, key_id, now)


def services() -> Services:
    svc: Services = current_app.extensions["filiera"]
    return svc


@functools.cache
def _query_schema(schema: type[Schema]) -> Schema:
    """One instance per query schema: building one costs about 80 µs, a tenth of a proof
    request, and ``load`` keeps no state in it (none of them uses ``context``)."""
    return schema()


def load_query(schema: type[Schema], error: type[InvalidPage] | Any = InvalidPage) -> dict[str, Any]:
    """Query parameters through a marshmallow schema; unknown parameters are refused."""
    try:
        loaded: dict[str, Any] = _query_schema(schema).load(request.args.to_dict(flat=True))
        return loaded
    except ValidationError as exc:
        fields = sorted(exc.messages) if isinstance(exc.messages, dict) else []
        detail = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in (exc.messages.items() if isinstance(exc.messages, dict) else []))
        raise error(f"invalid query parameters: {detail}", fields=fields) from exc
