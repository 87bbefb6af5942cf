"""The worker: Kafka commands → one PostgreSQL transaction per batch → offsets.

The worker applies batches; its :class:`~.consumer_session.ConsumerSession` keeps the
consumer (subscription, rebalances, pause and resume, offsets, replacement, close).

Guarantees (each has a test against the real broker and database), and where each is kept:

* offsets are stored only after the batch's database commit and after its dead letters are
  acknowledged by the broker — a crash anywhere before that means redelivery, and
  redelivery is absorbed by the ``processed_commands`` primary key (:meth:`Worker.handle`
  stores them once :meth:`Worker._advance` has committed and dead-lettered; the session
  stores only for partitions still assigned);
* bytes that are not a command go to the DLQ with the reason; they never stop the worker
  (:meth:`Worker._decode`). Dead letters are sized to the DLQ topic as configured; one the
  topic still refuses holds its own partition only, offsets stored up to it, until it is
  delivered (``dead_letter_gate.DeadLetterGate``: :meth:`Worker.handle` stores what the gate
  allows, :meth:`Worker.run_once` lets it retry);
* a transient fault (PostgreSQL or Kafka unavailable, a race with another writer) pauses
  the assigned partitions and retries the same batch with exponential backoff and jitter,
  polling meanwhile so the consumer keeps its group membership; good commands are never
  dead-lettered because of an outage (the retry loop of :meth:`Worker.handle`, pausing in
  :meth:`Worker._on_fault`, waiting in ``ConsumerSession.wait``);
* on revoke, the in-flight batch's messages of revoked partitions are abandoned (the next
  owner gets them from the last committed offset) and nothing past the last database
  commit is committed (the session calls :meth:`Worker._abandon` first, then commits only
  offsets stored after a commit);
* a consumer that stays out of its group for ``consumer_replace_after_s`` is closed and
  replaced between two batches; the new one resumes at the last committed offsets
  (:meth:`Worker.run_once`, ``ConsumerSession.replace_if_out_of_group``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, cast
from uuid import UUID

from confluent_kafka import Consumer, Message, Producer
from psycopg_pool import ConnectionPool
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    wait_random_exponential,
)

from phoenix_resources import bootstrap
from phoenix_resources.adapters import native as compiled
from phoenix_resources.adapters.dlq_delivery import DeadLetterLimit, DeadLetters
from phoenix_resources.adapters.group_membership import GroupMembership
from phoenix_resources.adapters.kafka import partition_key
from phoenix_resources.adapters.native import NativeItem, NativePath
from phoenix_resources.adapters.records import producer_max_bytes
from phoenix_resources.config import Settings
from phoenix_resources.domain.rules import Misplaced
from phoenix_resources.entrypoints.consumer_session import ConsumerSession
from phoenix_resources.entrypoints.dead_letter_gate import DeadLetterGate
from phoenix_resources.errors import DecodeError, TransientError
from phoenix_resources.observability import Metrics, log_context
from phoenix_resources.observability.tracing import Tracing
from phoenix_resources.observability.worker_watch import BatchWatch, WorkerWatch
from phoenix_resources.services.apply_encoded import apply_encoded
from phoenix_resources.services.isolate import Isolation
from phoenix_resources.services.ports import BatchUnit, Incoming
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.headers import command_headers
from phoenix_resources.wire.partitioner import partition_for

log = logging.getLogger("phoenix_resources.worker")

HeaderList = list[tuple[str, bytes | None]] | None


@dataclass
class _InFlight:
    """A batch being applied. Decoded once (inside the retry loop: decoding may wait for the
    registry); its dead letters are sent after the database work, before offsets."""

    messages: list[Message]
    dead: DeadLetters
    watch: BatchWatch
    isolation: Isolation[Any] | None = None
    by_command: dict[UUID, Message] = field(default_factory=dict)
    decoded_from: list[Message] = field(default_factory=list)
    """The messages as the compiled path decoded them (its items name them by index)."""
    counted: bool = False

    def drop_partitions(self, partitions: set[int]) -> None:
        """Abandon what came from ``partitions``: their next owner will redeliver it."""
        self.messages = [m for m in self.messages if partition_key(m)[1] not in partitions]
        self.dead.drop_partitions(partitions)
        if self.isolation is not None:
            self.isolation.drop_partitions(partitions)


class Worker:
    """Applies the commands topic batch by batch; ``session`` keeps its consumer."""

    def __init__(self, settings: Settings, *, consumer: Consumer, producer: Producer,
                 codec: CommandCodec, unit_factory: Callable[[], BatchUnit],
                 metrics: Metrics, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic,
                 prepare: Callable[[], None] | None = None,
                 tracing: Tracing | None = None,
                 membership: GroupMembership | None = None,
                 new_consumer: Callable[[], Consumer] | None = None,
                 native: NativePath | None = None,
                 dlq_topic_max_bytes: Callable[[], int | None] | None = None) -> None:
        """``prepare`` runs before the first consume (e.g. looking up the event schemas in
        the registry); transient failures of it are waited out, others stop the worker.
        ``membership`` follows the consumer's group state; with ``new_consumer`` the worker
        replaces a consumer out of its group for ``consumer_replace_after_s``. With
        ``native`` (``PHOENIX_NATIVE``, chosen by bootstrap) the per-command work is compiled;
        the rules are the same (``docs/decisions/0014-the-compiled-hot-path.md``).
        ``dlq_topic_max_bytes()`` reads the DLQ topic's ``max.message.bytes`` (without it,
        dead letters are sized for the producer's limit until the topic refuses one)."""
        self.settings = settings
        self.native = native
        self._prepare = prepare
        self.producer = producer
        self.codec = codec
        self.unit_factory = unit_factory
        self.metrics = metrics
        self.clock = clock
        self._in_flight: _InFlight | None = None
        self._stop = threading.Event()
        self.watch = WorkerWatch(metrics, consumer, tracing=tracing, monotonic=monotonic,
                                 stuck_after_s=settings.stuck_after_s, membership=membership)
        self.session = ConsumerSession(
            consumer, topic=settings.commands_topic, watch=self.watch, metrics=metrics,
            on_gone=self._abandon, stopping=self._stop.is_set, monotonic=monotonic,
            membership=membership, new_consumer=new_consumer,
            replace_after_s=settings.consumer_replace_after_s)
        limit = DeadLetterLimit(producer_max_bytes(settings.kafka_config("producer")),
                                dlq_topic_max_bytes, monotonic=monotonic)
        self.gate = DeadLetterGate(
            settings.dlq_topic, limit, session=self.session, watch=self.watch, metrics=metrics,
            retry_initial_s=settings.retry_initial_s, retry_max_s=settings.retry_max_s,
            wait_s=bootstrap.publish_wait_s(settings), monotonic=monotonic)

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        """Whether consumption is paused while a fault is waited out."""
        return self.session.paused

    def run(self) -> None:
        """Consume until :meth:`stop`; then commit what was stored and leave the group."""
        if self._prepare is not None and not self._prepared():
            self.session.close()
            return
        self.session.start()
        log.info("worker started", extra={"topic": self.settings.commands_topic,
                                          "group": self.settings.consumer_group})
        try:
            while not self.stopping:
                self.run_once()
        finally:
            self.session.close()
            self.producer.flush(5)
            log.info("worker stopped")

    def _prepared(self) -> bool:
        """Run ``prepare`` until it succeeds (True) or the worker is stopped (False)."""
        assert self._prepare is not None
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(TransientError),
                wait=self._backoff(), stop=lambda _: self.stopping, sleep=self._sleep,
                reraise=True,
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

    def _backoff(self) -> wait_random_exponential:
        return wait_random_exponential(multiplier=self.settings.retry_initial_s,
                                       max=self.settings.retry_max_s)

    def run_once(self) -> None:
        """One batch. A consumer out of its group is replaced here, between two batches:
        nothing is in flight, every stored offset follows a database commit."""
        self.session.replace_if_out_of_group()
        self.gate.retry(self.producer)
        messages = self.session.consume(self.settings.batch_size,
                                        self.settings.batch_max_wait_ms / 1000)
        if messages:
            self.handle(messages)

    # --- one batch ---------------------------------------------------------------------------

    def handle(self, messages: Sequence[Message]) -> None:
        """Apply ``messages``, retrying transient faults with the assignment paused; store
        their offsets only once the batch committed and its dead letters were acknowledged.
        Stopping mid-fault abandons the batch unstored (it will be redelivered)."""
        batch = _InFlight(list(messages), self.gate.letters(), self.watch.batch(messages))
        self._in_flight = batch
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(TransientError), wait=self._backoff(),
                stop=lambda _: self.stopping, sleep=self.session.wait,
                before_sleep=self._on_fault, reraise=True,
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
        self.session.store_offsets(self.gate.settle(batch.messages, batch.dead))
        self.session.resume()
        batch.watch.finished(batch.dead)

    def _abandon(self, partitions: set[int]) -> None:
        """Partitions were revoked or lost: their records leave the in-flight batch (their
        next owner gets them again from the last committed offset)."""
        if self._in_flight is not None:
            self._in_flight.drop_partitions(partitions)
        self.gate.drop_partitions(partitions)

    def _advance(self, batch: _InFlight) -> None:
        """One attempt: decode (once), apply what is left, then dead-letter; each step is
        skipped when an earlier attempt finished it."""
        if batch.isolation is None:
            batch.isolation = self._isolation(batch)
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

    def _isolation(self, batch: _InFlight) -> Isolation[Any]:
        """Decode the batch, by the compiled path or the Python reference: the isolation's
        rules are the same for both, only what applies one part differs."""
        partitions = self.session.partition_count()
        if self.native is None:
            incoming = self._decode(batch, partitions)
            batch.watch.decoded(incoming)
            return Isolation(incoming, oldest=self._oldest_accepted())
        batch.decoded_from = list(batch.messages)
        decoding = compiled.decode(self.native.module, batch.decoded_from, self.codec)
        refuse = None
        if partitions is not None:
            if self.settings.partition_check == "refuse":
                refuse = partitions
            else:
                self._warn_misplaced(len(decoding.batch.misplaced(partitions)))
        for name, count in decoding.invalid_headers.items():
            self.metrics.invalid_headers.labels(name).inc(count)
        for i, e in decoding.dead:
            self._dead_letter(batch, batch.decoded_from[i], e.reason, e.detail, e)
        batch.watch.decoded(cast(list[Incoming], decoding.items),
                            issued=decoding.issued_seconds)
        return Isolation(decoding.items, oldest=self._oldest_accepted(),
                         apply=partial(apply_encoded, source=decoding.batch,
                                       prefixes=self.native.prefixes(), partitions=refuse))

    def _misplaced(self, key: bytes | None, partition: int,
                   partitions: int | None) -> Misplaced | None:
        """Where a record's key belongs when it is not where it is (CMD-011), as the Java
        client's partitioner puts it; unknown partition count or no key: not checked."""
        if partitions is None or key is None:
            return None
        home = partition_for(key, partitions)
        return None if home == partition else Misplaced(partition, home, partitions)

    def _warn_misplaced(self, count: int) -> None:
        """``PHOENIX_PARTITION_CHECK=warn``: misplaced records are applied, and counted."""
        if count:
            self.metrics.partition_mismatches.inc(count)
            log.warning("records in another partition than their key's, applied "
                        "(PHOENIX_PARTITION_CHECK=warn)", extra={"count": count})

    def _decode(self, batch: _InFlight, partitions: int | None = None) -> list[Incoming]:
        incoming: list[Incoming] = []
        warned = 0
        refuse = self.settings.partition_check == "refuse"
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
            key = m.key()
            key_matches = key == str(command.resource_id).encode()
            misplaced = self._misplaced(key, partition, partitions)
            if misplaced is not None and not refuse:
                warned, misplaced = warned + 1, None
            batch.by_command.setdefault(command.command_id, m)
            incoming.append(Incoming(command, partition, m.offset() or 0, headers.traceparent,
                                     key_matches, misplaced))
        self._warn_misplaced(warned)
        return incoming

    def _dead_letter(self, batch: _InFlight, m: Message, reason: str, detail: str,
                     error: BaseException | None = None) -> None:
        batch.dead.add(partition_key(m)[1], m, reason, detail, error)
        log.warning("dead-lettered", extra={"reason": reason, "detail": detail[:300],
                                            "topic": m.topic(), "partition": m.partition(),
                                            "offset": m.offset()})

    def _count(self, batch: _InFlight, isolation: Isolation[Any]) -> None:
        report = isolation.report
        for item, error in isolation.unparkable:
            # Even the parking lot refused it: the DLQ is the last place that keeps it.
            message = (batch.decoded_from[item.index] if isinstance(item, NativeItem)
                       else batch.by_command[item.command.command_id])
            self._dead_letter(batch, message, "unparkable", error)
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

    # --- faults ------------------------------------------------------------------------------

    def _on_fault(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.metrics.transient_errors.labels("worker", type(exc).__name__).inc()
        log.warning("transient fault; pausing and retrying the batch", extra={
            "error": str(exc)[:300], "kind": type(exc).__name__,
            "attempt": state.attempt_number,
            "retry_in_s": round(state.next_action.sleep, 2) if state.next_action else None})
        self.session.pause(type(exc).__name__)

    def readiness(self) -> dict[str, Any]:
        """``ok`` (joined, in its group, not stuck), assigned partitions, paused, lag (see
        WorkerWatch)."""
        return self.watch.readiness()


def build_worker(settings: Settings, metrics: Metrics,
                 tracing: Tracing | None = None) -> tuple[Worker, ConnectionPool]:
    """A worker assembled from bootstrap's ingredients, and its pool (open the pool before
    :meth:`Worker.run`, close it after)."""
    parts = bootstrap.worker_parts(settings)
    worker = Worker(settings, consumer=parts.consumer, producer=parts.producer,
                    codec=parts.codec, unit_factory=parts.unit_factory, metrics=metrics,
                    prepare=parts.events.prepare, tracing=tracing,
                    membership=parts.membership, new_consumer=parts.new_consumer,
                    native=parts.native, dlq_topic_max_bytes=parts.dlq_topic_max_bytes)
    return worker, parts.pool
