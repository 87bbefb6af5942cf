"""``WatchResources``: the events topic as a resumable stream, for one resource or all.

Guarantees:

* Each stream reads with its own **assigned** consumer (no group membership, nothing ever
  committed; the throw-away ``group.id`` librdkafka insists on is never joined), in a
  thread of its own, so a slow client slows only its own stream (gRPC flow control holds
  the next read until the previous message is sent).
* For one resource only its partition is read (:func:`.positions.partition_for`, the
  producers' murmur2) and only records keyed by its id are decoded.
* Order: a partition is read in offset order, and one resource's events are in one partition
  in version order (docs/architecture.md), so each resource's events arrive in version
  order. A relay repeat (same resource, version not above the last one sent on this stream)
  is dropped.
* Every event carries the position after it (``positions``); the starting position is
  sent first, as the initial metadata ``phoenix-position``. Resuming from a position reads
  exactly the records after it. A position older than what the topic still retains is
  refused (RES-001, with ``earliest_position`` in the ErrorInfo metadata) rather than
  silently skipping the events in between.
* An undecodable record on the events topic is logged and skipped (its position is still
  passed): one bad record never stops a stream.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from phoenix_resources import bootstrap
from phoenix_resources.adapters.kafka import text_headers
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.grpc.convert import event_message
from phoenix_resources.entrypoints.grpc.positions import (
    decode_position,
    encode_position,
    partition_for,
)
from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.errors import BrokerUnavailable, DecodeError
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from phoenix_resources.wire.events import EventCodec

log = logging.getLogger("phoenix_resources.grpc.watch")

READ_BATCH = 500
READ_WAIT_S = 0.25
"""Longest blocking read: also how soon a stream notices a shutdown or a cancelled client."""
_DEDUPE_MAX = 100_000
_TRACE = frozenset({"traceparent"})


@dataclass(frozen=True, slots=True)
class Start:
    """Where a stream starts: exactly one of these, or none (only new events)."""

    after_position: str | None = None
    since_ms: int | None = None
    from_beginning: bool = False


def _transient(error: Exception) -> bool:
    """Worth another try: the topic's partitions not known yet, or a retriable broker answer
    (e.g. NOT_LEADER_FOR_PARTITION right after the topic was created)."""
    if isinstance(error, BrokerUnavailable):
        return True
    cause = error.args[0] if error.args else None
    return isinstance(cause, KafkaError) and bool(cause.retriable() or cause.code() in (
        KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TRANSPORT, KafkaError._TIMED_OUT))


class EventTail:
    """The blocking half of one stream: a consumer assigned to the events topic's partitions
    (or the one partition of ``resource_id``). Not thread-safe: one thread drives it."""

    def __init__(self, settings: Settings, codec: EventCodec, resource_id: UUID | None,
                 timeout_s: float) -> None:
        self._settings = settings
        self._codec = codec
        self._topic = settings.events_topic
        self._key = None if resource_id is None else str(resource_id).encode()
        self.scope = "" if resource_id is None else str(resource_id)
        self._timeout = timeout_s
        self._consumer: Consumer | None = None
        self.offsets: dict[int, int] = {}
        """Partition → next offset to read: the stream's current position."""
        self._seen: OrderedDict[str, int] = OrderedDict()

    # --- positioning -------------------------------------------------------------------

    def open(self, start: Start) -> str:
        """Assign the partitions at the starting offsets; returns the starting position.
        Raises ``ApiProblem`` RES-001 for a position this stream cannot honour and
        :class:`BrokerUnavailable` when the broker cannot tell within the budget.

        Transient answers (a topic just created whose partitions or leaders are not known
        yet, a broker restarting) are retried with a fresh consumer until the budget ends."""
        deadline = time.monotonic() + self._timeout
        delay = 0.05
        while True:
            consumer = bootstrap.consumer(
                self._settings, f"phoenix-grpc-watch-{uuid.uuid4()}",
                **{"enable.auto.commit": False, "auto.offset.reset": "earliest",
                   "client.id": "phoenix-resources-grpc-watch"})
            try:
                self.offsets = self._position(consumer, start)
            except (KafkaException, BrokerUnavailable) as e:
                consumer.close()
                if not _transient(e) or time.monotonic() + delay > deadline:
                    if isinstance(e, BrokerUnavailable):
                        raise
                    raise BrokerUnavailable(f"cannot position on {self._topic}: {e}") from e
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except BaseException:
                consumer.close()
                raise
            else:
                break
        self._consumer = consumer
        consumer.assign([TopicPartition(self._topic, part, off)
                         for part, off in sorted(self.offsets.items())])
        return self.position()

    def _position(self, consumer: Consumer, start: Start) -> dict[int, int]:
        partitions = self._partitions(consumer)
        bounds = {part: consumer.get_watermark_offsets(TopicPartition(self._topic, part),
                                                       timeout=self._timeout)
                  for part in partitions}
        return self._starting_offsets(consumer, start, bounds)

    def _partitions(self, consumer: Consumer) -> list[int]:
        meta = consumer.list_topics(self._topic, timeout=self._timeout).topics.get(self._topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise BrokerUnavailable(f"the events topic {self._topic} is not available: "
                                    f"{'missing' if meta is None else meta.error}")
        every = sorted(meta.partitions)
        if self._key is None:
            return every
        return [partition_for(self._key, len(every))]

    def _starting_offsets(self, consumer: Consumer, start: Start,
                          bounds: dict[int, tuple[int, int]]) -> dict[int, int]:
        if start.after_position is not None:
            return self._resume(decode_position(start.after_position, self.scope), bounds)
        if start.from_beginning:
            return {part: low for part, (low, _) in bounds.items()}
        if start.since_ms is None:
            return {part: high for part, (_, high) in bounds.items()}
        found = consumer.offsets_for_times(
            [TopicPartition(self._topic, part, start.since_ms) for part in bounds],
            timeout=self._timeout)
        # No record that recent: the high watermark read before the lookup (later records
        # are then still read, none skipped).
        return {f.partition: f.offset if f.offset >= 0 else bounds[f.partition][1]
                for f in found}

    def _resume(self, token: dict[int, int],
                bounds: dict[int, tuple[int, int]]) -> dict[int, int]:
        if self._key is not None and not set(bounds) <= set(token):
            raise p.ApiProblem(p.INVALID_REQUEST, "the position does not cover this "
                               "resource's partition (was the topic repartitioned?)")
        offsets = {}
        for part, (low, high) in bounds.items():
            # A partition the token does not know was added since: all of it is new.
            off = token.get(part, low)
            if off > high:
                raise p.ApiProblem(p.INVALID_REQUEST, "the position is ahead of the events "
                                   f"topic (partition {part}: {off} > {high}); it was not "
                                   "issued for this topic")
            if off < low:
                raise p.ApiProblem(
                    p.INVALID_REQUEST, "the position is older than the events the topic "
                    f"still retains (partition {part}: {off} < {low}); events in between "
                    "are gone: start again (e.g. from earliest_position) and reconcile with "
                    "GetResource", earliest_position=encode_position(
                        self.scope, {q: lo for q, (lo, _) in bounds.items()}))
            offsets[part] = off
        return offsets

    # --- reading -----------------------------------------------------------------------

    def position(self) -> str:
        return encode_position(self.scope, self.offsets)

    def read(self) -> list[pb.ResourceEvent]:
        """The next events (up to :data:`READ_BATCH`, waiting up to :data:`READ_WAIT_S`),
        each with the position after it. Raises :class:`BrokerUnavailable` on a fatal
        consumer error."""
        assert self._consumer is not None, "open() first"
        return list(self._events(self._consumer.consume(READ_BATCH, timeout=READ_WAIT_S)))

    def _events(self, messages: list[Message]) -> Iterator[pb.ResourceEvent]:
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise BrokerUnavailable(f"event reader failed: {err.str()}")
                log.warning("event reader error (retried by the client): %s", err.str())
                continue
            part, offset = msg.partition(), msg.offset()
            assert part is not None, "a consumed record has a partition"
            assert offset is not None, "a consumed record has an offset"
            self.offsets[part] = offset + 1
            value = msg.value()
            if value is None or (self._key is not None and msg.key() != self._key):
                continue
            try:
                event = self._codec.decode_event(value)
            except DecodeError as e:
                log.warning("skipping an undecodable event record",
                            extra={"partition": part, "offset": offset, "reason": e.reason})
                continue
            if self._repeat(str(event.resource_id), event.version):
                continue
            yield event_message(event, self.position(),
                                text_headers(msg, _TRACE).get("traceparent"))

    def _repeat(self, rid: str, version: int) -> bool:
        last = self._seen.get(rid)
        if last is not None and version <= last:
            return True
        self._seen[rid] = version
        self._seen.move_to_end(rid)
        if len(self._seen) > _DEDUPE_MAX:
            self._seen.popitem(last=False)
        return False

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
