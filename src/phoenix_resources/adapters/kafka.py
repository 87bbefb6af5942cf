"""Kafka side effects: clients, topics, dead letters, and batch publishing with awaited
delivery. Server processes get their clients through ``bootstrap``; the client library calls
:func:`new_producer` / :func:`new_consumer` directly."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from phoenix_resources.adapters.dlq import dead_letter
from phoenix_resources.adapters.publish import publish_all
from phoenix_resources.adapters.records import (
    Headers,
    OutgoingRecord,
    header_pairs,
    text_headers,
)
from phoenix_resources.config import Settings
from phoenix_resources.errors import BrokerUnavailable, ConfigurationError

__all__ = ["JAVA_PARTITIONER", "Headers", "OutgoingRecord", "dead_letter", "ensure_topics",
           "header_pairs", "new_consumer", "new_producer", "partition_key", "publish_all",
           "text_headers"]

log = logging.getLogger(__name__)

LIBRDKAFKA_LOG = logging.getLogger("phoenix_resources.librdkafka")
"""Every client's ``logger``: librdkafka's lines go through Python logging (JSON in server
processes), never raw to stderr. Named like ``observability.logs.LIBRDKAFKA_LOGGER``."""

JAVA_PARTITIONER = "murmur2_random"
"""The Java client's default partitioner, in librdkafka's name."""


def new_producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent producer (acks=all, ordered retries), batching with a short linger.

    Keys are partitioned like the Java client does (``murmur2_random``: murmur2 of the key,
    random for a null key), so a resource's records land on the same partition whoever
    publishes them; librdkafka's own default (CRC32) would not agree with Java publishers."""
    conf: dict[str, Any] = {**settings.kafka_common(), "enable.idempotence": True,
                            "acks": "all", "linger.ms": 5, "compression.type": "lz4",
                            "partitioner": JAVA_PARTITIONER,
                            "client.id": "phoenix-resources", "logger": LIBRDKAFKA_LOG}
    conf.update(overrides)
    return Producer(conf)


def new_consumer(settings: Settings, group_id: str | None = None,
                 **overrides: Any) -> Consumer:
    """Manual offset storage (the owner stores an offset once it is done with the record),
    cooperative-sticky assignment, auto-commit of what was stored."""
    conf: dict[str, Any] = {**settings.kafka_common(),
                            "group.id": group_id or settings.consumer_group,
                            "enable.auto.commit": True, "auto.commit.interval.ms": 1000,
                            "enable.auto.offset.store": False,
                            "auto.offset.reset": "earliest",
                            "partition.assignment.strategy": "cooperative-sticky",
                            "enable.partition.eof": False,
                            "fetch.wait.max.ms": 50,
                            "client.id": "phoenix-resources", "logger": LIBRDKAFKA_LOG}
    conf.update(overrides)
    return Consumer(conf)


def ensure_topics(common: dict[str, Any], topics: dict[str, int], timeout: float = 30) -> None:
    """Create missing topics (replication = min(3, brokers)); existing ones are left alone."""
    conf: dict[str, Any] = {**common, "logger": LIBRDKAFKA_LOG}
    admin = AdminClient(conf)
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as e:
        raise BrokerUnavailable(f"listing topics: {e}") from e
    missing = {t: n for t, n in topics.items() if t not in meta.topics}
    if not missing:
        return
    replication = min(3, max(1, len(meta.brokers)))
    futures = admin.create_topics([NewTopic(t, num_partitions=n, replication_factor=replication)
                                   for t, n in missing.items()], operation_timeout=timeout)
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout)
            log.info("created topic", extra={"topic": topic, "partitions": missing[topic]})
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ConfigurationError(f"cannot create topic {topic}: {e}") from e


def partition_key(message: Message) -> tuple[str, int]:
    topic, partition = message.topic(), message.partition()
    assert topic is not None, "a consumed message has a topic"
    assert partition is not None, "a consumed message has a partition"
    return topic, partition
