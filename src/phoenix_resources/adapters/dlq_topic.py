"""Operating on a DLQ topic: read the dead letters back, and replay chosen ones.

Reading never joins a consumer group or commits anything: it assigns the partitions and
reads what the topic holds when the read starts (up to each partition's high watermark), so
an operator's ``list`` never moves anybody's offsets and always ends.

A replay publishes the original key, value and headers (without the ``dlq.*`` and
``__connect.errors.*`` ones) to the commands topic, plus ``dlq.replayed``. A replayed command
that fails again is dead-lettered again — once: ``replay`` skips dead letters whose original
carried ``dlq.replayed`` unless forced, and never replays a truncated one (its value is not
the original). Within one replay, records keep their DLQ order per key.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from phoenix_resources.adapters.dlq import REPLAYED, DeadLetter
from phoenix_resources.adapters.publish import publish_all
from phoenix_resources.adapters.records import OutgoingRecord
from phoenix_resources.errors import (
    BrokerFatal,
    BrokerUnavailable,
    ConfigurationError,
    RecordRefused,
)

Position = tuple[int, int]
"""(partition, offset) of a dead letter."""


def read(common: dict[str, Any], topic: str, *, partitions: Iterable[int] | None = None,
         start: int | None = None, stall_timeout: float = 15.0) -> Iterator[DeadLetter]:
    """The dead letters of ``topic`` present when the call starts, in offset order within
    each partition. ``start`` skips offsets below it. Raises :class:`BrokerUnavailable` when
    the broker stops answering for ``stall_timeout`` seconds."""
    consumer = Consumer({**common, "group.id": f"phoenix-dlq-reader-{uuid.uuid4()}",
                         "enable.auto.commit": False, "enable.auto.offset.store": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": True,
                         "client.id": "phoenix-resources-dlq",
                         "logger": logging.getLogger("phoenix_resources.librdkafka")})
    try:
        ends = _assign(consumer, topic, partitions, start, stall_timeout)
        deadline = time.monotonic() + stall_timeout
        while ends:
            msg = consumer.poll(0.5)
            if msg is None:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(f"reading {topic} stalled for {stall_timeout:g}s")
                continue
            deadline = time.monotonic() + stall_timeout
            partition = msg.partition() or 0
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    ends.pop(partition, None)
                elif err.fatal():
                    raise BrokerFatal(f"reading {topic}: {err.str()}")
                continue  # transient consumer errors are retried by the client
            end = ends.get(partition)
            offset = msg.offset() or 0
            if end is None or offset >= end:
                ends.pop(partition, None)
                continue
            yield DeadLetter.from_message(msg)
            if offset >= end - 1:
                ends.pop(partition, None)
    finally:
        consumer.close()


def _assign(consumer: Consumer, topic: str, partitions: Iterable[int] | None,
            start: int | None, timeout: float) -> dict[int, int]:
    """Assign each wanted partition at its first offset to read; returns partition → the
    high watermark (one past the last offset to read), for partitions with anything to read."""
    try:
        meta = consumer.list_topics(topic, timeout=timeout)
        found = meta.topics.get(topic)
        if found is None or found.error is not None:
            if found is not None and found.error.code() not in (
                    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_EXCEPTION):
                raise BrokerUnavailable(f"topic {topic}: {found.error.str()}")
            raise ConfigurationError(f"topic {topic} does not exist")
        wanted = sorted(found.partitions if partitions is None
                        else set(partitions) & set(found.partitions))
        ends: dict[int, int] = {}
        assignment = []
        for p in wanted:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                       timeout=timeout)
            first = max(low, start or 0)
            if first < high:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, first))
    except KafkaException as e:
        raise BrokerUnavailable(f"reading {topic}: {e}") from e
    if assignment:
        consumer.assign(assignment)
    return ends


def find(common: dict[str, Any], topic: str, partition: int, offset: int,
         stall_timeout: float = 15.0) -> DeadLetter | None:
    """The dead letter at ``partition``/``offset``, or ``None`` when there is none (never
    written, or removed by retention)."""
    for letter in read(common, topic, partitions=[partition], start=offset,
                       stall_timeout=stall_timeout):
        return letter if letter.offset == offset else None
    return None


def select(common: dict[str, Any], topic: str, *, positions: Collection[Position] = (),
           reason: str | None = None, stall_timeout: float = 15.0) -> Iterator[DeadLetter]:
    """The dead letters to replay: those at ``positions`` (every one when empty) whose
    ``dlq.reason`` is ``reason`` (any when ``None``), in offset order per partition. With
    positions, only their partitions are read, from the lowest offset named."""
    wanted = set(positions)
    start = min(o for _, o in wanted) if wanted else None
    partitions = sorted({p for p, _ in wanted}) if wanted else None
    for letter in read(common, topic, partitions=partitions, start=start,
                       stall_timeout=stall_timeout):
        if ((not wanted or (letter.partition, letter.offset) in wanted)
                and (reason is None or letter.reason == reason)):
            yield letter


def replay_record(letter: DeadLetter, commands_topic: str, now: datetime) -> OutgoingRecord:
    """The original command as it was published, marked ``dlq.replayed``."""
    mark = f"{letter.partition}:{letter.offset}@{now.isoformat(timespec='seconds')}"
    return OutgoingRecord(commands_topic, letter.key, letter.value,
                          [*letter.original_headers(), (REPLAYED, mark.encode())])


def skip_reason(letter: DeadLetter, *, force: bool) -> str | None:
    """Why ``letter`` must not be replayed, or ``None``."""
    if letter.truncated:
        return "truncated: the original value was not kept"
    if letter.replayed and not force:
        return "already replayed once and failed again (use --force)"
    return None


@dataclass
class ReplayReport:
    replayed: list[Position] = field(default_factory=list)
    skipped: dict[Position, str] = field(default_factory=dict)
    refused: dict[Position, str] = field(default_factory=dict)

    @property
    def seen(self) -> int:
        return len(self.replayed) + len(self.skipped) + len(self.refused)


class Replayer:
    """Replays dead letters in chunks; :attr:`report` holds what was done so far, also when
    a chunk fails with :class:`BrokerUnavailable` (that chunk may then be partly published:
    commands are idempotent by ``command_id``, so replaying it again is safe)."""

    def __init__(self, producer: Producer, commands_topic: str, *, force: bool = False,
                 chunk: int = 500, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 ) -> None:
        self.producer = producer
        self.commands_topic = commands_topic
        self.force = force
        self.chunk = chunk
        self.clock = clock
        self.report = ReplayReport()

    def replay(self, letters: Iterable[DeadLetter],
               progress: Callable[[ReplayReport], None] | None = None) -> ReplayReport:
        pending: list[DeadLetter] = []
        for letter in letters:
            why = skip_reason(letter, force=self.force)
            if why is not None:
                self.report.skipped[(letter.partition, letter.offset)] = why
                continue
            pending.append(letter)
            if len(pending) >= self.chunk:
                self._send(pending)
                pending = []
                if progress is not None:
                    progress(self.report)
        if pending:
            self._send(pending)
        if progress is not None:
            progress(self.report)
        return self.report

    def _send(self, letters: list[DeadLetter]) -> None:
        now = self.clock()
        records = [replay_record(letter, self.commands_topic, now) for letter in letters]
        positions = [(letter.partition, letter.offset) for letter in letters]
        try:
            publish_all(self.producer, records, keep_key_order=True)
        except RecordRefused as e:
            self.report.replayed += [positions[i] for i in sorted(e.delivered)]
            for i, why in e.refused.items():
                self.report.refused[positions[i]] = why
            for i in e.held:
                self.report.refused[positions[i]] = "held behind a refused record of its key"
            return
        self.report.replayed += positions
