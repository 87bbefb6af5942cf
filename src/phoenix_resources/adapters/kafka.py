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
from phoenix_resources.kafka_options import PINNED

__all__ = ["JAVA_PARTITIONER", "Headers", "OutgoingRecord", "admin_config", "consumer_config",
           "dead_letter", "ensure_topics", "header_pairs", "new_consumer", "new_producer",
           "partition_key", "producer_config", "publish_all", "text_headers"]

log = logging.getLogger(__name__)

LIBRDKAFKA_LOG = logging.getLogger("phoenix_resources.librdkafka")
"""Every client's ``logger``: librdkafka's lines go through Python logging (JSON in server
processes), never raw to stderr. Named like ``observability.logs.LIBRDKAFKA_LOGGER``."""

JAVA_PARTITIONER = "murmur2_random"
"""The Java client's default partitioner, in librdkafka's name."""


PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 5, "compression.type": "lz4",
                                     "client.id": "phoenix-resources"}
"""Tuning a producer starts from; the option maps may change any of it."""
CONSUMER_DEFAULTS: dict[str, Any] = {"enable.auto.commit": True, "auto.commit.interval.ms": 1000,
                                     "auto.offset.reset": "earliest",
                                     "partition.assignment.strategy": "cooperative-sticky",
                                     "enable.partition.eof": False, "fetch.wait.max.ms": 50,
                                     "client.id": "phoenix-resources"}
"""What a consumer starts from; the option maps may change any of it."""


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """:data:`PRODUCER_DEFAULTS` < the settings' producer options < the pinned guarantees
    (``kafka_options.PINNED``) < ``overrides`` (the caller's own, e.g. the relay's linger)."""
    return {**PRODUCER_DEFAULTS, "logger": LIBRDKAFKA_LOG, **settings.kafka_config("producer"),
            **PINNED["producer"], **overrides}


def consumer_config(settings: Settings, group_id: str | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """:data:`CONSUMER_DEFAULTS` < the settings' consumer options < the group (and, for the
    workers' group, ``PHOENIX_GROUP_INSTANCE_ID``) and pinned guarantees < ``overrides``."""
    group = group_id or settings.consumer_group
    identity: dict[str, Any] = {"group.id": group}
    if settings.group_instance_id and group == settings.consumer_group:
        identity["group.instance.id"] = settings.group_instance_id
    return {**CONSUMER_DEFAULTS, "logger": LIBRDKAFKA_LOG, **settings.kafka_config("consumer"),
            **identity, **PINNED["consumer"], **overrides}


def admin_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """What every AdminClient of the service is built with: the settings' admin options
    (shared options minus consumer- and producer-only keys, then the admin map)."""
    return {"logger": LIBRDKAFKA_LOG, **settings.kafka_config("admin"), **overrides}


def new_producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent producer (acks=all, ordered retries), batching with a short linger.

    Keys are partitioned like the Java client does (``murmur2_random``: murmur2 of the key,
    random for a null key), so a resource's records land on the same partition whoever
    publishes them; librdkafka's own default (CRC32) would not agree with Java publishers."""
    return Producer(producer_config(settings, **overrides))


def new_consumer(settings: Settings, group_id: str | None = None,
                 **overrides: Any) -> Consumer:
    """Manual offset storage (the owner stores an offset once it is done with the record),
    cooperative-sticky assignment, auto-commit of what was stored. The workers' group gets
    static membership when ``PHOENIX_GROUP_INSTANCE_ID`` is set."""
    return Consumer(consumer_config(settings, group_id, **overrides))


def ensure_topics(common: dict[str, Any], topics: dict[str, int], timeout: float = 30) -> None:
    """Create missing topics (replication = min(3, brokers)); existing ones are left alone.
    ``common`` is an admin client's configuration (:func:`admin_config`)."""
    admin = AdminClient(common)
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
