"""Kafka side effects: clients, topics, dead letters, and batch publishing with awaited
delivery. Server processes get their clients through ``bootstrap``; the client library calls
:func:`new_producer` / :func:`new_consumer` directly. Both pass their settings as a
:class:`KafkaSettings` (``config.Settings`` or the client's ``ClientSettings``)."""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from phoenix_resources.adapters.dlq import dead_letter
from phoenix_resources.adapters.kafka_logs import librdkafka_logger
from phoenix_resources.adapters.publish import publish_all
from phoenix_resources.adapters.records import (
    Headers,
    OutgoingRecord,
    header_pairs,
    text_headers,
)
from phoenix_resources.errors import BrokerUnavailable, ConfigurationError
from phoenix_resources.kafka_options import PINNED, ClientKind, KafkaValue, layered

__all__ = ["JAVA_PARTITIONER", "Headers", "KafkaSettings", "OutgoingRecord", "WorkersGroup",
           "admin_config", "consumer_config", "dead_letter", "ensure_topics", "header_pairs",
           "new_consumer", "new_producer", "partition_key", "producer_config", "publish_all",
           "text_headers"]

log = logging.getLogger(__name__)

LIBRDKAFKA_LOG = librdkafka_logger()
"""Every client's ``logger``: librdkafka's lines go through Python logging (JSON in server
processes), never raw to stderr. Named like ``observability.logs.LIBRDKAFKA_LOGGER``.
Repeats of one problem (a broker refusing connections, retried several times a second) are
held back: one line per problem and broker a minute (``adapters/kafka_logs.py``)."""

JAVA_PARTITIONER = "murmur2_random"
"""The Java client's default partitioner, in librdkafka's name."""


CLUSTER_DEFAULTS: dict[str, Any] = {"socket.timeout.ms": 10_000}
"""How every producer and consumer notices a hung broker (a stopped process, a wedged JVM,
a host that stopped answering without closing its sockets): a request unanswered for 10 s
closes the connection, and librdkafka looks up the partition's leader again, by then
another broker once the controller has fenced the hung one. librdkafka's own 60 s would
stall every partition the hung broker led for a minute (or until it wakes up). A broker
slower than this to answer (acks=all waiting for a lagging follower) has its request sent
again: the producer is idempotent, a fetch is only a read."""

PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 5, "compression.type": "lz4",
                                     "client.id": "phoenix-resources", **CLUSTER_DEFAULTS}
"""Tuning a producer starts from; the option maps may change any of it."""
CONSUMER_DEFAULTS: dict[str, Any] = {"enable.auto.commit": True, "auto.commit.interval.ms": 1000,
                                     "auto.offset.reset": "earliest",
                                     "partition.assignment.strategy": "cooperative-sticky",
                                     "enable.partition.eof": False, "fetch.wait.max.ms": 50,
                                     "queued.min.messages": 20_000,
                                     "client.id": "phoenix-resources", **CLUSTER_DEFAULTS}
"""What a consumer starts from; the option maps may change any of it.

``queued.min.messages``: librdkafka prefetches up to 100,000 records per partition (within
``queued.max.messages.kbytes``, 64 MiB), so a worker facing a backlog held all of it:
20,000 (twenty of the worker's batches per partition) kept the same throughput in
``make bench`` with 15 MiB less peak RSS (165 → 150 MiB on 100,000 queued commands)."""


class KafkaSettings(Protocol):
    """What every client is built from: ``bootstrap.servers`` and the option maps that apply
    to one kind of client (``PHOENIX_KAFKA_*``; see ``config.Settings.kafka_config``)."""

    def kafka_config(self, client: ClientKind) -> dict[str, KafkaValue]: ...


@runtime_checkable
class WorkersGroup(Protocol):
    """Settings that name the workers' consumer group (the server's ``config.Settings``):
    the default group of :func:`consumer_config`, with its static membership."""

    @property
    def consumer_group(self) -> str: ...
    @property
    def group_instance_id(self) -> str | None: ...


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """:data:`PRODUCER_DEFAULTS` < the settings' producer options < the pinned guarantees
    (``kafka_options.PINNED``) < ``overrides`` (the caller's own, e.g. the relay's linger).
    librdkafka's aliases count as one key (``kafka_options.layered``). A caller's default
    that the user's options should beat is not an override: leave out what they set
    (``kafka_options.unset_by``)."""
    return layered(PRODUCER_DEFAULTS, {"logger": LIBRDKAFKA_LOG},
                   settings.kafka_config("producer"), PINNED["producer"], overrides)


