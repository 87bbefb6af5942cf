"""Publish a workload's records to the commands topic, in order, waiting out broker outages.

Order per key is what matters (the producer is idempotent and keys pick the partition), so a
chunk is retried as a whole only when its delivery failed; an outage delays, never reorders.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, Producer

from phoenix_resources.adapters.kafka import new_producer
from phoenix_resources.config import Settings
from phoenix_resources.errors import DeliveryFailed
from phoenix_resources.soak.workload import Record


class Publisher:
    """Sends records in chunks; :attr:`sent` counts the ones acknowledged by the broker."""

    def __init__(self, settings: Settings, *, chunk: int = 200) -> None:
        self.settings = settings
        self.chunk = chunk
        self.sent = 0
        # The broker restarts on purpose during a soak: librdkafka's connection errors are
        # expected noise there, and a record the broker really refuses raises DeliveryFailed.
        quiet = logging.getLogger("phoenix_resources.soak.publisher")
        quiet.setLevel(logging.CRITICAL)
        self._producer: Producer = new_producer(
            settings, **{"message.timeout.ms": 600_000, "linger.ms": 5, "logger": quiet})

    def send(self, records: Sequence[Record], *, pace: Callable[[int], None] | None = None,
             stopping: Callable[[], bool] = lambda: False) -> None:
        """Publish every record (in order), calling ``pace(sent)`` between chunks."""
        topic = self.settings.commands_topic
        failed: list[KafkaError] = []

        def report(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                failed.append(err)

        for start in range(0, len(records), self.chunk):
            if stopping():
                return
            for r in records[start:start + self.chunk]:
                while True:
                    try:
                        self._producer.produce(topic, key=r.key, value=r.value,
                                               headers=[("content-type",
                                                         r.content_type.encode())],
                                               on_delivery=report)
                        break
                    except BufferError:
                        self._producer.poll(0.1)
            while self._producer.flush(1.0) > 0:
                if stopping():
                    return
            if failed:
                # An idempotent producer with a long message timeout only fails when the
                # broker refused for good: nothing to retry into, say so.
                raise DeliveryFailed(f"the broker refused soak records: {failed[0]}")
            self.sent += len(records[start:start + self.chunk])
            if pace is not None:
                pace(self.sent)
