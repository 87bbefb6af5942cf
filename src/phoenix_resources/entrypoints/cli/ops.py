"""``phoenix-resources migrate | worker | relay | api | run``: the service's own processes.

Each command imports its server module when it runs, never at import time: ``--help`` and
the client commands must not pay for (or need) the database and HTTP stacks.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from phoenix_resources.config import redact
from phoenix_resources.entrypoints.cli.common import fail, load_settings


class MigrateAction(StrEnum):
    upgrade = "upgrade"
    downgrade = "downgrade"
    current = "current"


def register(app: typer.Typer) -> None:
    """Add ``migrate``, ``worker``, ``relay``, ``api`` and ``run`` to ``app``."""
    for command in (migrate, worker, relay, api, run):
        app.command()(command)


def migrate(
    action: Annotated[MigrateAction, typer.Argument()] = MigrateAction.upgrade,
    revision: Annotated[str | None, typer.Option(help="Target revision "
                                                 "(default: head / one step down)")] = None,
) -> None:
    """Apply (or revert) the database migrations.

    Example: phoenix-resources migrate upgrade
    """
    from phoenix_resources.adapters.postgres import schema

    settings = load_settings()
    try:
        if action is MigrateAction.upgrade:
            schema.upgrade(settings.database_url, revision or "head")
        elif action is MigrateAction.downgrade:
            schema.downgrade(settings.database_url, revision or "-1")
        typer.echo(f"{redact(settings.database_url)} at revision "
                   f"{schema.current_revision(settings.database_url) or 'base'}")
    except Exception as e:
        raise fail(f"migration failed: {e}") from e


def worker() -> None:
    """Consume commands and apply them to PostgreSQL (scale out: run more of these).

    Example: PHOENIX_BATCH_SIZE=2000 phoenix-resources worker
    """
    from phoenix_resources.entrypoints.runner import run_worker

    raise typer.Exit(run_worker(load_settings()))


def relay() -> None:
    """Publish outbox rows to the events / rejections topics (one active, others standby).

    Example: phoenix-resources relay
    """
    from phoenix_resources.entrypoints.runner import run_relay

    raise typer.Exit(run_relay(load_settings()))


def api() -> None:
    """Serve the read-only HTTP API (PHOENIX_HTTP_WORKERS processes).

    Example: PHOENIX_HTTP_PORT=8080 phoenix-resources api
    """
    from phoenix_resources.entrypoints.http import serve

    serve(load_settings())


def run() -> None:
    """Worker + relay + HTTP API + gRPC API in one process: the local default (`make run`).

    Example: phoenix-resources run   # then open http://127.0.0.1:8000/docs
    """
    from phoenix_resources.entrypoints.runner import run_all

    raise typer.Exit(run_all(load_settings()))
