"""publish_all against the real broker: what it refuses for good is reported per record, the
rest is delivered; and a command close to the broker's 1 MiB limit still gets a dead letter
(the issue: its DLQ copy used to be too large to send, and the worker retried it forever)."""

from __future__ import annotations

import os
import uuid

import pytest
from confluent_kafka import Producer

from phoenix_resources.adapters.kafka import new_producer, publish_all
from phoenix_resources.adapters.records import OutgoingRecord
from phoenix_resources.config import Settings
from phoenix_resources.errors import RecordRefused
from tests.support.kafka import create_limited_topic, header, read_all
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.integration


def small_limit_topic(settings: Settings, limit: int = 20_000) -> str:
    return create_limited_topic(settings.kafka_bootstrap_servers,
                                f"t.{uuid.uuid4().hex[:10]}.small", limit)


def test_only_the_record_over_the_topic_limit_is_refused(settings: Settings) -> None:
    topic = small_limit_topic(settings)
    records = [OutgoingRecord(topic, f"k{i}".encode(),
                              os.urandom(50_000) if i == 2 else b"v%d" % i, [])
               for i in range(6)]
    with pytest.raises(RecordRefused) as caught:
        publish_all(new_producer(settings), records)
    assert set(caught.value.refused) == {2}
    assert caught.value.refused[2].startswith("MSG_SIZE_TOO_LARGE")
    assert caught.value.delivered == frozenset({0, 1, 3, 4, 5})
    on_topic = read_all(settings.kafka_bootstrap_servers, topic, expected=5)
    assert [m.value() for m in on_topic] == [b"v0", b"v1", b"v3", b"v4", b"v5"]


def test_a_record_over_the_producer_limit_is_refused_before_it_is_sent(
        settings: Settings) -> None:
    records = [OutgoingRecord(settings.events_topic, b"k", os.urandom(1_100_000), []),
               OutgoingRecord(settings.events_topic, b"k", b"after", []),
               OutgoingRecord(settings.events_topic, b"j", b"other", [])]
    with pytest.raises(RecordRefused) as caught:
        publish_all(new_producer(settings), records, keep_key_order=True)
    assert set(caught.value.refused) == {0}
    assert caught.value.held == frozenset({1})
    assert caught.value.delivered == frozenset({2})


def test_a_topic_that_does_not_exist_is_refused_once_metadata_confirms_it(
        settings: Settings) -> None:
    # Auto-creation is off on the local broker; a short propagation wait keeps this quick.
    producer = new_producer(settings, **{"topic.metadata.propagation.max.ms": 1000})
    missing = f"t.{uuid.uuid4().hex[:10]}.missing"
    records = [OutgoingRecord(missing, b"k", b"v", []),
               OutgoingRecord(settings.events_topic, b"k", b"v", [])]
    with pytest.raises(RecordRefused) as caught:
        publish_all(producer, records)
    assert set(caught.value.refused) == {0}
    assert "UNKNOWN_TOPIC" in caught.value.refused[0]
    assert caught.value.delivered == frozenset({1})


def test_a_command_near_one_mib_is_dead_lettered_truncated_and_the_worker_goes_on(
        settings: Settings) -> None:
    big = os.urandom(1_040_000)  # the broker takes it (1 MiB topic limit); too large a command
    # Idempotent, so a retried send cannot put the small command ahead of the big one.
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "message.max.bytes": 1_048_576, "enable.idempotence": True})
    key = str(uuid.uuid4()).encode()
    producer.produce(settings.commands_topic, key=key, value=big,
                     headers=[("content-type", b"application/json"), ("x-trace", b"t" * 5000)])
    producer.produce(settings.commands_topic, key=key, value=b"{}",
                     headers=[("content-type", b"application/json")])
    assert producer.flush(30) == 0

    with Pipeline(settings, relay=False):
        letters = read_all(settings.kafka_bootstrap_servers, settings.dlq_topic, expected=2,
                           timeout=60)
    assert len(letters) == 2
    # Found by reason, not by position: the DLQ's order across commands is not a guarantee
    # (a dead letter the topic refused for its size is rebuilt and sent after the others).
    by_reason = {header(m, "dlq.reason"): m for m in letters}
    assert set(by_reason) == {"too-large", "invalid-field"}
    first, second = by_reason["too-large"], by_reason["invalid-field"]
    assert header(first, "dlq.source.offset") is not None
    assert int(header(first, "dlq.source.offset") or -1) \
        < int(header(second, "dlq.source.offset") or -1)
    assert header(first, "dlq.truncated") == "true"
    assert header(first, "dlq.original.value.size") == str(len(big))
    assert header(first, "__connect.errors.offset") == header(first, "dlq.source.offset")
    assert header(first, "x-trace") == "t" * 5000  # original headers kept while they fit
    assert big.startswith(first.value() or b"-")
    assert len(first.value() or b"") < len(big)
    assert header(second, "dlq.truncated") is None  # the next poison is sent whole
