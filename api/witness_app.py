"""``filiera witness serve``: a c2sp.org/tlog-witness witness for any Filiera ledger (or any
log whose checkpoints are Ed25519 signed notes).

One route does the work, ``POST /add-checkpoint``: under the origin's lock it reads the
witness's record, decides with :func:`ledger.witness.witness_checkpoint`, stores the new
record durably and only then cosigns. Status codes are the protocol's; a 409 answers with
the witness's size as ``text/x.tlog.size``, every other refusal is a problem document with a
stable ``code``. ``GET /`` names the witness and the logs it knows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from flask import Flask, Response, request

from ledger.clock import Clock, SystemClock
from ledger.cosignature import Cosigner
from ledger.errors import (
    ConfigurationError,
    ConflictingCheckpoint,
    InconsistentCheckpoint,
    OldSizeMismatch,
    Unavailable,
)
from ledger.notes import NoteVerifier
from ledger.witness import (
    ADD_CHECKPOINT_PATH,
    MAX_REQUEST_BYTES,
    SIZE_MEDIA_TYPE,
    AddCheckpoint,
    format_size,
    witness_checkpoint,
)
from ledger.witness_state import WitnessState

from . import problems

__all__ = ["create_witness_app"]

log = logging.getLogger("filiera.witness")


def create_witness_app(
    *,
    cosigner: Cosigner,
    logs: Mapping[str, Sequence[NoteVerifier]],
    state_dir: Path,
    clock: Clock | None = None,
) -> Flask:
    """A witness for ``logs`` (origin -> trusted note keys), keeping its records in
    ``state_dir``. Raises ConfigurationError if the state directory cannot be created."""
    state = WitnessState(state_dir)
    now = clock or SystemClock()
    known = {origin: tuple(keys) for origin, keys in logs.items()}
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    problems.register(app)

    @app.errorhandler(OldSizeMismatch)
    @app.errorhandler(ConflictingCheckpoint)
    def _size_conflict(exc: OldSizeMismatch | ConflictingCheckpoint) -> Response:
        # tlog-witness §add-checkpoint: the body is the latest cosigned size and a newline.
        if isinstance(exc, ConflictingCheckpoint):
            log.error("refused a conflicting checkpoint (a split view?): %s", exc.detail)
        return Response(format_size(int(exc.facts["size"])), status=409, content_type=SIZE_MEDIA_TYPE)

    @app.errorhandler(ConfigurationError)
    def _broken_state(exc: ConfigurationError) -> Response:
        # The state directory cannot be read or written: the operator's problem, reported in
        # the log with the path; the client only learns to try later.
        log.error("witness state: %s", exc.detail)
        return problems.problem(Unavailable("this witness cannot use its records now; retry later"))

    @app.post(ADD_CHECKPOINT_PATH)
    def add_checkpoint() -> Response:
        # No media type is checked: the spec names none, and clients differ.
        req = AddCheckpoint.parse(request.get_data(cache=False))
        origin = req.body.origin
        if origin not in known:
            # Refused before taking a lock or creating a file for an origin nobody configured.
            witness_checkpoint(req, logs=known, latest=None)
        with state.locked(origin) as record:
            try:
                checkpoint = witness_checkpoint(req, logs=known, latest=record.latest)
            except InconsistentCheckpoint:
                # The log signed it (checked before consistency): evidence of a second history.
                log.error("refused an inconsistent checkpoint of %s:\n%s", origin, req.checkpoint)
                raise
            if record.latest is None or checkpoint.tree_size != record.latest.tree_size:
                record.save(req.checkpoint)
        # The record is durable before the cosignature exists (the spec's order).
        timestamp = int(now.now().timestamp())
        line = cosigner.cosign(checkpoint, timestamp=timestamp)
        return Response(f"{line}\n", status=200, mimetype="text/plain")

    @app.get("/")
    def about() -> Response:
        lines = [f"filiera witness {cosigner.verifier.vkey}", *(f"log {k.vkey}" for ks in known.values() for k in ks)]
        return Response("".join(f"{line}\n" for line in lines), mimetype="text/plain")

    return app
