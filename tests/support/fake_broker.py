"""A scripted stand-in for a librdkafka producer, for judging ``publish_all`` without I/O.

It behaves like the real thing where ``publish_all`` depends on it: ``produce()`` refuses a
record over ``producer_limit`` synchronously; each ``flush()`` delivers what was produced
since the last one as one batch per topic, and a broker refuses a whole batch with
``MSG_SIZE_TOO_LARGE`` when any record of it exceeds the topic's limit (as Kafka checks
batches, not records).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from phoenix_resources.adapters.records import OutgoingRecord

Callback = Callable[[KafkaError | None, Any], None]


@dataclass
class FakeBroker:
    topic_limit: int = 10_000
    producer_limit: int = 100_000
    absent: set[str] = field(default_factory=set)
    """Topics that do not exist (metadata says so)."""
    propagating: set[str] = field(default_factory=set)
    """Topics the produce path does not know yet but metadata lists."""
    invalid: set[bytes] = field(default_factory=set)
    """Values the broker's record validation refuses (INVALID_RECORD, KIP-467)."""
    down: bool = False
    fatal: bool = False
    queue: list[tuple[OutgoingRecord, Callback]] = field(default_factory=list)
    log: list[OutgoingRecord] = field(default_factory=list)
    """Every record delivered, in order."""
    flushes: int = 0

    # --- the Producer surface publish_all uses ------------------------------------------

    def produce(self, topic: str, key: bytes | None = None, value: bytes | None = None,
                headers: Any = None, on_delivery: Callback | None = None) -> None:
        record = OutgoingRecord(topic, key, value, list(headers or []))
        if len(value or b"") > self.producer_limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        assert on_delivery is not None
        self.queue.append((record, on_delivery))

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def flush(self, _timeout: float | None = None) -> int:
        self.flushes += 1
        batch, self.queue = self.queue, []
        by_topic: dict[str, list[tuple[OutgoingRecord, Callback]]] = {}
        for item in batch:
            by_topic.setdefault(item[0].topic, []).append(item)
        for topic, items in by_topic.items():
            for (record, callback), err in zip(items, self._judge(topic, items), strict=True):
                if err is None:
                    self.log.append(record)
                callback(None if err is None else KafkaError(err), None)
        return 0

    def list_topics(self, topic: str, timeout: float = 0) -> Any:
        error = (KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART) if topic in self.absent
                 else None)
        return SimpleNamespace(topics={topic: SimpleNamespace(error=error)})

    # --- the broker's judgement ---------------------------------------------------------

    def _judge(self, topic: str, items: list[tuple[OutgoingRecord, Callback]]
               ) -> list[int | None]:
        n = len(items)
        if self.fatal:
            return [KafkaError._FATAL] * n
        if self.down:
            return [KafkaError._MSG_TIMED_OUT] * n
        if topic in self.absent or topic in self.propagating:
            return [KafkaError.UNKNOWN_TOPIC_OR_PART] * n
        if any(len(r.value or b"") > self.topic_limit for r, _ in items):
            return [KafkaError.MSG_SIZE_TOO_LARGE] * n
        bad = [(r.value or b"") in self.invalid for r, _ in items]
        if any(bad):
            innocent = getattr(KafkaError, "_INVALID_DIFFERENT_RECORD", -138)
            return [KafkaError.INVALID_RECORD if b else innocent for b in bad]
        return [None] * n