def consumer_config(settings: KafkaSettings, group_id: str | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """:data:`CONSUMER_DEFAULTS` < the settings' consumer options < the group (and, for the
    workers' group, ``PHOENIX_GROUP_INSTANCE_ID``) and pinned guarantees < ``overrides``.

    Without ``group_id`` the consumer joins the workers' group, which only settings that
    name it (:class:`WorkersGroup`) know; other settings must pass a group."""
    return layered(CONSUMER_DEFAULTS, {"logger": LIBRDKAFKA_LOG},
                   settings.kafka_config("consumer"), _group_identity(settings, group_id),
                   PINNED["consumer"], overrides)


def _group_identity(settings: KafkaSettings, group_id: str | None) -> dict[str, Any]:
    workers = settings if isinstance(settings, WorkersGroup) else None
    group = group_id or (workers.consumer_group if workers is not None else None)
    if group is None:
        raise ConfigurationError("a consumer needs a group id: these settings name no "
                                 "default group")
    identity: dict[str, Any] = {"group.id": group}
    if workers is not None and workers.group_instance_id and group == workers.consumer_group:
        identity["group.instance.id"] = workers.group_instance_id
    return identity


def admin_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """What every AdminClient of the service is built with: the settings' admin options
    (shared options minus consumer- and producer-only keys, then the admin map)."""
    return layered({"logger": LIBRDKAFKA_LOG}, settings.kafka_config("admin"), overrides)


def new_producer(settings: KafkaSettings, **overrides: Any) -> Producer:
    """An idempotent producer (acks=all, ordered retries), batching with a short linger.

    Keys are partitioned like the Java client does (``murmur2_random``: murmur2 of the key,
    random for a null key), so a resource's records land on the same partition whoever
    publishes them; librdkafka's own default (CRC32) would not agree with Java publishers."""
    return Producer(producer_config(settings, **overrides))


def new_consumer(settings: KafkaSettings, group_id: str | None = None,
                 **overrides: Any) -> Consumer:
    """Manual offset storage (the owner stores an offset once it is done with the record),
    cooperative-sticky assignment, auto-commit of what was stored. The workers' group gets
    static membership when ``PHOENIX_GROUP_INSTANCE_ID`` is set."""
    return Consumer(consumer_config(settings, group_id, **overrides))


def ensure_topics(common: dict[str, Any], topics: dict[str, int], timeout: float = 30, *,
                  replication: int | None = None, min_insync: int | None = None) -> None:
    """Create missing topics; existing ones are left alone. ``common`` is an admin client's
    configuration (:func:`admin_config`).

    Each gets ``replication`` replicas (default ``min(3, brokers registered now)``) and
    ``min.insync.replicas`` = ``min_insync`` (default: one less than the replication, at
    least 1), set on the topic rather than left to the cluster's default, which is 1 unless
    the cluster says otherwise: with 3 replicas and 2 required, one broker may be lost without
    losing an acknowledged record, and two stop writes instead of risking them."""
    admin = AdminClient(common)
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as e:
        raise BrokerUnavailable(f"listing topics: {e}") from e
    missing = {t: n for t, n in topics.items() if t not in meta.topics}
    if not missing:
        return
    factor = replication or min(3, max(1, len(meta.brokers)))
    insync = min_insync or max(1, factor - 1)
    if insync > factor:
        raise ConfigurationError(f"min.insync.replicas {insync} is above the replication "
                                 f"factor {factor}: no write could ever be acknowledged")
    futures = admin.create_topics([
        NewTopic(t, num_partitions=n, replication_factor=factor,
                 config={"min.insync.replicas": str(insync)}) for t, n in missing.items()],
        operation_timeout=timeout)
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout)
            log.info("created topic", extra={"topic": topic, "partitions": missing[topic],
                                             "replication": factor, "min_insync": insync})
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ConfigurationError(f"cannot create topic {topic}: {e}") from e


def partition_key(message: Message) -> tuple[str, int]:
    topic, partition = message.topic(), message.partition()
    assert topic is not None, "a consumed message has a topic"
    assert partition is not None, "a consumed message has a partition"
    return topic, partition
