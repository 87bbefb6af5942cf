"""``phoenix-resources dlq list | show | replay``: the dead-letter topic.

Reading never joins a consumer group and never commits: it reads what the topic holds when
the command starts. ``replay`` re-publishes chosen dead letters to the commands topic with
their original key and headers plus ``dlq.replayed``; one that fails again is dead-lettered
again, and ``replay`` skips those (and truncated ones) unless ``--force`` (truncated ones
never). A dead letter is named by its offset (``OFFSET``, in partition ``--partition``, 0 by
default) or ``PARTITION:OFFSET``.

Exit codes: 0 done, 1 broker unreachable or a replayed record refused, 2 usage, 4 no such
dead letter / nothing matched.
"""

from __future__ import annotations

import base64
import json
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from phoenix_resources.entrypoints.cli.common import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    fail,
    load_settings,
)
from phoenix_resources.errors import PhoenixError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from phoenix_resources.adapters.dlq import DeadLetter
    from phoenix_resources.adapters.dlq_topic import ReplayReport
    from phoenix_resources.config import Settings

dlq_app = typer.Typer(help="Dead letters: commands the worker could not decode.",
                      no_args_is_help=True)


class Encoding(StrEnum):
    text = "text"
    hex = "hex"
    base64 = "base64"


TopicOpt = Annotated[str | None, typer.Option(
    "--topic", help="The DLQ topic (default: PHOENIX_DLQ_TOPIC).")]
PartitionOpt = Annotated[int, typer.Option(
    "--partition", min=0, help="Partition of offsets given without one.")]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", help="Only dead letters with this dlq.reason (e.g. malformed-json).")]


def register(app: typer.Typer) -> None:
    """Add the ``dlq`` group to ``app``."""
    app.add_typer(dlq_app, name="dlq")


def position(text: str, default_partition: int) -> tuple[int, int]:
    """``OFFSET`` or ``PARTITION:OFFSET`` as (partition, offset)."""
    partition, _, offset = text.rpartition(":")
    try:
        return (int(partition) if partition else default_partition), int(offset)
    except ValueError as e:
        raise typer.BadParameter(f"{text!r} is not OFFSET or PARTITION:OFFSET",
                                 param_hint="OFFSETS") from e


def _letters(settings: Settings, topic: str | None, reason: str | None = None,
             ) -> Iterator[DeadLetter]:
    from phoenix_resources.adapters.dlq_topic import select

    return select(settings.kafka_config("consumer"), topic or settings.dlq_topic,
                  reason=reason)


def letter_json(letter: DeadLetter) -> dict[str, Any]:
    topic, partition, offset = letter.source
    return {"partition": letter.partition, "offset": letter.offset,
            "time": letter.timestamp.isoformat() if letter.timestamp else None,
            "reason": letter.reason, "detail": letter.detail,
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "key": letter.key_text(), "size": letter.original_size,
            "truncated": letter.truncated, "replayed": letter.replayed}


def letter_line(letter: DeadLetter) -> str:
    topic, partition, offset = letter.source
    when = letter.timestamp.isoformat(timespec="seconds") if letter.timestamp else "-"
    flags = "".join([" truncated" if letter.truncated else "",
                     " replayed" if letter.replayed else ""])
    return (f"{letter.partition}:{letter.offset:<8} {when}  {letter.reason:<15} "
            f"{topic}[{partition}]@{offset}  key={letter.key_text()}  "
            f"{letter.original_size}B{flags}")


