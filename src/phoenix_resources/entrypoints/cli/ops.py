"""``phoenix-resources migrate | worker | relay | api | run``: the service's own processes.

Each command imports its server module when it runs, never at import time: ``--help`` and
the client commands must not pay for (or need) the database and HTTP stacks. Without the
``server`` extra installed, each refuses with a message naming it (:func:`.require_server`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from phoenix_resources.config import redact
from phoenix_resources.entrypoints.cli.common import (
    EXIT_USAGE,
    fail,
    load_settings,
    require_server,
)


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
    sql: Annotated[bool, typer.Option(
        "--sql", help="Print the SQL instead of running it (Alembic offline mode): for "
        "review or for a DBA to apply with psql. Never connects to the database.")] = False,
    from_revision: Annotated[str | None, typer.Option(
        "--from", help="With --sql: the revision the database is at (upgrade default: an "
        "empty database; required for downgrade).")] = None,
) -> None:
    """Apply (or revert) the database migrations, or print their SQL (--sql).

    Example: phoenix-resources migrate upgrade --sql --from 0002 > upgrade.sql
    """
    require_server("migrate")
    from phoenix_resources.adapters.postgres import schema

    if sql:
        if action is MigrateAction.current:
            raise fail("--sql renders upgrade or downgrade, not current", EXIT_USAGE)
        if action is MigrateAction.downgrade and from_revision is None:
            raise fail("downgrade --sql needs --from REVISION (the database's revision)",
                       EXIT_USAGE)
        try:
            text = (schema.upgrade_sql(revision or "head", from_revision)
                    if action is MigrateAction.upgrade
                    else schema.downgrade_sql(from_revision or "", revision or "base"))
        except Exception as e:
            raise fail(f"cannot render the migrations: {e}") from e
        typer.echo(text, nl=False)
        return
    if from_revision is not None:
        raise fail("--from goes with --sql (online, the database says where it is)",
                   EXIT_USAGE)
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
    require_server("worker")
    from phoenix_resources.entrypoints.runner import run_worker

    raise typer.Exit(run_worker(load_settings()))


def relay() -> None:
    """Publish outbox rows to the events / rejections topics (one active, others standby).

    Example: phoenix-resources relay
    """
    require_server("relay")
    from phoenix_resources.entrypoints.runner import run_relay

    raise typer.Exit(run_relay(load_settings()))


def api() -> None:
    """Serve the read-only HTTP API (PHOENIX_HTTP_WORKERS processes).

    Example: PHOENIX_HTTP_PORT=8080 phoenix-resources api
    """
    require_server("api")
    from phoenix_resources.entrypoints.http.server import serve

    serve(load_settings())


def run() -> None:
    """Worker + relay + HTTP API + gRPC API in one process: the local default (`make run`).

    Example: phoenix-resources run   # then open http://127.0.0.1:8000/docs
    """
    require_server("run")
    from phoenix_resources.entrypoints.runner import run_all

    raise typer.Exit(run_all(load_settings()))
