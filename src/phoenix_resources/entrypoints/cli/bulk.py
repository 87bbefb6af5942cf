"""``phoenix-resources send --file``: a JSON-lines file of commands, sent in one go.

Every line is enqueued and the producer is flushed once at the end. A bad line or a failed
delivery never stops the others: each is reported on stderr as ``line N: reason`` and
counted in the :class:`BulkSummary` (the ``send`` command exits 1 when any line failed).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.cli.common import fail
from phoenix_resources.errors import CommandInvalid, DecodeError, DeliveryFailed, PhoenixError

if TYPE_CHECKING:
    from phoenix_resources.client import Sent


@dataclass
class BulkSummary:
    lines: int = 0
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else float(self.sent)

    def to_json(self) -> dict[str, Any]:
        return {"lines": self.lines, "sent": self.sent, "failed": self.failed,
                "seconds": round(self.seconds, 3), "rate": round(self.rate, 1)}


def command_from_line(text: str) -> Any:
    """One JSON line → a command; missing ``command_id``/``issued_at`` (and a CREATE's
    ``resource_id``) are generated. Raises :class:`DecodeError` with the reason."""
    from phoenix_resources.wire.commands import command_from_record

    try:
        record = json.loads(text)
    except ValueError as e:
        raise DecodeError("malformed-json", str(e)) from e
    if not isinstance(record, dict):
        raise DecodeError("malformed-json", "a command must be a JSON object")
    # Not setdefault: it would build the default (a uuid4, a clock read) on every line.
    if "command_id" not in record:
        record["command_id"] = uuid.uuid4()
    if "issued_at" not in record:
        record["issued_at"] = datetime.now(UTC)
    if "resource_id" not in record and record.get("command_type") == "CREATE":
        record["resource_id"] = uuid.uuid4()
    return command_from_record(record)


def _lines(source: TextIO) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(source, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield number, text


def send_file(settings: Settings, path: Path, *, progress: bool) -> BulkSummary:
    """Send every command of a JSON-lines file: enqueue all, flush once at the end.

    Bad lines and failed deliveries are reported on stderr as ``line N: reason``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from phoenix_resources.client import CommandPublisher

    summary = BulkSummary()

    def report(number: int, reason: str) -> None:
        summary.failed += 1
        summary.errors.append((number, reason))
        # Plain writes: one unwrapped line per error, for grep (the live bar reprints below).
        sys.stderr.write(f"line {number}: {reason}\n")

    total = None if str(path) == "-" else _count_lines(path)
    bar = Progress(TextColumn("sending"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:>8.0f}/s"), console=Console(stderr=True),
                   disable=not progress, transient=False)
    started = time.monotonic()
    try:
        with (CommandPublisher(settings) as publisher, bar,
              (sys.stdin if str(path) == "-" else path.open(encoding="utf-8")) as source):
            publisher.check_topic()
            task = bar.add_task("send", total=total, rate=0.0)

            def delivered_for(number: int) -> Any:
                def done(_sent: Sent, err: PhoenixError | None) -> None:
                    if err is None:
                        summary.sent += 1
                    else:
                        report(number, f"not delivered: {err}")
                return done

            for number, text in _lines(source):
                summary.lines += 1
                try:
                    publisher.submit(command_from_line(text), delivered_for(number))
                except (DecodeError, CommandInvalid) as e:
                    report(number, str(e))
                if summary.lines % 1000 == 0:
                    publisher.poll(0)
                    _advance(bar, task, summary, number, started)
            if publisher.flush() > 0:
                raise DeliveryFailed("some commands had no delivery report in time")
            _advance(bar, task, summary, total or summary.lines, started)
    except OSError as e:
        raise fail(f"cannot read {path}: {e}") from e
    summary.seconds = time.monotonic() - started
    summary.errors.sort()
    return summary


def _advance(bar: Any, task: Any, summary: BulkSummary, line: int, started: float) -> None:
    elapsed = time.monotonic() - started
    bar.update(task, completed=line, rate=summary.sent / elapsed if elapsed > 0 else 0.0)


def _count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None  # reported when opened for reading
