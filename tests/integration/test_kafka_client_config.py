"""The option routing against the real librdkafka: no CONFWARN, and the tables are right."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from phoenix_resources.adapters import kafka
from phoenix_resources.config import Settings
from phoenix_resources.kafka_options import CONSUMER_ONLY, PRODUCER_ONLY

pytestmark = pytest.mark.integration

# A valid value for every client-specific key in the tables (librdkafka refuses bad values
# before it could warn about the client type).
CONSUMER_SAMPLES: dict[str, Any] = {
    "group.id": "g", "group.instance.id": "i", "partition.assignment.strategy": "range",
    "session.timeout.ms": 45000, "heartbeat.interval.ms": 3000,
    "group.protocol.type": "consumer", "group.protocol": "classic",
    "group.remote.assignor": "uniform", "coordinator.query.interval.ms": 600000,
    "max.poll.interval.ms": 300000, "enable.auto.commit": True,
    "auto.commit.interval.ms": 5000, "enable.auto.offset.store": True,
    "queued.min.messages": 1000, "queued.max.messages.kbytes": 65536,
    "fetch.wait.max.ms": 500, "fetch.queue.backoff.ms": 1000,
    "fetch.message.max.bytes": 1048576, "max.partition.fetch.bytes": 1048576,
    "fetch.max.bytes": 52428800, "fetch.min.bytes": 1, "fetch.error.backoff.ms": 500,
    "isolation.level": "read_committed", "enable.partition.eof": False, "check.crcs": False,
    "auto.offset.reset": "earliest", "consume.callback.max.messages": 0,
}
PRODUCER_SAMPLES: dict[str, Any] = {
    "transactional.id": "t", "transaction.timeout.ms": 60000, "enable.idempotence": True,
    "enable.gapless.guarantee": False, "queue.buffering.max.messages": 1000,
    "queue.buffering.max.kbytes": 1024, "queue.buffering.max.ms": 5, "linger.ms": 5,
    "message.send.max.retries": 10, "retries": 10,
    "queue.buffering.backpressure.threshold": 1, "compression.codec": "lz4",
    "compression.type": "lz4", "compression.level": -1, "batch.num.messages": 1000,
    "batch.size": 100000, "delivery.report.only.error": False,
    "sticky.partitioning.linger.ms": 10, "request.required.acks": -1, "acks": "all",
    "request.timeout.ms": 30000, "message.timeout.ms": 300000,
    "delivery.timeout.ms": 300000, "partitioner": "murmur2_random",
}


class Log:
    """librdkafka's log lines, through the ``logger`` property."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.logger = logging.getLogger(f"rdkafka-{uuid.uuid4().hex[:8]}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(logging.StreamHandler(self.buffer))

    def confwarns(self) -> list[str]:
        return [line for line in self.buffer.getvalue().splitlines() if "CONFWARN" in line]


@pytest.fixture
def log() -> Iterator[Log]:
    log = Log()
    yield log
    for handler in list(log.logger.handlers):
        log.logger.removeHandler(handler)


def _served(make: Callable[[], Any]) -> None:
    """Build a client, let it hand over what it logged at creation, and close it."""
    client = make()
    if isinstance(client, Consumer):
        client.poll(0.2)
        client.close()
    else:
        client.poll(0.2)


def test_the_tables_match_the_samples() -> None:
    assert set(CONSUMER_SAMPLES) == CONSUMER_ONLY
    assert set(PRODUCER_SAMPLES) == PRODUCER_ONLY


def test_every_consumer_only_key_is_one_librdkafka_warns_a_producer_about(
        kafka_servers: str, log: Log) -> None:
    _served(lambda: Producer({"bootstrap.servers": kafka_servers, "logger": log.logger,
                              **CONSUMER_SAMPLES}))
    warned = {key for key in CONSUMER_SAMPLES
              if any(f"property {key} is a consumer property" in w for w in log.confwarns())}
    # librdkafka names an alias by its canonical property.
    if "fetch.message.max.bytes" in warned:
        warned.add("max.partition.fetch.bytes")
    assert warned == set(CONSUMER_SAMPLES)


def test_every_producer_only_key_is_one_librdkafka_warns_a_consumer_about(
        kafka_servers: str, log: Log) -> None:
    samples = PRODUCER_SAMPLES
    _served(lambda: Consumer({"bootstrap.servers": kafka_servers, "group.id": "conf-check",
                              "logger": log.logger, **samples}))
    warned = {key for key in samples
              if any(f"property {key} is a producer property" in w for w in log.confwarns())}
    aliases = {"linger.ms": "queue.buffering.max.ms", "retries": "message.send.max.retries",
               "compression.type": "compression.codec", "acks": "request.required.acks",
               "delivery.timeout.ms": "message.timeout.ms"}
    warned |= {alias for alias, canonical in aliases.items() if canonical in warned}
    assert warned == set(samples)


def test_the_service_clients_get_no_confwarn_from_any_option_map(
        kafka_servers: str, log: Log) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka_servers,
        kafka_options={"session.timeout.ms": 45000, "linger.ms": 10,
                       "socket.keepalive.enable": True},
        kafka_consumer_options={"session.timeout.ms": 45000, "max.poll.interval.ms": 600000},
        kafka_producer_options={"linger.ms": 20, "batch.size": 200000},
        kafka_admin_options={"socket.timeout.ms": 10000},
        group_instance_id=f"worker-{uuid.uuid4().hex[:6]}",
    )
    _served(lambda: kafka.new_producer(settings, logger=log.logger))
    _served(lambda: kafka.new_consumer(settings, logger=log.logger))
    _served(lambda: AdminClient(kafka.admin_config(settings, logger=log.logger)))
    assert log.confwarns() == []
