"""The stack is real: a broker that keeps group offsets and commits transactions, and SQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.support.kafka import create_topics, read_all

pytestmark = pytest.mark.integration


def test_consumer_group_commits_offsets_on_the_real_broker(kafka_servers: str) -> None:
    topic = f"smoke.{uuid.uuid4().hex[:8]}"
    create_topics(kafka_servers, {topic: 2})
    producer = Producer({"bootstrap.servers": kafka_servers, "enable.idempotence": True})
    for i in range(10):
        producer.produce(topic, key=str(i % 3).encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0

    group = f"smoke-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": kafka_servers, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen: list[bytes] = []
    while len(seen) < 10:
        for m in consumer.consume(10, timeout=1.0):
            assert m.error() is None
            seen.append(m.value())
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)],
                                   timeout=10)
    consumer.close()
    assert sorted(seen) == sorted(f"v{i}".encode() for i in range(10))
    assert sum(max(tp.offset, 0) for tp in committed) == 10


def test_transactional_producer_commit_is_visible_and_abort_is_not(kafka_servers: str) -> None:
    topic = f"smoke.tx.{uuid.uuid4().hex[:8]}"
    create_topics(kafka_servers, {topic: 1})
    producer = Producer({"bootstrap.servers": kafka_servers,
                         "transactional.id": f"smoke-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(30)

    consumer = Consumer({"bootstrap.servers": kafka_servers, "group.id": "smoke-reader",
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    for _ in range(20):
        values += [m.value() for m in consumer.consume(10, timeout=0.5) if m.error() is None]
        if values:
            break
    consumer.close()
    assert values == [b"committed"]
    assert len(read_all(kafka_servers, topic, idle=0.5)) >= 1


def test_sql_runs_on_the_real_postgres(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert version is not None
    assert int(version[0]) >= 130000
    assert {"resources", "processed_commands", "outbox"} <= tables
