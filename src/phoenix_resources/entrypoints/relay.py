"""The relay: outbox rows → Kafka, in commit-safe order, at least once.

* One active relay at a time (a PostgreSQL advisory lock); others stand by and take over
  within ``relay_poll_interval_s`` of the leader's session ending. A hung, stopped or cut-off
  leader's session ends within ``relay_session_timeout_s`` (``adapters/postgres/outbox.py``).
* A leader that lost its session or its lock publishes nothing more: right before each
  publish it confirms, on its own session, that it holds the lock, and any failure of that
  session makes it step down (it never reconnects into a lock-less session while leading).
* Rows are read in ``seq`` order, produced keyed by resource id with an idempotent producer
  (fire the batch, flush once, await every delivery report) and deleted only after every
  delivery report is in. A crash between delivery and delete repeats events with the same
  ``event_id``.
* A transient produce failure (broker down, timeouts …) is waited out with backoff; nothing
  is deleted and the batch is published again.
* A row the broker refuses for good (too large for the topic, topic absent, not authorised)
  is *parked*, in the same transaction that deletes the batch's delivered rows. The fetch
  skips parked rows and every later row of the same resource, so that resource's events wait
  behind it in order while every other resource's events keep flowing. ``phoenix-resources
  outbox list|retry|discard`` handles parked rows; :attr:`Relay.parked_outbox_rows` counts
  them (also exported as ``phoenix_outbox_parked_rows``).
* Per resource, ``seq`` order is version order: a worker's transaction that changes a
  resource waits for the row lock of the previous change, so it inserts its outbox row later.
* Woken by LISTEN/NOTIFY on commit; polls every ``relay_poll_interval_s`` as a fallback.
* While leading, it also prunes ``processed_commands`` past the retention window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Producer
from tenacity import Retrying, retry_if_exception_type, wait_random_exponential

from phoenix_resources import bootstrap
from phoenix_resources.adapters.kafka import OutgoingRecord, publish_all
from phoenix_resources.adapters.postgres.outbox import OutboxRow, OutboxSession
from phoenix_resources.config import Settings
from phoenix_resources.errors import RecordRefused, TransientError
from phoenix_resources.observability import Metrics
from phoenix_resources.observability.relay_watch import RelayWatch
from phoenix_resources.observability.tracing import Tracing

log = logging.getLogger("phoenix_resources.relay")

CE_SPEC = b"1.0"
PARKED_REFRESH_S = 5.0
"""How often the leader recounts parked rows (an operator's retry or discard changes them)."""
CE_TYPE_PREFIX = "phoenix.resources.v1."


_SPEC_HEADER = ("ce_specversion", CE_SPEC)
_CONTENT_TYPE_HEADER = ("content-type", b"application/avro")
_TYPE_HEADERS: dict[str, tuple[str, bytes]] = {}


def _type_header(event_type: str) -> tuple[str, bytes]:
    found = _TYPE_HEADERS.get(event_type)
    if found is None:  # a handful of types: built once each
        found = _TYPE_HEADERS[event_type] = ("ce_type", (CE_TYPE_PREFIX + event_type).encode())
    return found


def to_record(row: OutboxRow, source: bytes, traceparent: str | None = None) -> OutgoingRecord:
    """CloudEvents binary mode: the payload is the data, attributes go in ``ce_`` headers.
    ``traceparent`` (the relay's span, when tracing) replaces the row's own."""
    key = row.aggregateid.encode()
    headers: list[tuple[str, str | bytes | None]] = [
        _SPEC_HEADER,
        ("ce_id", str(row.id).encode()),
        _type_header(row.type),
        ("ce_source", source),
        ("ce_subject", key),
        ("ce_time", row.occurred_at.isoformat().encode()),
        _CONTENT_TYPE_HEADER,
    ]
    traceparent = traceparent or row.traceparent
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return OutgoingRecord(row.topic, key, row.payload, headers)


class Relay:
    def __init__(self, settings: Settings, *, session: OutboxSession, producer: Producer,
                 metrics: Metrics, clock: Callable[[], float] = time.monotonic,
                 tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.session = session
        self.producer = producer
        self.metrics = metrics
        self.clock = clock
        self.leading = False
        self._source = settings.event_source.encode()
        self._stop = threading.Event()
        self._next_prune = 0.0
        self._next_parked_count = 0.0
        self.parked_outbox_rows = 0
        """Outbox rows parked after a permanent refusal, as of the last count."""
        self.watch = RelayWatch(metrics, tracing=tracing, monotonic=clock,
                                stuck_after_s=settings.stuck_after_s,
                                topics=(settings.events_topic, settings.rejections_topic))

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        log.info("relay started", extra={"lock_key": self.settings.relay_lock_key})
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(TransientError),
                wait=wait_random_exponential(multiplier=self.settings.retry_initial_s,
                                             max=self.settings.retry_max_s),
                stop=lambda _: self._stop.is_set(),
                sleep=self._sleep,
                before_sleep=lambda s: self._on_fault(s.outcome.exception()
                                                      if s.outcome else None),
            ):
                with attempt:
                    self._lead_and_publish()
        except Exception:
            if not self._stop.is_set():
                raise
        finally:
            self._step_down()
            self.producer.flush(10)
            log.info("relay stopped")

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _on_fault(self, exc: BaseException | None) -> None:
        self._step_down()
        self.metrics.transient_errors.labels("relay", type(exc).__name__).inc()
        log.warning("transient fault; retrying", extra={"error": str(exc)[:300]})

    def _step_down(self) -> None:
        if self.leading:
            log.info("relay lost the lead")
        self.leading = False
        self.watch.leading(False)
        self.session.close()  # closing the session releases the lock

    def _lead_and_publish(self) -> None:
        while not self._stop.is_set():
            if not self.leading:
                if not self.session.try_lead():
                    self._stop.wait(self.settings.relay_poll_interval_s)
                    continue
                self.leading = True
                self.watch.leading(True)
                self._next_parked_count = 0.0
                log.info("relay is the leader")
            published = self.publish_once()
            if not self.leading:
                continue
            self._housekeep()
            if published < self.settings.relay_batch_size:
                self.session.wait_for_commit(self.settings.relay_poll_interval_s)

    def publish_once(self) -> int:
        """Publish one batch; returns the number of rows fetched. Delivered rows are deleted
        only after every delivery report is in; refused ones are parked in that same step."""
        rows = self.session.fetch(self.settings.relay_batch_size)
        self.watch.fetched(rows)
        if not rows:
            return 0
        if not self.session.holds_lead():
            self._step_down()
            return 0
        try:
            with self.watch.publishing(rows) as traceparents:
                publish_all(self.producer, [to_record(r, self._source, tp)
                                            for r, tp in zip(rows, traceparents, strict=True)],
                            keep_key_order=True)
        except RecordRefused as e:
            self._settle_refused(rows, e)
            return len(rows)
        self.session.delete([r.seq for r in rows])
        self._count_published(rows)
        return len(rows)

    def _settle_refused(self, rows: list[OutboxRow], refused: RecordRefused) -> None:
        delivered = [rows[i] for i in sorted(refused.delivered)]
        parked = [(rows[i], refused.refused[i]) for i in sorted(refused.refused)]
        # Held rows (behind a refused one of their resource) stay as they are: the next
        # fetch skips them, behind the parked row.
        self.session.settle([r.seq for r in delivered], [(r.seq, why) for r, why in parked])
        self._count_published(delivered)
        for row, why in parked:
            self.metrics.events_parked.labels(row.topic).inc()
            log.error("outbox row parked: the broker refused it for good", extra={
                "seq": row.seq, "event_id": str(row.id), "resource_id": row.aggregateid,
                "type": row.type, "topic": row.topic, "bytes": len(row.payload),
                "reason": why})
            ahead = [r.seq for r in delivered if r.aggregateid == row.aggregateid
                     and r.seq > row.seq]
            if ahead:  # in flight before the refusal was known; cannot be taken back
                log.warning("later events of a parked resource were already published",
                            extra={"resource_id": row.aggregateid, "parked_seq": row.seq,
                                   "published_seqs": ahead})
        self._refresh_parked()

    def _count_published(self, rows: list[OutboxRow]) -> None:
        self.watch.published(rows)

    def _refresh_parked(self) -> None:
        waiting, self.parked_outbox_rows = self.session.backlog()
        self.watch.backlog(waiting, self.parked_outbox_rows)
        self._next_parked_count = self.clock() + PARKED_REFRESH_S

    def _housekeep(self) -> None:
        now = self.clock()
        if now >= self._next_parked_count:
            self._refresh_parked()
        if now < self._next_prune:
            return
        self._next_prune = now + self.settings.prune_interval_s
        pruned = self.session.prune_processed(self.settings.processed_retention_hours * 3600)
        if pruned:
            self.metrics.outbox_pruned.inc(pruned)
            log.info("pruned processed_commands", extra={"rows": pruned})


def build_relay(settings: Settings, metrics: Metrics, tracing: Tracing | None = None) -> Relay:
    """A relay assembled from bootstrap's ingredients (its session connects on first use)."""
    parts = bootstrap.relay_parts(settings)
    return Relay(settings, session=parts.session, producer=parts.producer, metrics=metrics,
                 tracing=tracing)
