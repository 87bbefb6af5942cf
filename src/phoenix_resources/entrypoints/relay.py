"""The relay process: outbox rows → Kafka, in commit-safe order, at least once.

The rules are :class:`~phoenix_resources.services.relay.OutboxRelay`'s (its docstring lists
what it guarantees and where each guarantee is kept). This module wires it and keeps it
running:

* :func:`build_relay` builds the ports' adapters from bootstrap's ingredients: the relay's
  own PostgreSQL session (``adapters/postgres/outbox.py``: the advisory lock, and a session
  that ends within ``relay_session_timeout_s`` when its relay stops answering, so a hung or
  cut-off leader loses the lead) and an idempotent producer behind
  :class:`~phoenix_resources.adapters.publish.KafkaEventPublisher` (CloudEvents headers from
  ``wire/cloudevents.py``).
* :meth:`Relay.run` turns the rules until :meth:`Relay.stop`. A transient fault (database or
  broker down, a leader's session gone) steps down — closing the session releases the lock —
  and is retried with backoff: nothing was deleted, so the batch is published again with the
  same event ids. Anything else stops the process.
* What the rules report becomes metrics, logs, readiness and publish spans (``RelayWatch``);
  :attr:`Relay.parked_outbox_rows` is the last count of parked rows (also exported as
  ``phoenix_outbox_parked_rows``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from tenacity import Retrying, retry_if_exception_type, wait_random_exponential

from phoenix_resources import bootstrap
from phoenix_resources.adapters.publish import KafkaEventPublisher
from phoenix_resources.config import Settings
from phoenix_resources.errors import TransientError
from phoenix_resources.observability import Metrics
from phoenix_resources.observability.relay_watch import RelayWatch
from phoenix_resources.observability.tracing import Tracing
from phoenix_resources.services.ports import (
    Delivery,
    EventPublisher,
    OutboxReader,
    OutboxRow,
    RefusedRow,
)
from phoenix_resources.services.relay import OutboxRelay, RelayPolicy

log = logging.getLogger("phoenix_resources.relay")


def policy(settings: Settings) -> RelayPolicy:
    return RelayPolicy(batch_size=settings.relay_batch_size,
                       poll_interval_s=settings.relay_poll_interval_s,
                       prune_interval_s=settings.prune_interval_s,
                       processed_retention_s=settings.processed_retention_hours * 3600)


class Relay:
    """One relay process's loop around :class:`OutboxRelay` (see the module's docstring)."""

    def __init__(self, settings: Settings, *, reader: OutboxReader, publisher: EventPublisher,
                 metrics: Metrics, clock: Callable[[], float] = time.monotonic,
                 tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._stop = threading.Event()
        self.watch = RelayWatch(metrics, tracing=tracing, monotonic=clock,
                                stuck_after_s=settings.stuck_after_s,
                                topics=(settings.events_topic, settings.rejections_topic))
        self.rules = OutboxRelay(reader, _Traced(publisher, self.watch), policy(settings),
                                 observer=_Recorder(metrics, self.watch), clock=clock,
                                 pause=self._stop.wait)

    @property
    def parked_outbox_rows(self) -> int:
        """Outbox rows parked after a permanent refusal, as of the last count."""
        return self.rules.parked_rows

    @property
    def leading(self) -> bool:
        return self.rules.leading

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
                    while not self._stop.is_set():
                        self.rules.run_round()
        except Exception:
            if not self._stop.is_set():
                raise
        finally:
            self.rules.step_down()
            self.rules.publisher.close()
            log.info("relay stopped")

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _on_fault(self, exc: BaseException | None) -> None:
        self.rules.step_down()
        self.metrics.transient_errors.labels("relay", type(exc).__name__).inc()
        log.warning("transient fault; retrying", extra={"error": str(exc)[:300]})


class _Traced:
    """The publisher, with each publish inside the watch's spans: the rows go out with the
    spans' ``traceparent`` (for sampled rows, when tracing), and the spans are marked failed
    when the publish raises or the broker refuses rows."""

    def __init__(self, inner: EventPublisher, watch: RelayWatch) -> None:
        self.inner = inner
        self.watch = watch

    def publish(self, rows: Sequence[OutboxRow],
                traceparents: Sequence[str | None] | None = None) -> Delivery:
        with self.watch.publishing(rows) as parents:
            delivery = self.inner.publish(rows, parents if traceparents is None
                                          else traceparents)
            if not delivery.complete:
                self.watch.refused(f"{len(delivery.refused)} row(s) refused by the broker "
                                   f"(first: {delivery.refused[0].reason}); "
                                   f"{len(delivery.delivered)} delivered, "
                                   f"{len(delivery.held)} held")
        return delivery

    def close(self) -> None:
        self.inner.close()


class _Recorder:
    """What the rules report, as metrics, logs and readiness."""

    def __init__(self, metrics: Metrics, watch: RelayWatch) -> None:
        self.metrics = metrics
        self.watch = watch

    def took_lead(self) -> None:
        self.watch.leading(True)
        log.info("relay is the leader")

    def stepped_down(self, was_leading: bool) -> None:
        if was_leading:
            log.info("relay lost the lead")
        self.watch.leading(False)

    def fetched(self, rows: Sequence[OutboxRow]) -> None:
        self.watch.fetched(rows)

    def published(self, rows: Sequence[OutboxRow]) -> None:
        self.watch.published(rows)

    def parked(self, refused: RefusedRow, published_behind: Sequence[int]) -> None:
        row = refused.row
        self.metrics.events_parked.labels(row.topic).inc()
        log.error("outbox row parked: the broker refused it for good", extra={
            "seq": row.seq, "event_id": row.id, "resource_id": row.aggregateid,
            "type": row.type, "topic": row.topic, "bytes": len(row.payload),
            "reason": refused.reason})
        if published_behind:
            log.warning("later events of a parked resource were already published",
                        extra={"resource_id": row.aggregateid, "parked_seq": row.seq,
                               "published_seqs": list(published_behind)})

    def backlog(self, waiting: int, parked: int) -> None:
        self.watch.backlog(waiting, parked)

    def pruned(self, rows: int) -> None:
        self.metrics.outbox_pruned.inc(rows)
        log.info("pruned processed_commands", extra={"rows": rows})


def build_relay(settings: Settings, metrics: Metrics, tracing: Tracing | None = None) -> Relay:
    """A relay assembled from bootstrap's ingredients (its session connects on first use)."""
    parts = bootstrap.relay_parts(settings)
    return Relay(settings, reader=parts.reader,
                 publisher=KafkaEventPublisher(parts.producer, settings.event_source,
                                               timeout=parts.publish_wait_s),
                 metrics=metrics, tracing=tracing)
