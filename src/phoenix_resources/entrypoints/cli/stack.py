"""``phoenix-resources stack up | down | status | env [--topology single|cluster]``: the local
Kafka + PostgreSQL.

The only CLI module that reaches :mod:`phoenix_resources.devstack` (an architecture test
holds it to that), and only when a command runs: the devstack is a developer tool, not
part of the service. ``status`` exits 3 when a service is not running.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

stack_app = typer.Typer(help="The local Kafka + PostgreSQL stack (no Docker needed).",
                        no_args_is_help=True)


class Topology(StrEnum):
    single = "single"
    cluster = "cluster"


TopologyOpt = Annotated[Topology, typer.Option(
    "--topology", help="single: one broker, one PostgreSQL (127.0.0.1:9092, :55432). "
    "cluster: three brokers and a controller (127.0.0.1:19092-19095), a synchronous "
    "PostgreSQL primary/standby pair (127.0.0.1:55442-55443).")]


def register(app: typer.Typer) -> None:
    """Add the ``stack`` group to ``app``."""
    app.add_typer(stack_app, name="stack")


def _devstack(action: str, topology: Topology = Topology.single) -> int:
    """Run ``python -m phoenix_resources.devstack ACTION`` in-process; return its exit code."""
    from phoenix_resources.devstack.__main__ import main as devstack

    return devstack([action, "--topology", topology.value])


@stack_app.command("up")
def stack_up(topology: TopologyOpt = Topology.single) -> None:
    """Start the local Kafka and PostgreSQL (see --topology for the addresses)."""
    raise typer.Exit(_devstack("up", topology))


@stack_app.command("down")
def stack_down(topology: TopologyOpt = Topology.single) -> None:
    """Stop the local stack (data is kept under .local/)."""
    raise typer.Exit(_devstack("down", topology))


@stack_app.command("status")
def stack_status(topology: TopologyOpt = Topology.single) -> None:
    """Show whether the local services run (exit 3 when one does not)."""
    raise typer.Exit(_devstack("status", topology))


@stack_app.command("env")
def stack_env(topology: TopologyOpt = Topology.single) -> None:
    """Print the PHOENIX_* variables that point processes at the local stack."""
    raise typer.Exit(_devstack("env", topology))
