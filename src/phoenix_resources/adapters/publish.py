"""Publishing a batch of records with every delivery awaited and judged, record by record.

See :func:`publish_all`; what each error code means is decided in ``produce_errors``.
:class:`KafkaEventPublisher` is the relay's
:class:`~phoenix_resources.services.ports.EventPublisher`: outbox rows as CloudEvents
records (``wire/cloudevents.py``), published with :func:`publish_all`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message

from phoenix_resources.adapters.produce_errors import Verdict, classify, describe
from phoenix_resources.adapters.records import Headers, OutgoingRecord
from phoenix_resources.errors import BrokerFatal, BrokerUnavailable, RecordRefused
from phoenix_resources.services.ports import Delivery, OutboxRow, RefusedRow
from phoenix_resources.wire.cloudevents import CloudEventHeaders

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]


class Producing(Protocol):
    """The part of ``confluent_kafka.Producer`` that publishing uses."""

    def produce(self, topic: str, value: bytes | None = ..., key: bytes | None = ..., *,
                on_delivery: DeliveryCallback | None = ...,
                headers: Headers | None = ...) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...

    def list_topics(self, topic: str | None = ..., timeout: float = ...) -> Any: ...


class KafkaEventPublisher:
    """Outbox rows as CloudEvents binary-mode records, keyed by resource id, published with
    :func:`publish_all` (``keep_key_order``): the guarantees of
    :class:`~phoenix_resources.services.ports.EventPublisher`.

    A permanent refusal becomes a :class:`~phoenix_resources.services.ports.Delivery` naming
    the delivered, refused and held rows; :class:`BrokerUnavailable` and :class:`BrokerFatal`
    propagate. Use a producer with ``enable.idempotence``, so a retried call can only repeat
    a partition's records, never reorder them.
    """

    def __init__(self, producer: Producing, source: str, *, timeout: float = 30.0,
                 close_timeout: float = 10.0) -> None:
        self._producer = producer
        self._headers = CloudEventHeaders(source)
        self._timeout = timeout
        self._close_timeout = close_timeout

    def record(self, row: OutboxRow, traceparent: str | None = None) -> OutgoingRecord:
        """The record of one row; ``traceparent`` (the publishing span's) replaces the
        row's own."""
        key = row.aggregateid.encode()
        return OutgoingRecord(row.topic, key, row.payload, self._headers.headers(
            event_id=row.id, event_type=row.type, subject=key, time=row.occurred_at,
            traceparent=traceparent or row.traceparent))

    def publish(self, rows: Sequence[OutboxRow],
                traceparents: Sequence[str | None] | None = None) -> Delivery:
        parents = traceparents if traceparents is not None else [None] * len(rows)
        records = [self.record(r, tp) for r, tp in zip(rows, parents, strict=True)]
        try:
            publish_all(self._producer, records, self._timeout, keep_key_order=True)
        except RecordRefused as e:
            return Delivery(delivered=[rows[i] for i in sorted(e.delivered)],
                            refused=[RefusedRow(rows[i], e.refused[i]) for i in sorted(e.refused)],
                            held=[rows[i] for i in sorted(e.held)])
        return Delivery(rows)

    def close(self) -> None:
        self._producer.flush(self._close_timeout)


def publish_all(producer: Producing, records: Sequence[OutgoingRecord],
                timeout: float = 30.0, *, keep_key_order: bool = False) -> int:
    """Fire every record, flush once, then check every delivery report.

    Returns the number delivered when all were. Otherwise, judged per record:

    * a **transient** failure (broker unreachable, timeouts, not enough replicas, no leader …)
      raises :class:`BrokerUnavailable`: the caller retries the whole call with backoff; with
      the idempotent producer and stable event ids a retry can only repeat, never reorder, a
      partition's records;
    * a **permanent** refusal (too large, invalid record, topic absent or not authorised …)
      raises :class:`RecordRefused`, naming the refused, delivered and held records by index
      so the caller can act per record. It is raised only when no record failed transiently:
      a call is never reported as refused while part of it could still succeed by waiting;
    * a fatal producer error raises :class:`BrokerFatal`.

    A broker refuses oversize *batches*, which fails the small records batched with a large
    one: records that got a batch-level refusal are sent again one at a time, in order, and
    only those refused alone are reported. With ``keep_key_order=True`` no record is sent
    after an earlier record with the same topic and key was refused within this call (it is
    *held*); records already in flight when a refusal arrived may have been delivered.

    A record without a report counts as delivered once ``flush`` returns 0: librdkafka counts
    a report not yet served as still in flight, so after a complete flush the only records
    without one are those a ``delivery.report.only.error=true`` producer delivered (it calls
    back for failures only, which saves a Python call per record). A record still without a
    report when ``flush`` times out is a transient failure.
    """
    run = _Publish(producer, records, timeout, keep_key_order)
    for index in run.round(range(len(records))):
        run.round([index])
    return run.result()


class _Publish:
    def __init__(self, producer: Producing, records: Sequence[OutgoingRecord], timeout: float,
                 keep_key_order: bool) -> None:
        self.producer = producer
        self.records = records
        self.timeout = timeout
        self.keep_key_order = keep_key_order
        self.delivered: set[int] = set()
        self.refused: dict[int, str] = {}
        self.transient: dict[int, str] = {}
        self.held: set[int] = set()
        self._blocked: set[tuple[str, bytes | None]] = set()
        self._absent: dict[str, bool] = {}

    def round(self, indices: Sequence[int]) -> list[int]:
        """Send ``indices`` together, flush, judge every report; return the records to send
        again, each alone (refused only as part of a batch)."""
        errors: dict[int, KafkaError] = {}
        sent: list[int] = []
        for i in indices:
            record = self.records[i]
            if self.keep_key_order and (record.topic, record.key) in self._blocked:
                self.held.add(i)
                continue
            err = _produce(self.producer, record, self._on_delivery(i, errors))
            if err is None:
                sent.append(i)
            else:  # refused before leaving the process: judged now, so it can block its key
                self._judge(i, err, early=True, together=False)
        settled = self.producer.flush(self.timeout) == 0
        again: list[int] = []
        for i in sent:
            if i in self.delivered:
                continue
            err = errors.get(i)
            if err is None and settled:
                self.delivered.add(i)  # nothing in flight, no error reported: delivered
            elif err is None:
                self.transient[i] = f"no delivery report within {self.timeout:g}s"
            elif self._judge(i, err, early=False, together=len(sent) > 1):
                again.append(i)
        return again

    def result(self) -> int:
        transient = {i: why for i, why in self.transient.items() if i not in self.delivered}
        if transient:
            first = min(transient)
            raise BrokerUnavailable(f"{len(transient)} of {len(self.records)} records not "
                                    f"delivered: {transient[first]}")
        if self.refused:
            log.warning("records refused by the broker", extra={
                "refused": len(self.refused), "delivered": len(self.delivered),
                "held": len(self.held), "first": self.refused[min(self.refused)]})
            raise RecordRefused(dict(self.refused), frozenset(self.delivered),
                                frozenset(self.held))
        return len(self.records)

    def _on_delivery(self, index: int, errors: dict[int, KafkaError]) -> DeliveryCallback:
        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.delivered.add(index)
            else:
                errors[index] = err
        return on_delivery

    def _judge(self, i: int, err: KafkaError, *, early: bool, together: bool) -> bool:
        """Record the verdict on record ``i``; True when it must be sent again alone."""
        record = self.records[i]
        verdict = classify(err)
        if verdict is Verdict.FATAL:
            raise BrokerFatal(f"the producer failed for good: {describe(err)}")
        if verdict is Verdict.TOPIC_MISSING:
            verdict = Verdict.REFUSED if self._topic_absent(record.topic) else Verdict.TRANSIENT
        elif verdict is Verdict.TOO_LARGE:
            # produce() refuses a record for its own size; a broker refuses a whole batch.
            verdict = Verdict.INNOCENT if together and not early else Verdict.REFUSED
        elif early and err.code() == KafkaError._INVALID_ARG:
            verdict = Verdict.REFUSED  # produce() cannot take this record as it is
        if verdict is Verdict.REFUSED:
            self.refused[i] = describe(err)
            if self.keep_key_order:
                self._blocked.add((record.topic, record.key))
            return False
        if verdict is Verdict.INNOCENT and together:
            return True
        self.transient[i] = describe(err)
        return False

    def _topic_absent(self, topic: str) -> bool:
        """True only when the cluster's metadata says the topic does not exist."""
        if topic not in self._absent:
            self._absent[topic] = _topic_absent(self.producer, topic)
        return self._absent[topic]


def _topic_absent(producer: Producing, topic: str) -> bool:
    try:
        meta = producer.list_topics(topic, timeout=5)
    except KafkaException as e:
        log.warning("cannot confirm whether a topic exists",
                    extra={"topic": topic, "error": str(e)})
        return False
    found = meta.topics.get(topic)
    if found is None:
        return True
    return found.error is not None and found.error.code() in (
        KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_EXCEPTION)


def _produce(producer: Producing, record: OutgoingRecord,
             on_delivery: DeliveryCallback) -> KafkaError | None:
    """Enqueue ``record``; a refusal by ``produce()`` itself (too large, unknown topic …) is
    returned, not raised, so it is judged like a delivery report."""
    while True:
        try:
            producer.produce(record.topic, key=record.key, value=record.value,
                             headers=record.headers, on_delivery=on_delivery)
            return None
        except BufferError:
            producer.poll(0.05)  # local queue full: let deliveries drain
        except KafkaException as e:
            if e.args and isinstance(e.args[0], KafkaError):
                return e.args[0]
            raise BrokerUnavailable(f"produce to {record.topic}: {e}") from e
