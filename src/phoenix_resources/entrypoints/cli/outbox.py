"""``phoenix-resources outbox list | retry | discard``: parked outbox rows.

The relay parks a row the broker refused for good (too large for the topic, topic absent,
not authorised); that row and every later row of its resource wait. Fix the cause, then
``retry`` (the relay publishes them in order within its poll interval), or ``discard`` a row
whose event must never be published (needs ``--yes``).

Rows are chosen by ``IDS`` — each an outbox row id (``seq``, an integer, as ``list`` shows) or
a resource id (UUID: all its parked rows) — or ``--all``. Exit codes: 0 done, 1 error, 2 usage
(nothing chosen, ``discard`` without ``--yes``), 4 no parked row matched, 6 PostgreSQL did
not answer within ``--connect-timeout``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from phoenix_resources.entrypoints.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    fail,
    load_settings,
    require_server,
)
from phoenix_resources.entrypoints.cli.reach import (
    ConnectTimeoutOpt,
    Reach,
    database_unreachable,
)
from phoenix_resources.errors import DatabaseUnavailable, PhoenixError

if TYPE_CHECKING:
    import psycopg

    from phoenix_resources.adapters.postgres.parked_outbox import ParkedRow, Selection

outbox_app = typer.Typer(help="Outbox rows the broker refused for good (parked by the relay).",
                         no_args_is_help=True)

IdsArg = Annotated[list[str] | None, typer.Argument(
    help="Outbox row ids (seq, as `outbox list` shows) and/or resource ids (UUID).",
    show_default=False)]
AllOpt = Annotated[bool, typer.Option("--all", help="Every parked row.")]


def register(app: typer.Typer) -> None:
    """Add the ``outbox`` group to ``app``."""
    app.add_typer(outbox_app, name="outbox")


@outbox_app.callback()
def _needs_the_server_extra() -> None:
    """Runs before every ``outbox`` command (not for ``--help``): PostgreSQL is needed."""
    require_server("outbox")


def selection_of(ids: list[str] | None, everything: bool) -> Selection:
    """``ids`` split into row ids and resource ids; a usage error when nothing is chosen."""
    from phoenix_resources.adapters.postgres.parked_outbox import Selection

    seqs: list[int] = []
    resources: list[str] = []
    for value in ids or []:
        if value.isdigit():
            seqs.append(int(value))
            continue
        try:
            resources.append(str(uuid.UUID(value)))
        except ValueError as e:
            raise typer.BadParameter(f"{value!r} is neither a row id nor a resource id",
                                     param_hint="IDS") from e
    if everything and (seqs or resources):
        raise fail("give row or resource ids, or --all, not both", EXIT_USAGE)
    if not (everything or seqs or resources):
        raise fail("choose rows: row ids, resource ids, or --all", EXIT_USAGE)
    return Selection(seqs=seqs, resources=resources, everything=everything)


@contextmanager
def _connect(connect_timeout: float | None) -> Iterator[psycopg.Connection[Any]]:
    """A connection for one command; the library's log lines (each discarded row) go to
    stderr in the configured format. PostgreSQL not answering within the connection
    timeout, or going away later: exit 6, naming the database. Other errors: exit 1."""
    import psycopg

    from phoenix_resources.adapters.postgres.errors import translated
    from phoenix_resources.observability import configure_logging

    settings = load_settings()
    reach = Reach.of(connect_timeout)
    configure_logging(settings.log_level, settings.log_format)
    try:
        with translated():
            conn = psycopg.connect(settings.database_url, autocommit=True,
                                   connect_timeout=reach.pg_connect_timeout)
        with conn:
            yield conn
    except DatabaseUnavailable as e:
        database_unreachable(settings.database_url, reach, e)
    except PhoenixError as e:
        raise fail(str(e)) from e


def row_json(row: ParkedRow) -> dict[str, Any]:
    return {"seq": row.seq, "event_id": row.event_id, "resource_id": row.aggregateid,
            "type": row.type, "topic": row.topic, "bytes": row.size,
            "occurred_at": row.occurred_at.isoformat(),
            "parked_at": row.parked_at.isoformat() if row.parked_at else None,
            "reason": row.reason, "waiting_behind": row.waiting}


def row_line(row: ParkedRow) -> str:
    parked = row.parked_at.isoformat(timespec="seconds") if row.parked_at else "-"
    return (f"{row.seq:>10}  {parked}  {row.aggregateid}  {row.type:<16} {row.topic}  "
            f"{row.size}B  waiting={row.waiting}  {row.reason}")


@outbox_app.command("list")
def list_rows(
    ids: IdsArg = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    connect_timeout: ConnectTimeoutOpt = None,
) -> None:
    """Parked rows, oldest first: row id, parked at, resource, type, topic, size, rows
    waiting behind it, and the broker's reason.

    Example: phoenix-resources outbox list --json
    """
    from phoenix_resources.adapters.postgres.parked_outbox import list_parked

    selection = selection_of(ids, False) if ids else None
    with _connect(connect_timeout) as conn:
        rows = list_parked(conn, selection, limit)
    for row in rows:
        typer.echo(json.dumps(row_json(row)) if as_json else row_line(row))
    if not as_json:
        typer.echo(f"{len(rows)} parked row(s)", err=True)


@outbox_app.command("retry")
def retry_rows(ids: IdsArg = None, everything: AllOpt = False,
               connect_timeout: ConnectTimeoutOpt = None) -> None:
    """Clear the park of the chosen rows: the relay publishes them, then the rows that
    waited behind them, in order (fix the cause first, or they are parked again).

    Example: phoenix-resources outbox retry 1742 3f0c9a9e-5d0b-4a8e-9a51-2f1f8c1d2e3a
    """
    from phoenix_resources.adapters.postgres.parked_outbox import retry

    selection = selection_of(ids, everything)
    with _connect(connect_timeout) as conn:
        seqs = retry(conn, selection)
    if not seqs:
        raise fail("no parked row matches", EXIT_NOT_FOUND)
    typer.echo(f"released {len(seqs)} row(s) for the relay: {', '.join(map(str, seqs[:20]))}"
               + (" …" if len(seqs) > 20 else ""))


@outbox_app.command("discard")
def discard_rows(
    ids: IdsArg = None,
    everything: AllOpt = False,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Confirm: the events of these rows are deleted, never published.")]
    = False,
    connect_timeout: ConnectTimeoutOpt = None,
) -> None:
    """Delete the chosen parked rows: their events are never published (each is logged);
    the rows that waited behind them flow again.

    Example: phoenix-resources outbox discard 1742 --yes
    """
    from phoenix_resources.adapters.postgres.parked_outbox import discard

    selection = selection_of(ids, everything)
    if not yes:
        raise fail("discard deletes events for good; add --yes to confirm", EXIT_USAGE)
    with _connect(connect_timeout) as conn:
        gone = discard(conn, selection)
    if not gone:
        raise fail("no parked row matches", EXIT_NOT_FOUND)
    for row in gone:
        typer.echo(f"discarded {row.seq} (event {row.event_id}, resource {row.aggregateid})")
