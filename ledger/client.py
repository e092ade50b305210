"""A Python client for supplier systems: build, sign, co-sign and submit entries, read as a
member (RFC 9421 signed requests), and check receipts, proofs and checkpoints locally.

Importable without Flask or SQLAlchemy; only the standard library's HTTP client. Trust is
pinned to the ledger's note verifier key: every checkpoint the client accepts is verified with
it, so a server cannot make the client believe a proof against a root it did not sign.

Example::

    from ledger.client import LedgerClient
    from ledger.keys import read_key_file

    me = read_key_file(Path("var/masseria-ulivi.key"))
    ledger = LedgerClient("http://127.0.0.1:8000", key=me)
    env = ledger.sign(ledger.payload("origin", lots=[...], site="...", origin={"country": "IT"}))
    receipt = ledger.submit(env)          # raises a LedgerError leaf if refused
    ledger.verify_receipt(receipt, env)   # offline: leaf hash, proof, checkpoint signature
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from . import jcs
from .certificates import VerifiedCertificate, verify_certificate
from .credentials import verify_credential
from .encoding import check_lot_id, format_time
from .entries import add_signature, parse_envelope, sign_payload
from .errors import InvalidProof, LedgerError, Unavailable, error_for_code
from .httpsig import sign_request
from .keys import KeyFile, SigningKey
from .merkle import verify_consistency, verify_inclusion
from .notes import Checkpoint, NoteVerifier, TlogProof, verify_checkpoint

__all__ = ["LedgerClient", "http_json"]


def http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60,
    key: SigningKey | None = None,
    strict: bool = False,
    rate_limit_wait: float = 0.0,
    on_wait: Callable[[float], None] | None = None,
) -> tuple[int, Any]:
    """One JSON-over-HTTP call: (status, parsed JSON or text). With ``key`` the request is
    signed (RFC 9421) as that member; with ``strict`` the JSON is parsed as I-JSON (RFC 7493:
    a duplicate key or lone surrogate raises a MalformedInput leaf), as signed documents need.

    A 429 ``rate_limited`` answer is waited out and the request sent again (signed afresh)
    while its ``Retry-After`` fits in what is left of ``rate_limit_wait`` seconds; ``on_wait``
    hears each wait first. Resending is safe: entries are idempotent and reads change nothing.
    Raises Unavailable if the server cannot be reached."""
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    budget = rate_limit_wait
    while True:
        status, out, retry_after = _http_once(method, url, data, headers, timeout, key, strict)
        if status != 429 or retry_after is None or retry_after > budget:
            return status, out
        if on_wait is not None:
            on_wait(retry_after)
        time.sleep(retry_after)
        budget -= retry_after


def _http_once(
    method: str, url: str, data: bytes | None, headers: Mapping[str, str] | None, timeout: float, key: SigningKey | None, strict: bool
) -> tuple[int, Any, float | None]:
    """One request: (status, parsed body, Retry-After in seconds if the server sent one)."""
    hdrs = dict(headers or {})
    if key is not None:
        hdrs.update(sign_request(method, url, key, body=data))
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in hdrs.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, resp_headers = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        status, raw, resp_headers = err.code, err.read(), err.headers
    except (urllib.error.URLError, OSError) as exc:
        raise Unavailable(f"cannot reach {url}: {exc}") from exc
    retry_after = _seconds(resp_headers.get("Retry-After"))
    if "json" in resp_headers.get("Content-Type", ""):
        return status, jcs.loads(raw) if strict else json.loads(raw), retry_after
    return status, raw.decode("utf-8", "replace"), retry_after


def _seconds(value: str | None) -> float | None:
    """A Retry-After given in seconds (the form Filiera sends), else None."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _lot_path(lot: str) -> str:
    """A lot id in a URL path: the lot-id pattern (PROTOCOL §1) needs no escaping, and a
    percent-encoded '/' would not be the URL the server checks a signed request against."""
    check_lot_id(lot, field="lot")
    return lot


