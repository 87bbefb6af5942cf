"""``phoenix-resources``: run the processes, migrate, manage the local stack, and use the
client library from a shell (``send``, ``watch``, ``get``, ``list``).

Exit codes (stable; scripts may rely on them; defined once in :mod:`.common`):

* 0 — ok: done (sent / applied / found / watched / started and stopped cleanly);
* 1 — error (message on stderr): broker, database or API unreachable, a migration or a
  delivery failed, no outcome in time, a bulk file with at least one failed line, a service
  command (``migrate``, ``worker``, ``relay``, ``api``, ``run``, ``parked``,
  ``console``) without the ``server`` extra installed;
* 2 — usage: bad flags or settings, or a command that fails local validation (nothing was
  sent);
* 3 — not running / not ready (``stack status``);
* 4 — the command was **rejected** by the service (``send … --wait``), or the resource is
  **not found** (``get``);
* 5 — the command was **parked** (``send … --wait --api-url``): it waits for an operator's
  replay (``phoenix-resources parked``).

``watch`` stopped by Ctrl-C exits 130, the shell's convention for SIGINT.

One module per topic, each with ``register(app)``: :mod:`.ops` (migrate, worker, relay,
api, run), :mod:`.stack` (the local stack), :mod:`.send` (send, with :mod:`.bulk` for
``--file``), :mod:`.read` (watch, get, list), :mod:`.parked` (the parking lot of commands),
:mod:`.outbox` (outbox rows the broker refused), :mod:`.dlq` (the dead-letter topic),
:mod:`.console` (the operators' web console over those three),
:mod:`.configuration` (config docs/show), :mod:`.grpc` (the gRPC server, the AsyncAPI
document) and :mod:`.soak` (the fault kit);
:mod:`.common` holds what they share. A new topic is a module with a ``register`` function
plus one entry in :data:`TOPICS`. Topic modules import server code only inside their
commands, so starting the CLI stays cheap.

Entry points: the ``phoenix-resources`` script (:func:`main`) and
``python -m phoenix_resources.entrypoints.cli``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from phoenix_resources.entrypoints.cli import (
    configuration,
    console,
    dlq,
    grpc,
    ops,
    outbox,
    parked,
    read,
    send,
    soak,
    stack,
)
from phoenix_resources.entrypoints.cli.common import EXIT_ERROR
from phoenix_resources.errors import PhoenixError

app = typer.Typer(
    name="phoenix-resources",
    help="Apply resource commands from Kafka to PostgreSQL, effectively once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

TOPICS: tuple[Callable[[typer.Typer], None], ...] = (
    ops.register, stack.register, send.register, read.register, parked.register,
    outbox.register, dlq.register, console.register, configuration.register, grpc.register,
    soak.register,
)
"""Each topic's ``register(app)``; commands are listed in this order within the
commands and the groups of ``--help``."""

for register in TOPICS:
    register(app)


def main() -> None:
    """The console script: run :data:`app`; an error of the tree that escapes a command is
    printed as ``error: …`` and exits 1 (never a traceback)."""
    try:
        app()
    except PhoenixError as e:
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        sys.exit(EXIT_ERROR)
