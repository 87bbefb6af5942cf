"""``phoenix-resources stack up | down | status``: the local Kafka + PostgreSQL.

The only CLI module that reaches :mod:`phoenix_resources.devstack` (an architecture test
holds it to that), and only when a command runs: the devstack is a developer tool, not
part of the service. ``status`` exits 3 when a service is not running.
"""

from __future__ import annotations

import typer

stack_app = typer.Typer(help="The local Kafka + PostgreSQL stack (no Docker needed).",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``stack`` group to ``app``."""
    app.add_typer(stack_app, name="stack")


def _devstack(action: str) -> int:
    """Run ``python -m phoenix_resources.devstack ACTION`` in-process; return its exit code."""
    from phoenix_resources.devstack.__main__ import main as devstack

    return devstack([action])


@stack_app.command("up")
def stack_up() -> None:
    """Start the local Kafka (127.0.0.1:9092) and PostgreSQL (127.0.0.1:55432)."""
    raise typer.Exit(_devstack("up"))


@stack_app.command("down")
def stack_down() -> None:
    """Stop the local stack (data is kept under .local/)."""
    raise typer.Exit(_devstack("down"))


@stack_app.command("status")
def stack_status() -> None:
    """Show whether the local services run (exit 3 when one does not)."""
    raise typer.Exit(_devstack("status"))
