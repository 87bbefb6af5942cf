"""``phoenix-resources parked list | show | replay | discard``: the parking lot of commands.

A command whose application failed unexpectedly is parked (PRK-001) with every later command
of its resource (PRK-002). Fix the cause, then ``replay``: each resource's queue is applied
in order and stops at the first command that still fails. ``discard`` refuses commands for
good (outcome ``rejected``, CMD-010). See ``docs/operations.md``.

Exit codes: 0 done; 1 error, or a replay that stopped at a command that still fails; 2 usage;
4 nothing parked matches (``show``); 6 PostgreSQL did not answer within ``--connect-timeout``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from phoenix_resources.entrypoints.cli.common import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    fail,
    load_settings,
    require_server,
    uuid_arg,
)
from phoenix_resources.entrypoints.cli.reach import (
    ConnectTimeoutOpt,
    Reach,
    check_database,
    database_unreachable,
)
from phoenix_resources.errors import DatabaseUnavailable, PhoenixError

if TYPE_CHECKING:
    from phoenix_resources.bootstrap import ParkingParts

parked_app = typer.Typer(no_args_is_help=True, help="The parking lot: commands that failed "
                         "unexpectedly, and those waiting behind them per resource.")

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
ResourceOpt = Annotated[str | None, typer.Option("--resource", "-r",
                                                 help="Only this resource (UUID).")]


def register(app: typer.Typer) -> None:
    app.add_typer(parked_app, name="parked")


@contextmanager
def _parking(connect_timeout: float | None) -> Iterator[ParkingParts]:
    """The lot's parts, once PostgreSQL answered within the connection timeout (exit 6
    otherwise, and when it stops answering later on)."""
    require_server("parked")
    from phoenix_resources import bootstrap
    from phoenix_resources.adapters.postgres.ping import ping

    settings = load_settings()
    reach = Reach.of(connect_timeout)
    check_database(settings.database_url, reach, ping)
    parts = bootstrap.parking_parts(settings)
    parts.pool.timeout = reach.seconds  # waiting for a connection: the database went away
    parts.pool.open(wait=False)
    try:
        yield parts
    except DatabaseUnavailable as e:
        database_unreachable(settings.database_url, reach, e)
    except PhoenixError as e:
        raise fail(str(e)) from e
    finally:
        parts.pool.close()


@parked_app.command("list")
def list_parked(
    resource: ResourceOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows.")]
    = 100,
    commands: Annotated[bool, typer.Option(
        "--commands", help="One line per parked command instead of per resource.")] = False,
    as_json: JsonOpt = False,
    connect_timeout: ConnectTimeoutOpt = None,
) -> None:
    """Parked resources (the longest-waiting first), or their commands in order.

    Example: phoenix-resources parked list --commands --resource 3f1e…c2
    """
    rid = None if resource is None else uuid_arg(resource, "--resource")
    with _parking(connect_timeout) as parts:
        if commands or rid is not None:
            for row in parts.lot.commands(rid, limit):
                typer.echo(json.dumps(row.to_json()) if as_json else
                           f"{row.seq:>8}  {row.reason}  {row.resource_id}  "
                           f"{row.command_id}  {row.command_type:<6}  "
                           f"attempts={row.attempts}  {row.error[:80]}")
            return
        for r in parts.lot.resources(limit):
            typer.echo(json.dumps({"resource_id": str(r.resource_id), "commands": r.commands,
                                   "since": r.since.isoformat(), "head": str(r.head),
                                   "error": r.error}) if as_json else
                       f"{r.resource_id}  {r.commands:>5} parked since "
                       f"{r.since.isoformat(timespec='seconds')}  head={r.head}  "
                       f"{r.error[:80]}")


@parked_app.command("show")
def show(command_id: Annotated[str, typer.Argument(help="UUID of the parked command.")],
         connect_timeout: ConnectTimeoutOpt = None) -> None:
    """One parked command in full: why, where from, attempts, and the command itself.

    Example: phoenix-resources parked show 9b2d…41
    """
    cid = uuid_arg(command_id, "COMMAND_ID")
    with _parking(connect_timeout) as parts:
        row = parts.lot.command(cid)
    if row is None:
        raise fail(f"no parked command {cid}", EXIT_NOT_FOUND)
    typer.echo(json.dumps(row.to_json(), indent=2))


@parked_app.command("replay")
def replay(
    resource: ResourceOpt = None,
    all_resources: Annotated[bool, typer.Option("--all", help="Every parked resource.")]
    = False,
    as_json: JsonOpt = False,
    connect_timeout: ConnectTimeoutOpt = None,
) -> None:
    """Re-apply parked commands in order, per resource, once the cause is fixed.

    A resource's replay stops at the first command that still fails (then exit 1).

    Example: phoenix-resources parked replay --all
    """
    from phoenix_resources.services.replay import replay_resource

    if (resource is None) == (not all_resources):
        raise fail("give --resource ID or --all", EXIT_USAGE)
    stopped = 0
    with _parking(connect_timeout) as parts:
        targets = ([uuid_arg(resource, "--resource")] if resource is not None
                   else [r.resource_id for r in parts.lot.resources(limit=1_000_000)])
        for rid in targets:
            report = replay_resource(parts.unit_factory, rid, lambda: datetime.now(UTC))
            stopped += report.stopped_at is not None
            if as_json:
                typer.echo(json.dumps({
                    "resource_id": str(rid), "applied": report.applied,
                    "rejected": report.rejected, "remaining": report.remaining,
                    "stopped_at": None if report.stopped_at is None else str(report.stopped_at),
                    "error": report.error}))
            elif report.stopped_at is None:
                typer.echo(f"{rid}  replayed: {report.applied} applied, "
                           f"{report.rejected} rejected")
            else:
                typer.echo(f"{rid}  stopped at {report.stopped_at} after {report.applied} "
                           f"applied, {report.rejected} rejected; {report.remaining} still "
                           f"parked: {report.error}")
    if stopped:
        raise typer.Exit(EXIT_ERROR)


@parked_app.command("discard")
def discard(
    resource: Annotated[str, typer.Option("--resource", "-r", help="The resource (UUID).")],
    command: Annotated[list[str] | None, typer.Option(
        "--command", "-c", help="Only this parked command (repeat for more); default: all "
                                "of the resource's.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")]
    = "discarded by an operator",
    yes: Annotated[bool, typer.Option("--yes", help="Do it (without, nothing changes).")]
    = False,
    connect_timeout: ConnectTimeoutOpt = None,
) -> None:
    """Refuse parked commands for good (outcome rejected, CMD-010).

    The refusal is announced on the rejections topic; the resource's other parked commands
    stay parked.

    Example: phoenix-resources parked discard --resource 3f1e…c2 --yes
    """
    from phoenix_resources.services.replay import discard as discard_parked

    rid = uuid_arg(resource, "--resource")
    ids = None if not command else {uuid_arg(c, "--command") for c in command}
    if not yes:
        raise fail("discarding cannot be undone: repeat with --yes", EXIT_USAGE)
    with _parking(connect_timeout) as parts:
        gone = discard_parked(parts.unit_factory, rid, ids, datetime.now(UTC), reason)
    for cid in gone:
        typer.echo(f"discarded {cid}")
    if ids is not None and len(gone) < len(ids):
        missing = sorted(str(i) for i in ids - set(gone))
        raise fail(f"not parked for resource {rid}: {', '.join(missing)}", EXIT_NOT_FOUND)
    if not gone:
        typer.echo(f"nothing parked for resource {rid}")

