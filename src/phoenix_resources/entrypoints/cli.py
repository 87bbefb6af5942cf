"""``phoenix-resources``: run the processes, migrate, manage the local stack.

Exit codes: 0 ok, 1 error (message on stderr), 2 usage error, 3 not running / not ready.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from phoenix_resources.config import Settings, redact
from phoenix_resources.errors import PhoenixError

app = typer.Typer(
    name="phoenix-resources",
    help="Apply resource commands from Kafka to PostgreSQL, effectively once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="The local Kafka + PostgreSQL stack (no Docker needed).",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")


class MigrateAction(StrEnum):
    upgrade = "upgrade"
    downgrade = "downgrade"
    current = "current"


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@app.command()
def migrate(
    action: Annotated[MigrateAction, typer.Argument()] = MigrateAction.upgrade,
    revision: Annotated[str | None, typer.Option(help="Target revision "
                                                 "(default: head / one step down)")] = None,
) -> None:
    """Apply (or revert) the database migrations.

    Example: phoenix-resources migrate upgrade
    """
    from phoenix_resources.adapters.postgres import schema

    settings = _settings()
    try:
        if action is MigrateAction.upgrade:
            schema.upgrade(settings.database_url, revision or "head")
        elif action is MigrateAction.downgrade:
            schema.downgrade(settings.database_url, revision or "-1")
        typer.echo(f"{redact(settings.database_url)} at revision "
                   f"{schema.current_revision(settings.database_url) or 'base'}")
    except Exception as e:
        raise fail(f"migration failed: {e}") from e


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as e:  # pydantic's message names the bad variable
        raise fail(f"invalid settings: {e}", 2) from e


@app.command()
def worker() -> None:
    """Consume commands and apply them to PostgreSQL (scale out: run more of these).

    Example: PHOENIX_BATCH_SIZE=2000 phoenix-resources worker
    """
    from phoenix_resources.entrypoints.runner import run_worker

    raise typer.Exit(run_worker(_settings()))


@app.command()
def relay() -> None:
    """Publish outbox rows to the events / rejections topics (one active, others standby).

    Example: phoenix-resources relay
    """
    from phoenix_resources.entrypoints.runner import run_relay

    raise typer.Exit(run_relay(_settings()))


@app.command()
def api() -> None:
    """Serve the read-only HTTP API (PHOENIX_HTTP_WORKERS processes).

    Example: PHOENIX_HTTP_PORT=8080 phoenix-resources api
    """
    from phoenix_resources.entrypoints.http import serve

    serve(_settings())


@app.command()
def run() -> None:
    """Worker + relay + HTTP API in one process: the local default (`make run`).

    Example: phoenix-resources run   # then open http://127.0.0.1:8000/docs
    """
    from phoenix_resources.entrypoints.runner import run_all

    raise typer.Exit(run_all(_settings()))


@stack_app.command("up")
def stack_up() -> None:
    """Start the local Kafka (127.0.0.1:9092) and PostgreSQL (127.0.0.1:55432)."""
    from phoenix_resources.devstack.__main__ import main as devstack

    raise typer.Exit(devstack(["up"]))


@stack_app.command("down")
def stack_down() -> None:
    """Stop the local stack (data is kept under .local/)."""
    from phoenix_resources.devstack.__main__ import main as devstack

    raise typer.Exit(devstack(["down"]))


@stack_app.command("status")
def stack_status() -> None:
    """Show whether the local services run (exit 3 when one does not)."""
    from phoenix_resources.devstack.__main__ import main as devstack

    raise typer.Exit(devstack(["status"]))


# --- publisher / subscriber commands (send, watch, get, list) live in cli_client.py -----
# (registered below once that module exists)
from phoenix_resources.entrypoints import cli_client  # noqa: E402

cli_client.register(app)


def main() -> None:
    try:
        app()
    except PhoenixError as e:
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        sys.exit(1)


if __name__ == "__main__":
    main()
