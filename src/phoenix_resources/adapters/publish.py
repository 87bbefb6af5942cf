"""Publishing a batch of records with every delivery awaited and judged, record by record.

See :func:`publish_all`; what each error code means is decided in ``produce_errors``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from phoenix_resources.adapters.produce_errors import Verdict, classify, describe
from phoenix_resources.adapters.records import OutgoingRecord
from phoenix_resources.errors import BrokerFatal, BrokerUnavailable, RecordRefused

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]


def publish_all(producer: Producer, records: Sequence[OutgoingRecord],
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
    def __init__(self, producer: Producer, records: Sequence[OutgoingRecord], timeout: float,
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


def _topic_absent(producer: Producer, topic: str) -> bool:
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


def _produce(producer: Producer, record: OutgoingRecord,
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