def _raise_problem(status: int, body: Any) -> None:
    if status >= 400:
        if isinstance(body, dict) and "code" in body:
            facts = {k: v for k, v in body.items() if k not in ("type", "title", "status", "detail", "code")}
            raise error_for_code(str(body["code"]), str(body.get("detail", "")), status=status, **facts)
        raise Unavailable(f"the server answered {status}")


class LedgerClient:
    """One ledger, seen by one member (or anonymously, for public reads and proofs)."""

    def __init__(
        self,
        url: str,
        *,
        key: KeyFile | None = None,
        verifier_key: str | None = None,
        timeout: float = 60,
        rate_limit_wait: float = 60,
    ) -> None:
        """``verifier_key``: the ledger's C2SP note verifier key, obtained out of band and
        pinned; if omitted it is fetched from the server on first use (trust on first use).
        ``rate_limit_wait``: seconds a call may spend waiting out 429 ``rate_limited``
        answers (their ``Retry-After``) before the refusal is raised; 0 raises at once."""
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.rate_limit_wait = rate_limit_wait
        self._verifier = NoteVerifier.parse(verifier_key) if verifier_key else None
        self._origin: str | None = self._verifier.name if self._verifier else None

    # --- transport --------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, *, signed: bool = False, headers: Mapping[str, str] | None = None, strict: bool = False) -> tuple[int, Any]:
        key = self.key.signing_key if (signed and self.key) else None
        status, out = http_json(method, self.url + path, body, headers, self.timeout, key, strict, self.rate_limit_wait)
        _raise_problem(status, out)
        return status, out

    def get(self, path: str) -> Any:
        """A member read (signed when the client has a key). Raises the server's problem."""
        return self._call("GET", path, signed=True)[1]

    # --- identity of the ledger ---------------------------------------------------------

    @property
    def verifier(self) -> NoteVerifier:
        if self._verifier is None:
            info = self._call("GET", "/v1/ledger")[1]
            self._verifier = NoteVerifier.parse(info["verifier_key"])
            self._origin = info["origin"]
        return self._verifier

    @property
    def origin(self) -> str:
        return self.verifier.name

    def checkpoint(self) -> Checkpoint:
        """The latest checkpoint, verified with the pinned key. Raises an IntegrityFailure leaf."""
        note = self._call("GET", "/v1/checkpoint")[1]
        return verify_checkpoint(note, verifier=self.verifier, origin=self.origin)

    # --- building and signing entries ------------------------------------------------

    def payload(self, type_: str, *, author: str | None = None, **fields: Any) -> dict[str, Any]:
        """A payload of ``type_`` for this ledger, authored by this client's member, dated now,
        with a fresh nonce. ``fields`` are the type's fields (PROTOCOL §4)."""
        who = author or (self.key.participant if self.key else None)
        if who is None:
            raise LedgerError("a payload needs an author: give author= or a key")
        return {
            "ledger": self.origin,
            "type": type_,
            "author": who,
            "time": format_time(datetime.now(timezone.utc)),
            "nonce": secrets.token_urlsafe(18),
            **fields,
        }

    def sign(self, payload_or_envelope: Mapping[str, Any], key: KeyFile | None = None) -> dict[str, Any]:
        """Sign a payload (wrapping it) or add a signature to an envelope (co-signing)."""
        kf = key or self.key
        if kf is None:
            raise LedgerError("no key to sign with")
        if "payload" in payload_or_envelope:
            return add_signature(payload_or_envelope, kf.participant, kf.signing_key)
        return sign_payload(payload_or_envelope, [(kf.participant, kf.signing_key)])

    # --- submitting ------------------------------------------------------------------

    def submit(self, envelope: Mapping[str, Any], *, wait: bool = True) -> dict[str, Any]:
        """Post one envelope. Returns the receipt (201/200) or ``{id, status: pending}`` (202
        with ``wait=False``). Raises the refusal as its LedgerError leaf. With a key the request
        is signed too (RFC 9421), so it counts against this member's rate limit, not against
        the address it comes from."""
        headers = {} if wait else {"Prefer": "respond-async"}
        out: dict[str, Any] = self._call("POST", "/v1/entries", dict(envelope), signed=True, headers=headers)[1]
        return out

    def submit_batch(self, envelopes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Post up to 1,000 envelopes; one result per envelope (receipt or problem), in order."""
        out = self._call("POST", "/v1/entries/batch", {"entries": [dict(e) for e in envelopes]}, signed=True)[1]
        results: list[dict[str, Any]] = out["results"]
        return results

    # --- checking evidence locally -----------------------------------------------------

    def verify_receipt(self, receipt: Mapping[str, Any], envelope: Mapping[str, Any]) -> Checkpoint:
        """Check offline that ``receipt`` proves ``envelope`` is in the ledger: the leaf hash is
        recomputed from the envelope, the tlog-proof's checkpoint is verified with the pinned
        key, and the inclusion proof leads to its root. Raises an IntegrityFailure leaf."""
        env = parse_envelope(jcs.loads(jcs.canonicalize(dict(envelope))), origin=self.origin)
        if env.id != receipt.get("id") or env.leaf_hash.hex() != receipt.get("leaf_hash"):
            raise InvalidProof("the receipt is for another entry (id or leaf hash differ)")
        proof = TlogProof.parse(str(receipt["tlog_proof"]))
        if proof.index != receipt.get("index"):
            raise InvalidProof("the receipt's index and its proof's index differ")
        return proof.verify(leaf_hash=env.leaf_hash, verifier=self.verifier, origin=self.origin)

    def verify_inclusion(self, entry_id: str, checkpoint: Checkpoint) -> int:
        """Fetch an inclusion proof of ``entry_id`` at a verified checkpoint and check it.
        Returns the entry's index. Raises InvalidProof."""
        p = self._call("GET", f"/v1/proofs/inclusion?id={entry_id}&tree_size={checkpoint.tree_size}")[1]
        verify_inclusion(
            leaf_hash=bytes.fromhex(p["leaf_hash"]),
            index=int(p["index"]),
            tree_size=checkpoint.tree_size,
            proof=[bytes.fromhex(h) for h in p["hashes"]],
            root=checkpoint.root,
        )
        return int(p["index"])

    # --- provenance and origin certificates (PROTOCOL §7) ------------------------------

    def provenance(self, lot: str) -> dict[str, Any]:
        """The lot's provenance view: the member's view when the client has a key, else the
        public one. Raises LotNotFound (404) or another problem's leaf."""
        out: dict[str, Any] = self._call("GET", f"/v1/lots/{_lot_path(lot)}/provenance", signed=True)[1]
        return out

    def certificate(self, lot: str, *, vc: bool = False) -> tuple[dict[str, Any], VerifiedCertificate]:
        """Fetch the lot's origin certificate (``vc``: its W3C VC 2.0 form) and verify it
        offline with the pinned verifier key. Returns (the document as served, what it
        proves); whether it certifies the lot is ``.certified``. Raises InvalidCertificate or
        MalformedCertificate if it does not verify, LotNotFound for an unknown lot."""
        query = "?format=vc" if vc else ""
        document: dict[str, Any] = self._call("GET", f"/v1/lots/{_lot_path(lot)}/certificate{query}", signed=True, strict=True)[1]
        return document, self.verify_certificate(document)

    def verify_certificate(self, document: Any) -> VerifiedCertificate:
        """Verify a saved certificate, either form, with the pinned verifier key, offline.
        Raises InvalidCertificate or MalformedCertificate."""
        if isinstance(document, dict) and "proof" in document:
            return verify_credential(document, self.verifier)
        return verify_certificate(document, self.verifier)

    def verify_consistency(self, old: Checkpoint, new: Checkpoint) -> None:
        """Check that ``new`` extends ``old`` (no rewritten history). Raises InvalidProof."""
        if old.tree_size == new.tree_size:
            if old.root != new.root:
                raise InvalidProof("two checkpoints of the same size with different roots: a fork")
            return
        p = self._call("GET", f"/v1/proofs/consistency?from={old.tree_size}&to={new.tree_size}")[1]
        verify_consistency(
            old_size=old.tree_size,
            new_size=new.tree_size,
            proof=[bytes.fromhex(h) for h in p["hashes"]],
            old_root=old.root,
            new_root=new.root,
        )

