"""`filiera demo`: a small, realistic consortium on a fresh ledger, for `make run`.

An extra-virgin olive oil chain: olive groves in Puglia, a mill, a bottler, a carrier, two
retailers (Milan and Munich), an organic certifier and an auditor. Their key files are written
to the data directory so the README's tour can sign entries as any of them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timezone

from ledger.config import Settings
from ledger.encoding import format_time
from ledger.entries import sign_payload
from ledger.errors import LedgerExists
from ledger.keys import SigningKey, read_key_file, write_key_file
from ledger.sealing import Sealer
from ledger.storage.store import Store

__all__ = ["CONSORTIUM", "build_demo"]

CONSORTIUM: list[tuple[str, str, list[str], dict[str, str]]] = [
    ("masseria-ulivi", "Masseria degli Ulivi", ["producer"], {"country": "IT", "region": "Puglia"}),
    ("frantoio-bari", "Frantoio Cooperativo di Bari", ["processor"], {"country": "IT", "region": "Puglia"}),
    ("oleificio-sud", "Oleificio del Sud Imbottigliamento", ["processor"], {"country": "IT"}),
    ("trasporti-adriatica", "Trasporti Adriatica", ["carrier"], {"country": "IT"}),
    ("mercato-milano", "Mercato Centrale Milano", ["retailer", "buyer"], {"country": "IT", "city": "Milano"}),
    ("feinkost-muenchen", "Feinkost München", ["retailer", "buyer"], {"country": "DE", "city": "München"}),
    ("bio-cert-italia", "BioCert Italia", ["certifier"], {"scheme": "EU organic"}),
    ("revisori-associati", "Revisori Associati", ["auditor"], {}),
]


def build_demo(
    settings: Settings,
    *,
    origin: str,
    if_missing: bool,
    echo: Callable[[str], None] = print,
) -> bool:
    """Initialise a ledger and register the consortium. False if one exists and
    ``if_missing``; raises LedgerExists if one exists otherwise."""
    from .cli import init_ledger

    try:
        init_ledger(settings, origin=origin, admin="admin", admin_name="Consorzio Olio Extravergine")
    except LedgerExists:
        if if_missing:
            return False
        raise
    admin = read_key_file(settings.data_dir / "admin.key")
    store = Store.open(settings)
    try:
        ledger_key = read_key_file(settings.ledger_key_file).signing_key
        sealer = Sealer(store, signing_key=ledger_key)
        envelopes = []
        for pid, name, roles, attrs in CONSORTIUM:
            key = SigningKey.generate()
            write_key_file(settings.data_dir / f"{pid}.key", participant=pid, signing_key=key, overwrite=True)
            payload = {
                "ledger": origin,
                "type": "participant.register",
                "author": "admin",
                "time": format_time(datetime.now(timezone.utc)),
                "nonce": secrets.token_urlsafe(18),
                "participant": {"id": pid, "name": name, "roles": roles, "keys": [{"public_key": key.public_key.b64}], "attributes": attrs},
            }
            envelopes.append(sign_payload(payload, [("admin", admin.signing_key)]))
        outcomes = sealer.submit_batch(envelopes, raise_first=True)
    finally:
        store.dispose()
    echo(f"demo ledger {origin}: {len(outcomes)} members registered; key files in {settings.data_dir}")
    return True
