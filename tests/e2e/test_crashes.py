"""Process crashes (kill -9) of workers and relays against the real broker and database."""

from __future__ import annotations

import collections
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from phoenix_resources.config import Settings
from tests.support.kafka import create_topics, header, read_all
from tests.support.pipeline import Pipeline, events, outcomes, publish, resources, wait_until
from tests.support.processes import Process
from tests.support.workload import BackgroundPublisher, reference, stream

pytestmark = pytest.mark.e2e


def _committed(settings: Settings, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "group.id": settings.consumer_group})
    try:
        tps = consumer.committed([TopicPartition(settings.commands_topic, p)
                                  for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        consumer.close()


def _assert_matches_reference(settings: Settings, database_url: str,
                              commands: list, received: list) -> None:  # type: ignore[type-arg]
    expected, n_events = reference(commands)
    rows = resources(database_url)
    assert {rid: (r.name, r.status.value, r.version) for rid, r in expected.items()} == {
        rid: (row["name"], row["status"], row["version"]) for rid, row in rows.items()}
    recorded = outcomes(database_url)
    assert set(recorded) == {c.command_id for c in commands}
    assert {o for o, _, _ in recorded.values()} == {"applied"}
    ids = [r.event.event_id for r in received]
    assert len(set(ids)) == n_events


def test_kill_9_between_database_commit_and_offset_commit_changes_nothing(
        settings: Settings, database_url: str) -> None:
    # Offsets are auto-committed only once an hour here: the database commits, the offsets
    # never do, and the kill lands exactly in the window the guarantee is about.
    no_commit = settings.model_copy(update={
        "kafka_consumer_options": {"auto.commit.interval.ms": 3600000}})
    commands = stream(resources=50, updates_each=4)
    publish(settings, commands)
    worker = Process("worker", no_commit)
    try:
        wait_until(lambda: len(outcomes(database_url)) == len(commands), 60,
                   "the whole stream committed to PostgreSQL")
    finally:
        worker.kill()
    assert _committed(settings, 3) == 0, "offsets were committed: the test missed the window"
    before = resources(database_url)

    with Pipeline(settings) as p:
        wait_until(lambda: p.metrics.commands.labels("duplicate", "none")._value.get()
                   >= len(commands), 60, "every redelivery counted as a duplicate")
        received = events(settings, expected=len(commands))
    assert resources(database_url) == before
    assert {d for _, _, d in outcomes(database_url).values()} == {1}
    _assert_matches_reference(settings, database_url, commands, received)
    assert len(received) == len(commands)  # one event per command, none repeated


def test_three_workers_one_killed_mid_stream_apply_everything_exactly_once(
        settings: Settings, database_url: str) -> None:
    topic = f"{settings.commands_topic}.six"
    create_topics(settings.kafka_bootstrap_servers, {topic: 6})
    six = settings.model_copy(update={"commands_topic": topic,
                                      "consumer_group": f"{settings.consumer_group}.six",
                                      "batch_size": 200})
    commands = stream(resources=300, updates_each=9)  # 3,000 commands
    publisher = BackgroundPublisher(six, commands, rate=600).start()
    workers = [Process("worker", six) for _ in range(3)]
    relay = Process("relay", six)
    try:
        wait_until(lambda: len(outcomes(database_url)) > len(commands) // 4, 60,
                   "a quarter of the stream applied")
        workers[0].kill()
        publisher.join()
        wait_until(lambda: len(outcomes(database_url)) == len(commands), 90,
                   "every command recorded")
        received = events(six, expected=len(commands))
    finally:
        for w in workers[1:]:
            assert w.terminate() == 0, w.output()[-2000:]
        relay.terminate()
    _assert_matches_reference(six, database_url, commands, received)
    per_resource: dict[uuid.UUID, list[int]] = collections.defaultdict(list)
    for r in received:
        per_resource[r.event.resource_id].append(r.event.version)
    assert all(v == list(range(1, 11)) for v in per_resource.values())


def test_standby_relay_takes_over_when_the_active_one_dies(settings: Settings,
                                                            database_url: str) -> None:
    commands = stream(resources=100, updates_each=9)  # 1,000 commands
    first = Process("relay", settings)
    first.wait_for_log("relay is the leader")
    second = Process("relay", settings)
    publisher = BackgroundPublisher(settings, commands, rate=400).start()
    try:
        with Pipeline(settings, relay=False):
            wait_until(lambda: len(read_all(settings.kafka_bootstrap_servers,
                                            settings.events_topic, idle=0.2)) > 200, 60,
                       "the first relay published some events")
            first.kill()
            second.wait_for_log("relay is the leader", timeout=30)
            publisher.join()
            wait_until(lambda: len(outcomes(database_url)) == len(commands), 60,
                       "every command recorded")
            received = events(settings, expected=len(commands))
    finally:
        second.terminate()
    _assert_matches_reference(settings, database_url, commands, received)
    # At least once: a repeat is allowed only as the same event (same id, same version),
    # and dropping repeats leaves every resource's versions contiguous and in order.
    first_id: dict[tuple[uuid.UUID, int], uuid.UUID] = {}
    seen: dict[uuid.UUID, list[int]] = collections.defaultdict(list)
    for r in received:
        key = (r.event.resource_id, r.event.version)
        assert first_id.setdefault(key, r.event.event_id) == r.event.event_id
        versions = seen[r.event.resource_id]
        if not versions or r.event.version > versions[-1]:
            versions.append(r.event.version)
        assert header(r.message, "ce_id") == str(r.event.event_id)
    assert all(v == list(range(1, 11)) for v in seen.values())