@dlq_app.command("list")
def list_letters(
    topic: TopicOpt = None,
    reason: ReasonOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Dead letters in offset order: position, time, reason, source topic[partition]@offset,
    key and original size.

    Example: phoenix-resources dlq list --reason malformed-json --limit 20
    """
    settings = load_settings()
    shown = 0
    try:
        for letter in _letters(settings, topic, reason):
            typer.echo(json.dumps(letter_json(letter)) if as_json else letter_line(letter))
            shown += 1
            if limit is not None and shown >= limit:
                break
    except PhoenixError as e:
        raise fail(str(e)) from e
    if not as_json:
        typer.echo(f"{shown} dead letter(s)", err=True)


def encode(data: bytes | None, how: Encoding) -> str | None:
    if data is None:
        return None
    if how is Encoding.hex:
        return data.hex()
    if how is Encoding.base64:
        return base64.b64encode(data).decode()
    return data.decode("utf-8", "replace")


@dlq_app.command("show")
def show(
    offset: Annotated[str, typer.Argument(help="OFFSET or PARTITION:OFFSET.")],
    topic: TopicOpt = None,
    partition: PartitionOpt = 0,
    how: Annotated[Encoding, typer.Option("--as", help="How to print the payload and "
                                          "header values.")] = Encoding.text,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """One dead letter: its headers and payload (as text, hex or base64).

    Example: phoenix-resources dlq show 42 --as hex
    """
    from phoenix_resources.adapters.dlq_topic import find
    from phoenix_resources.adapters.records import header_bytes

    settings = load_settings()
    p, o = position(offset, partition)
    try:
        letter = find(settings.kafka_config("consumer"), topic or settings.dlq_topic, p, o)
    except PhoenixError as e:
        raise fail(str(e)) from e
    if letter is None:
        raise fail(f"no dead letter at {p}:{o}", EXIT_NOT_FOUND)
    headers = [(k, encode(None if v is None else header_bytes(v), how))
               for k, v in letter.headers]
    if as_json:
        typer.echo(json.dumps({**letter_json(letter), "headers": headers,
                               "value": encode(letter.value, how)}))
        return
    typer.echo(letter_line(letter))
    for name, value in headers:
        typer.echo(f"  {name}: {value}")
    typer.echo("")
    sys.stdout.write((encode(letter.value, how) or "") + "\n")


@dlq_app.command("replay")
def replay(
    offsets: Annotated[list[str] | None, typer.Argument(
        help="OFFSET or PARTITION:OFFSET of each dead letter to replay.", show_default=False)]
    = None,
    *,
    everything: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
    reason: ReasonOpt = None,
    topic: TopicOpt = None,
    partition: PartitionOpt = 0,
    force: Annotated[bool, typer.Option(
        "--force", help="Also replay dead letters of commands that had been replayed "
        "before (truncated ones never are).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress",
                                           help="A live count on stderr.")] = True,
) -> None:
    """Publish chosen dead letters to the commands topic again, with their original key
    and headers plus dlq.replayed. Choose by OFFSETS, --reason, or --all.

    Example: phoenix-resources dlq replay --reason unknown-schema
    """
    from phoenix_resources.adapters import kafka
    from phoenix_resources.adapters.dlq_topic import Replayer, select

    if offsets and everything:
        raise fail("give offsets or --all, not both", EXIT_USAGE)
    if not (offsets or everything or reason):
        raise fail("choose dead letters: OFFSETS, --reason, or --all", EXIT_USAGE)
    settings = load_settings()
    wanted = {position(o, partition) for o in offsets or []}
    chosen = select(settings.kafka_config("consumer"), topic or settings.dlq_topic,
                    positions=wanted, reason=reason)
    replayer = Replayer(kafka.new_producer(settings), settings.commands_topic, force=force)
    try:
        with _ProgressLine(enabled=progress) as line:
            report = replayer.replay(chosen, progress=line.update)
    except PhoenixError as e:
        _summary(replayer.report)
        raise fail(f"{e} (stopped; commands are idempotent by command_id, replaying again "
                   f"is safe)") from e
    _summary(report)
    if report.seen == 0:
        raise fail("no dead letter matches", EXIT_NOT_FOUND)
    if report.refused:
        raise typer.Exit(EXIT_ERROR)


def _summary(report: ReplayReport) -> None:
    for (p, o), why in sorted(report.skipped.items()):
        typer.echo(f"skipped {p}:{o}: {why}", err=True)
    for (p, o), why in sorted(report.refused.items()):
        typer.echo(f"refused {p}:{o}: {why}", err=True)
    typer.echo(f"replayed {len(report.replayed)}, skipped {len(report.skipped)}, "
               f"refused {len(report.refused)}")


class _ProgressLine:
    """A live ``replayed / skipped / refused`` count on stderr (nothing when disabled)."""

    def __init__(self, *, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn

        self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                             console=Console(stderr=True), disable=not enabled,
                             transient=True)
        self._task = self._bar.add_task("replaying", total=None)

    def update(self, report: ReplayReport) -> None:
        self._bar.update(self._task, description=f"replayed {len(report.replayed)}, skipped "
                         f"{len(report.skipped)}, refused {len(report.refused)}")

    def __enter__(self) -> _ProgressLine:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)
