"""``phoenix-resources send --file``: a JSON-lines file of commands, sent in one go.

Every line is enqueued and the producer is flushed once at the end. A bad line or a failed
delivery never stops the others: each is reported on stderr as ``line N: reason`` and
counted in the :class:`BulkSummary` (the ``send`` command exits 1 when any line failed).
A broker that stops answering does stop the send (:class:`BrokerLink`): one line says so,
naming the lines left unconfirmed, and ``send`` exits 6.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from uuid import UUID

from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.cli.common import EXIT_UNREACHABLE, fail
from phoenix_resources.entrypoints.cli.reach import Reach
from phoenix_resources.errors import (
    BrokerUnreachable,
    CommandInvalid,
    DecodeError,
    DeliveryFailed,
    PhoenixError,
)

if TYPE_CHECKING:
    from confluent_kafka import KafkaError

    from phoenix_resources.client import CommandPublisher, Sent


@dataclass
class BulkSummary:
    lines: int = 0
    sent: int = 0
    failed: int = 0
    """Lines not delivered: bad, refused, or (after the broker was lost) unconfirmed."""
    seconds: float = 0.0
    errors: list[tuple[int, str]] = field(default_factory=list)
    unconfirmed: int = 0
    """Lines submitted but not acknowledged when the broker was lost (counted in failed)."""
    unreachable: str | None = None
    """Why the send stopped early: the broker could not be reached any more."""

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else float(self.sent)

    def to_json(self) -> dict[str, Any]:
        return {"lines": self.lines, "sent": self.sent, "failed": self.failed,
                "unconfirmed": self.unconfirmed, "seconds": round(self.seconds, 3),
                "rate": round(self.rate, 1)}


def command_from_line(text: str) -> Any:
    """One JSON line → a command; missing ``command_id``/``issued_at`` (and a CREATE's
    ``resource_id``) are generated. Read and checked exactly as the worker reads a JSON
    command (``wire.commands.json_record``, then the one validator): raises
    :class:`DecodeError` with the reason the worker would dead-letter the line with."""
    from phoenix_resources.client.commands import resource_id_for
    from phoenix_resources.wire.commands import command_from_record, json_record

    record = json_record(text)
    # Not setdefault: it would build the default (a uuid4, a clock read) on every line.
    if "command_id" not in record:
        record["command_id"] = uuid.uuid4()
    if "issued_at" not in record:
        record["issued_at"] = datetime.now(UTC)
    if "resource_id" not in record and record.get("command_type") == "CREATE":
        # Derived from the command id, as the client library does: re-running the file (or
        # a line) with its command ids is then the very same commands.
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            record["resource_id"] = resource_id_for(UUID(str(record["command_id"])))
    return command_from_record(record)


def _lines(source: TextIO) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(source, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield number, text


def send_file(settings: Settings, path: Path, *, progress: bool,
              reach: Reach | None = None) -> BulkSummary:
    """Send every command of a JSON-lines file: enqueue all, flush once at the end.

    Bad lines and failed deliveries are reported on stderr as ``line N: reason``. A broker
    that cannot be reached when the send starts exits 6 at once; one lost on the way stops
    the send, and the summary's :attr:`BulkSummary.unreachable` says so, with the lines whose
    delivery is unconfirmed (not reported one by one)."""
    from phoenix_resources.client import CommandPublisher

    reach = reach or Reach()
    summary = BulkSummary()
    link = BrokerLink(reach.seconds)

    def report(number: int, reason: str) -> None:
        summary.failed += 1
        summary.errors.append((number, reason))
        # Plain writes: one unwrapped line per error, for grep (the live bar reprints below).
        sys.stderr.write(f"line {number}: {reason}\n")

    total = None if str(path) == "-" else _count_lines(path)
    bar = _progress_bar(progress)
    options = {**reach.kafka_options("producer", settings), "error_cb": link.on_client_error}
    started = time.monotonic()
    try:
        with (CommandPublisher(settings, producer_options=options) as publisher, bar,
              (sys.stdin if str(path) == "-" else path.open(encoding="utf-8")) as source):
            publisher.check_topic(reach.seconds)  # unreachable: exit 6, nothing read
            task = bar.add_task("send", total=total, rate=0.0)

            def delivered_for(number: int) -> Any:
                link.sent(number)

                def done(_sent: Sent, err: PhoenixError | None) -> None:
                    if link.settled(number, delivered=err is None):
                        if err is None:
                            summary.sent += 1
                        else:
                            report(number, f"not delivered: {err}")
                return done

            try:
                for number, text in _lines(source):
                    summary.lines += 1
                    try:
                        publisher.submit(command_from_line(text), delivered_for(number))
                    except (DecodeError, CommandInvalid) as e:
                        report(number, str(e))
                    if summary.lines % 1000 == 0:
                        publisher.poll(0)
                        link.check(publisher)
                        _advance(bar, task, summary, number, started)
                link.drain(publisher)
            except BrokerUnreachable as e:
                link.stop(publisher, e, summary)
            _advance(bar, task, summary, total or summary.lines, started)
    except BrokerUnreachable as e:  # printed once the clients are closed (and have logged)
        raise fail(str(e), EXIT_UNREACHABLE) from e
    except OSError as e:
        raise fail(f"cannot read {path}: {e}") from e
    summary.seconds = time.monotonic() - started
    summary.errors.sort()
    return summary


class BrokerLink:
    """Notices a broker lost while a file is sent: librdkafka reports every broker down, or
    no delivery report arrived for the connection timeout while records wait. Either way a
    broker is asked (``check_connection``); if none answers within the timeout,
    :class:`BrokerUnreachable` stops the send. Lines submitted and not yet acknowledged are
    :attr:`pending`; once the link is lost, their reports are no longer printed."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.pending: set[int] = set()
        self._clock = clock
        self._down = False
        self._lost = False
        self._progress_at = clock()

    def on_client_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (runs inside poll/flush)."""
        from confluent_kafka import KafkaError

        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._down = True

    def sent(self, number: int) -> None:
        if not self.pending:
            self._progress_at = self._clock()  # waiting starts with the first in flight
        self.pending.add(number)

    def settled(self, number: int, *, delivered: bool) -> bool:
        """Record line ``number``'s report; False when it is not to be counted (the link
        was lost and the record was dropped undelivered: it stays unconfirmed)."""
        self._progress_at = self._clock()
        if self._lost and not delivered:
            return False
        self.pending.discard(number)
        return True

    def check(self, publisher: CommandPublisher) -> None:
        """Ask a broker when one is suspected lost; :class:`BrokerUnreachable` if none
        answers."""
        stalled = bool(self.pending) and self._clock() - self._progress_at > self.seconds
        if self._down or stalled:
            self._down = False
            publisher.check_connection(self.seconds)
            self._progress_at = self._clock()

    def drain(self, publisher: CommandPublisher) -> None:
        """Wait for every delivery report, checking the link meanwhile. Past the delivery
        timeout (and a margin) without all reports: :class:`DeliveryFailed`."""
        deadline = self._clock() + publisher.delivery_timeout_s + 5.0
        while publisher.flush(0.5) > 0:
            self.check(publisher)
            if self._clock() > deadline:
                raise DeliveryFailed("some commands had no delivery report in time")

    def stop(self, publisher: CommandPublisher, error: BrokerUnreachable,
             summary: BulkSummary) -> None:
        """The link is lost: drop what waits (its reports are not printed) and put in
        ``summary`` the one line that says so, naming the lines left unconfirmed."""
        self._lost = True
        publisher.close(timeout=0)
        unconfirmed = sorted(self.pending)
        summary.unconfirmed = len(unconfirmed)
        summary.failed += len(unconfirmed)
        text = f"{error}; of {summary.lines} lines read, {summary.sent} were delivered"
        if unconfirmed:
            text += (f", {len(unconfirmed)} unconfirmed (lines {line_ranges(unconfirmed)}; "
                     "they may have arrived: resend them with their command_id)")
        summary.unreachable = text


def line_ranges(numbers: list[int], most: int = 8) -> str:
    """``1-3, 7, 9-12``: sorted line numbers as at most ``most`` ranges (then ``…``)."""
    ranges: list[tuple[int, int]] = []
    for n in numbers:
        if ranges and n == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], n)
        else:
            ranges.append((n, n))
    shown = [f"{a}-{b}" if b > a else f"{a}" for a, b in ranges[:most]]
    more = len(ranges) - most
    return ", ".join(shown) + (f", … ({more} more ranges)" if more > 0 else "")


def _progress_bar(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn("sending"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]:>8.0f}/s"), console=Console(stderr=True),
                    disable=not enabled, transient=False)


def _advance(bar: Any, task: Any, summary: BulkSummary, line: int, started: float) -> None:
    elapsed = time.monotonic() - started
    bar.update(task, completed=line, rate=summary.sent / elapsed if elapsed > 0 else 0.0)


def _count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None  # reported when opened for reading
