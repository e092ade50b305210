"""Sub-commands of ``filiera`` that live in their own modules, one per command or family.

Each module registers its commands on :data:`api.cli.cli` when imported; ``api.cli`` imports
this package last, after the group and its shared helpers exist. Shared helpers for command
modules: ``api.cli.Ctx``, ``api.cli.fail``, ``api.cli.EXIT_INVALID`` and ``EXIT_USAGE``,
``api.cli.read_trusted_checkpoint`` and ``api.cli.write_atomic``.
"""

from __future__ import annotations

from . import audit, certificate, dashboard, epcis, evidence, export, facts, monitor, webhooks, witness, worker  # noqa: F401
