"""PostgreSQL and Kafka going away mid-stream: waited out, nothing lost, nothing dead-lettered."""

from __future__ import annotations

import time

import pytest

from phoenix_resources.config import Settings
from phoenix_resources.devstack import KafkaBroker, PostgresCluster
from tests.support.kafka import Topics, create_topics, read_all
from tests.support.pipeline import Pipeline, events, outcomes, publish, resources, wait_until
from tests.support.workload import BackgroundPublisher, reference, stream

pytestmark = pytest.mark.e2e


def _check(settings: Settings, database_url: str, commands: list) -> None:  # type: ignore[type-arg]
    expected, n_events = reference(commands)
    # Usually ~10 s. A consumer that could not reach its group coordinator while the broker
    # reloaded its state waits out a whole session timeout (45 s) and rejoins before it
    # resumes; on a loaded 2-core machine that once took longer than 90 s in CI.
    wait_until(lambda: len(outcomes(database_url)) == len(commands), 180,
               "every command recorded after the outage")
    rows = resources(database_url)
    assert {rid: (r.name, r.version) for rid, r in expected.items()} == {
        rid: (row["name"], row["version"]) for rid, row in rows.items()}
    assert {o for o, _, _ in outcomes(database_url).values()} == {"applied"}
    received = events(settings, expected=n_events)
    assert len({r.event.event_id for r in received}) == n_events
    assert read_all(settings.kafka_bootstrap_servers, settings.dlq_topic, idle=0.5) == []


def _on_private_broker(settings: Settings, broker: KafkaBroker, **updates: object) -> Settings:
    """``settings`` pointed at ``broker``, with topics of its own created there."""
    topics = Topics.unique()
    create_topics(broker.bootstrap_servers,
                  {topics.commands: 3, topics.events: 3, topics.rejections: 1, topics.dlq: 1})
    return settings.model_copy(update={
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "commands_topic": topics.commands, "events_topic": topics.events,
        "rejections_topic": topics.rejections, "dlq_topic": topics.dlq, **updates})


def test_postgres_stopped_mid_stream_pauses_then_resumes_by_itself(
        settings: Settings, private_postgres: PostgresCluster) -> None:
    url = private_postgres.url()
    on_private = settings.model_copy(update={"database_url": url})
    commands = stream(resources=100, updates_each=9)
    publisher = BackgroundPublisher(on_private, commands, rate=500).start()
    with Pipeline(on_private) as p:
        wait_until(lambda: len(outcomes(url)) > 200, 60, "some commands applied")
        private_postgres.stop("fast")
        time.sleep(5)
        assert p.worker.paused, "the worker should pause its partitions while the DB is down"
        private_postgres.start()
        publisher.join()
        _check(on_private, url, commands)
        faults = p.metrics.transient_errors.labels("worker", "DatabaseUnavailable")
        assert faults._value.get() >= 1
        assert not p.worker.paused


def test_kafka_restarted_mid_stream_loses_nothing(settings: Settings, database_url: str,
                                                  private_broker: KafkaBroker) -> None:
    on_private = _on_private_broker(settings, private_broker)
    commands = stream(resources=100, updates_each=5)
    half = len(commands) // 2
    publish(on_private, commands[:half])
    with Pipeline(on_private) as p:
        wait_until(lambda: len(outcomes(database_url)) > 100, 60, "some commands applied")
        private_broker.stop()
        time.sleep(3)
        private_broker.start()
        publish(on_private, commands[half:])
        _check(on_private, database_url, commands)
        assert not p.errors


def test_a_consumer_out_of_its_group_past_the_limit_is_replaced_and_loses_nothing(
        settings: Settings, database_url: str, private_broker: KafkaBroker) -> None:
    on_private = _on_private_broker(settings, private_broker, consumer_replace_after_s=5.0)
    commands = stream(resources=60, updates_each=4)
    half = len(commands) // 2
    publish(on_private, commands[:half])
    with Pipeline(on_private) as p:
        replaced = p.metrics.consumer_replacements
        wait_until(lambda: len(outcomes(database_url)) > 60, 60, "some commands applied")
        wait_until(lambda: p.worker.readiness()["group_state"] == "up/steady", 60,
                   "the consumer settled in its group")
        # A first join slower than the limit (a fresh broker loading its group coordinator,
        # a loaded machine) is itself replaced: count from here.
        before = replaced._value.get()
        private_broker.stop()
        wait_until(lambda: replaced._value.get() > before, 60,
                   "the consumer replaced while its group was out of reach")
        assert p.worker.readiness()["group_state"] != "up/steady"
        private_broker.start()
        publish(on_private, commands[half:])
        _check(on_private, database_url, commands)
        wait_until(lambda: p.worker.readiness()["group_state"] == "up/steady", 60,
                   "the new consumer settled in its group")
        assert not p.errors
