"""A record that is not an event, between two good ones, on the real broker: each
``on_error`` policy does what it says, and none loses a record silently."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer

from phoenix_resources.client import EventSubscriber
from phoenix_resources.config import Settings
from phoenix_resources.errors import ConfigurationError, DecodeError
from tests.support.events import make_event, produce_events, take
from tests.support.kafka import Topics, header, read_all

pytestmark = pytest.mark.integration

GARBAGE = b"\x00\x00\x00\x00\x2anot an event"


def good_garbage_good(settings: Settings) -> uuid.UUID:
    """Event v1, a garbage record, event v2 — one key, so one partition, in this order."""
    rid = uuid.uuid4()
    produce_events(settings, [make_event(rid, 1)])
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(settings.events_topic, key=str(rid).encode(), value=GARBAGE,
                     headers=[("ce_id", b"garbage")])
    assert producer.flush(10) == 0
    produce_events(settings, [make_event(rid, 2)])
    return rid


def test_raise_stops_at_the_record_every_time_and_stores_nothing_past_it(
        settings: Settings) -> None:
    good_garbage_good(settings)
    group = f"g-{uuid.uuid4()}"
    with EventSubscriber(settings, group, from_beginning=True) as sub:
        assert sub.on_error == "raise"  # the library's default
        deliveries = sub.deliveries(timeout=30)
        assert next(deliveries).event.version == 1
        with pytest.raises(DecodeError, match=rf"{settings.events_topic}\[\d\]@1"):
            next(deliveries)
        with pytest.raises(DecodeError):  # still there: nothing passed over
            take(sub, 1, timeout=15)
    # v1 was stored when the next was asked for; the garbage was not.
    with EventSubscriber(settings, group, on_error="skip") as sub:
        assert [d.event.version for d in take(sub, 1)] == [2]
        assert sub.skipped == 1


def test_skip_counts_logs_and_moves_on(settings: Settings,
                                       caplog: pytest.LogCaptureFixture) -> None:
    good_garbage_good(settings)
    group = f"g-{uuid.uuid4()}"
    with EventSubscriber(settings, group, from_beginning=True, on_error="skip") as sub:
        assert [d.event.version for d in take(sub, 2)] == [1, 2]
        assert sub.skipped == 1
    assert any(r.getMessage() == "undecodable event skipped" and r.levelname == "WARNING"
               for r in caplog.records)


def test_dead_letter_copies_the_original_with_reasons_then_moves_on(
        settings: Settings, topics: Topics) -> None:
    rid = good_garbage_good(settings)
    group = f"g-{uuid.uuid4()}"
    with EventSubscriber(settings, group, from_beginning=True, on_error="dead-letter",
                         dead_letter_topic=topics.dlq) as sub:
        assert [d.event.version for d in take(sub, 2)] == [1, 2]
        sub.ack()
        assert sub.dead_lettered == 1
    [letter] = read_all(settings.kafka_bootstrap_servers, topics.dlq, expected=1)
    assert letter.value() == GARBAGE
    assert letter.key() == str(rid).encode()
    assert header(letter, "ce_id") == "garbage"  # original headers kept
    assert header(letter, "dlq.reason")
    assert header(letter, "__connect.errors.topic") == settings.events_topic
    assert header(letter, "__connect.errors.offset") == "1"
    assert header(letter, "__connect.errors.connector.name") == f"subscriber:{group}"
    # Stored after the copy was acknowledged: the group does not see the garbage again.
    with EventSubscriber(settings, group, on_error="raise") as sub:
        assert take(sub, 1, timeout=5) == []


def test_dead_letter_to_a_missing_topic_raises_and_keeps_the_record(
        settings: Settings) -> None:
    good_garbage_good(settings)
    quick = settings.model_copy(update={"kafka_options": {
        "topic.metadata.propagation.max.ms": "1000"}})
    group = f"g-{uuid.uuid4()}"
    with EventSubscriber(quick, group, from_beginning=True, on_error="dead-letter",
                         dead_letter_topic=f"missing-{uuid.uuid4().hex}") as sub, \
            pytest.raises(ConfigurationError, match="refused"):
        take(sub, 3)
    with EventSubscriber(settings, group, on_error="skip") as sub:
        assert [d.event.version for d in take(sub, 1)] == [2]
        assert sub.skipped == 1


def test_a_policy_needs_what_it_names() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="dead_letter_topic"):
        EventSubscriber(settings, on_error="dead-letter")
    with pytest.raises(ConfigurationError, match="on_error"):
        EventSubscriber(settings, on_error="ignore")  # type: ignore[arg-type]
