"""The worker: Kafka commands → one PostgreSQL transaction per batch → offsets.

Guarantees (each has a test against the real broker and database):

* offsets are stored only after the batch's database commit and after its dead letters are
  acknowledged by the broker — a crash anywhere before that means redelivery, and
  redelivery is absorbed by the ``processed_commands`` primary key;
* bytes that are not a command go to the DLQ with the reason; they never stop the worker;
* a transient fault (PostgreSQL or Kafka unavailable, a race with another writer) pauses
  the assigned partitions and retries the same batch with exponential backoff and jitter,
  polling meanwhile so the consumer keeps its group membership; good commands are never
  dead-lettered because of an outage;
* on revoke, the in-flight batch's messages of revoked partitions are abandoned (the next
  owner gets them from the last committed offset) and nothing past the last database
  commit is committed;
* a consumer that stays out of its group for ``consumer_replace_after_s`` is closed and
  replaced between two batches; the new one resumes at the last committed offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from psycopg_pool import ConnectionPool
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    wait_random_exponential,
)

from phoenix_resources import bootstrap
from phoenix_resources.adapters.dlq import DeadLetters
from phoenix_resources.adapters.group_membership import GroupMembership
from phoenix_resources.adapters.kafka import partition_key
from phoenix_resources.adapters.records import producer_max_bytes
from phoenix_resources.config import Settings
from phoenix_resources.errors import BrokerFatal, DecodeError, TransientError
from phoenix_resources.observability import Metrics, log_context
from phoenix_resources.observability.tracing import Tracing
from phoenix_resources.observability.worker_watch import BatchWatch, WorkerWatch
from phoenix_resources.services.isolate import Isolation
from phoenix_resources.services.ports import BatchUnit, Incoming
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.headers import command_headers

log = logging.getLogger("phoenix_resources.worker")

HeaderList = list[tuple[str, bytes | None]] | None

POLL_SLICE_S = 0.2
"""While waiting out a fault, poll at least this often (keeps rebalances and heartbeats
served; far below max.poll.interval.ms)."""

CLOSE_WAIT_S = 10.0
"""How long a replaced consumer gets to leave its group before the new one subscribes; its
close goes on in the background after that."""


@dataclass
class _InFlight:
    """A batch being applied. Decoded once (inside the retry loop: decoding may wait for the
    registry); its dead letters are sent after the database work, before offsets."""

    messages: list[Message]
    dead: DeadLetters
    watch: BatchWatch
    isolation: Isolation | None = None
    by_command: dict[UUID, Message] = field(default_factory=dict)
    counted: bool = False

    def drop_partitions(self, partitions: set[int]) -> None:
        """Abandon what came from ``partitions``: their next owner will redeliver it."""
        self.messages = [m for m in self.messages if partition_key(m)[1] not in partitions]
        self.dead.drop_partitions(partitions)
        if self.isolation is not None:
            self.isolation.drop_partitions(partitions)


class Worker:
    def __init__(self, settings: Settings, *, consumer: Consumer, producer: Producer,
                 codec: CommandCodec, unit_factory: Callable[[], BatchUnit],
                 metrics: Metrics, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic,
                 prepare: Callable[[], None] | None = None,
                 tracing: Tracing | None = None,
                 membership: GroupMembership | None = None,
                 new_consumer: Callable[[], Consumer] | None = None) -> None:
        """``prepare`` runs before the first consume (e.g. looking up the event schemas in
        the registry); transient failures of it are waited out, others stop the worker.
        ``membership`` follows the consumer's group state; with ``new_consumer`` the worker
        replaces a consumer out of its group for ``consumer_replace_after_s``."""
        self.settings = settings
        self._prepare = prepare
        self.consumer = consumer
        self.producer = producer
        self.codec = codec
        self.unit_factory = unit_factory
        self.metrics = metrics
        self.clock = clock
        self._dlq_max_bytes = producer_max_bytes(settings.kafka_options)
        self.monotonic = monotonic
        self.assignment: set[tuple[str, int]] = set()
        self.paused = False
        self._in_flight: _InFlight | None = None
        self._stop = threading.Event()
        self.watch = WorkerWatch(metrics, consumer, tracing=tracing, monotonic=monotonic,
                                 stuck_after_s=settings.stuck_after_s, membership=membership)
        self._membership = membership
        self._new_consumer = new_consumer
        self._replaced_at = -float("inf")
        self._retired: Consumer | None = None
        """The consumer being replaced (see :meth:`_replaced`)."""

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Consume until :meth:`stop`; then commit what was stored and leave the group."""
        if self._prepare is not None and not self._prepared():
            self.consumer.close()
            return
        if self._membership is not None:
            self._membership.joining()
        self._subscribe()
        log.info("worker started", extra={"topic": self.settings.commands_topic,
                                          "group": self.settings.consumer_group})
        try:
            while not self.stopping:
                self.run_once()
        finally:
            self._close()

    def _prepared(self) -> bool:
        """Run ``prepare`` until it succeeds (True) or the worker is stopped (False)."""
        assert self._prepare is not None
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(TransientError),
                wait=wait_random_exponential(multiplier=self.settings.retry_initial_s,
                                             max=self.settings.retry_max_s),
                stop=lambda _: self.stopping, sleep=self._sleep, reraise=True,
                before_sleep=lambda s: log.warning("not ready to consume yet; retrying", extra={
                    "error": str(s.outcome.exception() if s.outcome else "")[:300]}),
            ):
                with attempt:
                    self._prepare()
        except TransientError:
            return False
        return True

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _subscribe(self) -> None:
        self.consumer.subscribe([self.settings.commands_topic], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)

    def run_once(self) -> None:
        if self._replacement_due():
            self._replace_consumer()
        messages = self.consumer.consume(self.settings.batch_size,
                                         timeout=self.settings.batch_max_wait_ms / 1000)
        good = [m for m in messages if not self._is_error(m)]
        self.watch.polled()
        if good:
            self.handle(good)

    # --- a consumer out of its group -----------------------------------------------------------

    def _replacement_due(self) -> bool:
        limit = self.settings.consumer_replace_after_s
        if self._membership is None or self._new_consumer is None or not limit:
            return False
        return (self._membership.out_of_group_s() > limit
                and self.monotonic() - self._replaced_at > limit)

    def _replace_consumer(self) -> None:
        """Close the consumer and subscribe a new one, between two batches (nothing in flight).

        The old consumer commits what it stored as it closes, if it still can: every stored
        offset follows a database commit. Whatever it could not commit is redelivered to the
        new one and absorbed as duplicates. Its rebalance callbacks are ignored from now on."""
        assert self._membership is not None
        assert self._new_consumer is not None
        log.warning("consumer out of its group for too long; replacing it", extra={
            "seconds_out_of_group": round(self._membership.out_of_group_s(), 1),
            "group_state": self._membership.state,
            "limit_s": self.settings.consumer_replace_after_s})
        self._replaced_at = self.monotonic()
        self._retired = self.consumer
        closing = threading.Thread(target=_close_quietly, args=(self._retired,), daemon=True,
                                   name="replaced-consumer-close")
        closing.start()
        closing.join(CLOSE_WAIT_S)
        held, self.assignment = self.assignment, set()
        self.consumer = self._new_consumer()
        if held:
            self.watch.rebalanced("lost", held, self.assignment)
        self.watch.use(self.consumer)
        self.metrics.consumer_replacements.inc()
        self._subscribe()

    def _close(self) -> None:
        try:
            self.consumer.commit(asynchronous=False)
        except Exception as e:
            log.debug("final commit skipped", extra={"reason": str(e)})
        self.consumer.close()
        self.producer.flush(5)
        log.info("worker stopped")

    # --- one batch ---------------------------------------------------------------------------

    def handle(self, messages: Sequence[Message]) -> None:
        batch = _InFlight(list(messages), DeadLetters(self.settings.dlq_topic,
                                                      self._dlq_max_bytes),
                          self.watch.batch(messages))
        self._in_flight = batch
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(TransientError),
                wait=wait_random_exponential(multiplier=self.settings.retry_initial_s,
                                             max=self.settings.retry_max_s),
                stop=lambda _: self.stopping,
                sleep=self._wait_out_fault,
                before_sleep=self._on_fault,
                reraise=True,
            ):
                with attempt:
                    self._advance(batch)
        except TransientError:
            log.warning("stopping with an unfinished batch; it will be redelivered",
                        extra={"messages": len(batch.messages)})
            batch.watch.abandoned()
            return
        finally:
            self._in_flight = None
        self._store_offsets(batch.messages)
        self._resume()
        batch.watch.finished(batch.dead)

    def _advance(self, batch: _InFlight) -> None:
        """One attempt: decode (once), apply what is left, then dead-letter; each step is
        skipped when an earlier attempt finished it."""
        if batch.isolation is None:
            incoming = self._decode(batch)
            batch.watch.decoded(incoming)
            batch.isolation = Isolation(incoming, oldest=self._oldest_accepted())
        if not batch.isolation.done:
            with batch.watch.span_of("apply"):
                batch.isolation.run(self.unit_factory, self.clock())
        if not batch.counted:
            self._count(batch, batch.isolation)
            batch.counted = True
        if not batch.dead.done:
            with batch.watch.span_of("dead-letter"):
                batch.dead.send(self.producer)

    def _oldest_accepted(self) -> datetime:
        """Commands issued before this are refused (CMD-008): their dedupe rows may be gone."""
        return self.clock() - timedelta(hours=self.settings.processed_retention_hours)

    def _decode(self, batch: _InFlight) -> list[Incoming]:
        incoming: list[Incoming] = []
        invalid_headers = self.metrics.invalid_headers
        for m in batch.messages:
            _, partition = partition_key(m)
            # A consumed record's headers are a list of pairs (dicts are a producer's input).
            headers = command_headers(cast(HeaderList, m.headers()))
            for name in headers.invalid:
                # Dropped, never stored truncated: the command itself is still processed.
                invalid_headers.labels(name).inc()
            try:
                command = self.codec.decode(m.value(), headers.content_type)
            except DecodeError as e:
                self._dead_letter(batch, m, e.reason, e.detail, e)
                continue
            key_matches = m.key() == str(command.resource_id).encode()
            batch.by_command.setdefault(command.command_id, m)
            incoming.append(Incoming(command, partition, m.offset() or 0, headers.traceparent,
                                     key_matches))
        return incoming

    def _dead_letter(self, batch: _InFlight, m: Message, reason: str, detail: str,
                     error: BaseException | None = None) -> None:
        batch.dead.add(partition_key(m)[1], m, reason, detail, error)
        log.warning("dead-lettered", extra={"reason": reason, "detail": detail[:300],
                                            "topic": m.topic(), "partition": m.partition(),
                                            "offset": m.offset()})

    def _count(self, batch: _InFlight, isolation: Isolation) -> None:
        report = isolation.report
        for item, error in isolation.unparkable:
            # Even the parking lot refused it: the DLQ is the last place that keeps it.
            self._dead_letter(batch, batch.by_command[item.command.command_id],
                              "unparkable", error)
        batch.watch.counted(report)
        if report.duplicates:
            log.info("duplicates absorbed", extra={
                "count": report.duplicates,
                "command_ids": [str(c) for c in report.duplicate_ids[:10]]})
        if report.parked:
            with log_context(topic=self.settings.commands_topic):
                log.warning("commands parked", extra={
                    "count": report.parked, "splits": isolation.splits,
                    "command_ids": [str(c) for c in report.parked_ids[:10]]})

    # --- offsets -----------------------------------------------------------------------------

    def _store_offsets(self, messages: Sequence[Message]) -> None:
        """Called only after the database commit (and DLQ acknowledgements)."""
        highest: dict[tuple[str, int], int] = {}
        for m in messages:
            key = partition_key(m)
            offset = m.offset() or 0
            if key in self.assignment and offset >= highest.get(key, -1):
                highest[key] = offset
        if highest:
            self.consumer.store_offsets(offsets=[TopicPartition(t, p, o + 1)
                                                 for (t, p), o in highest.items()])

    # --- faults ------------------------------------------------------------------------------

    def _on_fault(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.metrics.transient_errors.labels("worker", type(exc).__name__).inc()
        log.warning("transient fault; pausing and retrying the batch", extra={
            "error": str(exc)[:300], "kind": type(exc).__name__,
            "attempt": state.attempt_number,
            "retry_in_s": round(state.next_action.sleep, 2) if state.next_action else None})
        self._pause()

    def _wait_out_fault(self, seconds: float) -> None:
        """Sleep by polling: rebalance callbacks run, and membership is kept."""
        deadline = self.monotonic() + seconds
        while not self.stopping and self.monotonic() < deadline:
            message = self.consumer.poll(min(POLL_SLICE_S, max(0.0, deadline - self.monotonic())))
            if message is not None and not self._is_error(message):
                # Paused partitions should yield nothing; if one slips through, rewind so it
                # is fetched again after resume instead of being skipped.
                topic, partition = partition_key(message)
                self.consumer.seek(TopicPartition(topic, partition, message.offset() or 0))

    def _pause(self) -> None:
        if not self.paused and self.assignment:
            self.consumer.pause([TopicPartition(t, p) for t, p in self.assignment])
            self.paused = True
            self.watch.paused()

    def _resume(self) -> None:
        if self.paused:
            if self.assignment:
                self.consumer.resume([TopicPartition(t, p) for t, p in self.assignment])
            self.paused = False
            self.watch.resumed()
            log.info("resumed after fault")

    def _is_error(self, message: Message) -> bool:
        err = message.error()
        if err is None:
            return False
        if err.fatal():
            raise BrokerFatal(f"fatal consumer error: {err}")
        level = logging.DEBUG if err.code() == KafkaError._PARTITION_EOF else logging.WARNING
        log.log(level, "consumer error", extra={"error": str(err)})
        return True

    # --- rebalance callbacks (run inside consume/poll, on this thread) ------------------------

    def _replaced(self, consumer: Consumer) -> bool:
        """A consumer replaced earlier, or the one being replaced now (it may still be
        closing in the background): its rebalances are no longer the worker's."""
        return consumer is not self.consumer or consumer is self._retired

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._replaced(consumer):
            return
        added = {(tp.topic, tp.partition) for tp in partitions}
        self.assignment |= added
        self.watch.rebalanced("assigned", added, self.assignment)
        if self.paused and partitions:
            consumer.pause(partitions)
        log.info("partitions assigned", extra={"partitions": sorted(p for _, p in added)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._replaced(consumer):
            return
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        if self._in_flight is not None:
            self._in_flight.drop_partitions({p for _, p in revoked})
        try:
            # Offsets stored so far all follow a database commit; commit them now so the
            # next owner starts right after them.
            consumer.commit(asynchronous=False)
        except Exception as e:
            log.debug("commit on revoke skipped", extra={"reason": str(e)})
        self.assignment -= revoked
        self.watch.rebalanced("revoked", revoked, self.assignment)
        log.info("partitions revoked", extra={"partitions": sorted(p for _, p in revoked)})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._replaced(consumer):
            return
        lost = {(tp.topic, tp.partition) for tp in partitions}
        if self._in_flight is not None:
            self._in_flight.drop_partitions({p for _, p in lost})
        self.assignment -= lost
        self.watch.rebalanced("lost", lost, self.assignment)
        log.warning("partitions lost", extra={"partitions": sorted(p for _, p in lost)})

    def readiness(self) -> dict[str, Any]:
        """``ok`` (joined, in its group, not stuck), assigned partitions, paused, lag (see
        WorkerWatch)."""
        return self.watch.readiness()


def _close_quietly(consumer: Consumer) -> None:
    try:
        consumer.close()
    except Exception as e:  # a consumer out of its group may fail to leave it: that is fine
        log.info("replaced consumer closed with an error", extra={"error": str(e)[:300]})


def build_worker(settings: Settings, metrics: Metrics,
                 tracing: Tracing | None = None) -> tuple[Worker, ConnectionPool]:
    """A worker assembled from bootstrap's ingredients, and its pool (open the pool before
    :meth:`Worker.run`, close it after)."""
    parts = bootstrap.worker_parts(settings)
    worker = Worker(settings, consumer=parts.consumer, producer=parts.producer,
                    codec=parts.codec, unit_factory=parts.unit_factory, metrics=metrics,
                    prepare=parts.events.prepare, tracing=tracing,
                    membership=parts.membership, new_consumer=parts.new_consumer)
    return worker, parts.pool
