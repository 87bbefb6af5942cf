"""What the worker and the relay rely on from Kafka's consumer and producer, checked against
the fakes their unit tests use (``tests/fakes.py``) and against the real clients on the
real broker. If a fake drifts from librdkafka, the same assertion fails on one side only.

The cases are :class:`~tests.contract.kafka_cases.KafkaContract`'s; each class below
provides one backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from phoenix_resources.adapters.kafka import new_consumer, new_producer
from phoenix_resources.config import Settings
from tests.contract.kafka_cases import KafkaContract, Record
from tests.fakes import FakeConsumer, FakeProducer


class TestFakeKafka(KafkaContract):
    pytestmark = pytest.mark.unit

    @pytest.fixture(autouse=True)
    def _broker(self) -> None:
        self.first = FakeConsumer({})
        """Every consumer here is a member of its group by way of this one (same logs)."""
        self.groups: dict[str, FakeConsumer] = {}
        self.limits: dict[str, int] = {}

    def topic(self, partitions: int = 1, max_message_bytes: int | None = None) -> str:
        name = f"t.{uuid.uuid4().hex[:8]}"
        self.first.add_topic(name, partitions)
        if max_message_bytes is not None:
            self.limits[name] = max_message_bytes
        return name

    def append(self, topic: str, partition: int, batch: Sequence[Record]) -> None:
        for key, value, headers in batch:
            self.first.append(topic, partition, value, key=key, headers=headers)

    def consumer(self, group: str) -> FakeConsumer:
        founder = self.groups.setdefault(group, self.first.new_member())
        consumer = founder.new_member()
        return consumer

    def producer(self) -> FakeProducer:
        producer = FakeProducer()
        producer.absent_topics = {"absent"}
        producer.topic_limits = dict(self.limits)
        return producer

    def absent_topic(self) -> str:
        return "absent"


class TestRealKafka(KafkaContract):
    pytestmark = pytest.mark.integration

    @pytest.fixture(autouse=True)
    def _broker(self, kafka_servers: str) -> Iterator[None]:
        self.servers = kafka_servers
        self.settings = Settings(kafka_bootstrap_servers=kafka_servers)
        self.admin = AdminClient({"bootstrap.servers": kafka_servers})
        self.topics: list[str] = []
        self._writer: Producer | None = None
        self.producers: list[Producer] = []
        yield
        for producer in self.producers:  # none outlives the test (nor the broker)
            producer.flush(10)
            producer.close()
        self.producers.clear()
        self._writer = None
        if self.topics:
            for future in self.admin.delete_topics(self.topics).values():
                future.result(timeout=30)
        del self.admin  # its client thread ends with it, before the broker does

    def topic(self, partitions: int = 1, max_message_bytes: int | None = None) -> str:
        name = f"t.{uuid.uuid4().hex[:10]}.contract"
        config = {} if max_message_bytes is None else {
            "max.message.bytes": str(max_message_bytes)}
        created = self.admin.create_topics([NewTopic(name, num_partitions=partitions,
                                                     replication_factor=1, config=config)],
                                           operation_timeout=30)
        created[name].result(timeout=60)
        self.topics.append(name)
        return name

    def append(self, topic: str, partition: int, batch: Sequence[Record]) -> None:
        if self._writer is None:
            self._writer = new_producer(self.settings)
            self.producers.append(self._writer)
        failed: list[KafkaError] = []
        for key, value, headers in batch:
            self._writer.produce(topic, value=value, key=key, partition=partition,
                                 headers=headers, on_delivery=lambda err, _m: failed.extend(
                                     [err] if err else []))
        assert self._writer.flush(60) == 0
        assert failed == []

    def consumer(self, group: str) -> Any:
        return new_consumer(self.settings, group_id=group)

    def producer(self) -> Producer:
        # A topic absent from the cluster is reported within a second (default: 30 s).
        producer = new_producer(self.settings, **{"topic.metadata.propagation.max.ms": 1000})
        self.producers.append(producer)
        return producer

    def absent_topic(self) -> str:
        return f"t.{uuid.uuid4().hex[:10]}.absent"
