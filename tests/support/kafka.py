"""Kafka helpers for tests: unique topics, and reading a topic to its end."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

# Not re-exported for mypy by confluent_kafka.admin (the service's adapters do the same).
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic


@dataclass(frozen=True)
class Topics:
    commands: str
    events: str
    rejections: str
    dlq: str

    @classmethod
    def unique(cls) -> Topics:
        s = uuid.uuid4().hex[:10]
        return cls(f"t.{s}.commands", f"t.{s}.events", f"t.{s}.rejections", f"t.{s}.dlq")


def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, num_partitions=n, replication_factor=1)
                                   for t, n in topics.items()], operation_timeout=30)
    for future in futures.values():
        future.result(timeout=60)


def create_limited_topic(bootstrap: str, name: str, max_message_bytes: int) -> str:
    """A one-partition topic that takes records of at most ``max_message_bytes``."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1,
                                            config={"max.message.bytes": str(max_message_bytes)})])
    for future in futures.values():
        future.result(timeout=60)
    return name


def topic_config(bootstrap: str, topic: str, name: str) -> str | None:
    """One configuration value of ``topic`` as the broker describes it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entry = admin.describe_configs([resource])[resource].result(timeout=30).get(name)
    return None if entry is None else entry.value


def set_max_message_bytes(bootstrap: str, topic: str, value: int) -> None:
    """What an operator does: alter ``topic``'s ``max.message.bytes``. Returns once the
    broker describes the new value (it applies a topic config asynchronously, so a loaded
    machine could otherwise produce before the limit exists)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", str(value),
                    incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    deadline = time.monotonic() + 30
    while topic_config(bootstrap, topic, "max.message.bytes") != str(value):
        assert time.monotonic() < deadline, f"{topic}: max.message.bytes never became {value}"
        time.sleep(0.1)


def read_all(bootstrap: str, topic: str, expected: int | None = None,
             timeout: float = 30.0, idle: float = 2.0) -> list[Message]:
    """Every record of ``topic`` from the beginning: until ``expected`` are read (then a
    short idle to catch extras) or until ``timeout``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "enable.partition.eof": False})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = meta.topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, timeout=0.2)
            for m in batch:
                if m.error():
                    raise KafkaException(m.error())
                out.append(m)
            if batch:
                last = time.monotonic()
            if expected is not None and len(out) >= expected and time.monotonic() - last > idle:
                break
            if expected is None and time.monotonic() - last > idle:
                break
        return out
    finally:
        consumer.close()


def header(message: Message, name: str) -> str | None:
    """The last value of header ``name`` as text (``None`` if absent)."""
    found: bytes | str | None = None
    headers = message.headers() or []
    for key, value in headers.items() if isinstance(headers, dict) else headers:
        if key == name and value is not None:
            found = value
    return found.decode() if isinstance(found, bytes) else found
