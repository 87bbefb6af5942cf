"""processed_commands older than the retention window are pruned; newer ones stay; a replay
of pruned commands is refused."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from phoenix_resources import bootstrap
from phoenix_resources.adapters.postgres.outbox import PostgresOutboxReader
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.relay import build_relay
from phoenix_resources.observability import Metrics
from tests.support.pipeline import (
    ACTIVE,
    Pipeline,
    create,
    events,
    outcomes,
    publish,
    resources,
    scalar,
    update,
    wait_until,
)

pytestmark = pytest.mark.integration

INSERT = """
INSERT INTO processed_commands (command_id, resource_id, command_type, outcome, processed_at)
SELECT gen_random_uuid(), gen_random_uuid(), 'CREATE', 'applied', now() - %s::interval
FROM generate_series(1, %s)
"""


def test_prune_deletes_only_rows_older_than_the_window_in_chunks(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT, ("10 days", 2500))
        conn.execute(INSERT, ("1 hour", 30))
    session = PostgresOutboxReader(database_url, lock_key=1)
    try:
        pruned = session.prune_processed(older_than_s=7 * 24 * 3600, chunk=1000)
    finally:
        session.close()
    assert pruned == 2500
    assert scalar(database_url, "SELECT count(*) FROM processed_commands") == 30


def test_the_leading_relay_prunes_in_the_background(settings: Settings,
                                                    database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT, ("3 hours", 10))
        conn.execute(INSERT, ("1 minute", 5))
    short = settings.model_copy(update={"processed_retention_hours": 1.0,
                                        "relay_lock_key": uuid.uuid4().int % 2**31})
    metrics = Metrics()
    relay = build_relay(short, metrics)
    assert relay.rules.lead()
    relay.rules.housekeep()
    relay.rules.step_down()
    assert metrics.outbox_pruned._value.get() == 10
    assert scalar(database_url, "SELECT count(*) FROM processed_commands") == 5


def test_prune_keeps_parked_commands_and_commands_issued_later_than_the_window(
        database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT, ("10 days", 3))
        conn.execute("UPDATE processed_commands SET outcome = 'parked'")
        conn.execute(INSERT, ("10 days", 4))
        # A publisher's clock ran ahead: issued "in the future" of its processing time.
        conn.execute("UPDATE processed_commands SET issued_at = now() "
                     "WHERE outcome = 'applied' AND ctid IN (SELECT ctid FROM "
                     "processed_commands WHERE outcome = 'applied' LIMIT 1)")
    session = PostgresOutboxReader(database_url, lock_key=1)
    try:
        assert session.prune_processed(older_than_s=7 * 24 * 3600) == 3
    finally:
        session.close()
    assert scalar(database_url, "SELECT count(*) FROM processed_commands "
                                "WHERE outcome = 'parked'") == 3


def test_a_replay_of_pruned_commands_is_refused_and_changes_nothing(
        settings: Settings, database_url: str) -> None:
    """Prune, then read the topic again from the earliest offset (a new group: what a reset
    or expired group offsets do): the old commands are refused (CMD-008), state and events
    stay as they were."""
    rid = uuid.uuid4()
    commands = [create(rid, "kept"), update(rid, status=ACTIVE), update(rid, name="renamed")]
    publish(settings, commands)
    with Pipeline(settings):
        assert len(events(settings, expected=3)) == 3
    before = resources(database_url)[rid]

    time.sleep(2.5)
    session = PostgresOutboxReader(database_url, lock_key=1)
    try:
        assert session.prune_processed(older_than_s=2.0) == 3
    finally:
        session.close()
    replay = settings.model_copy(update={"processed_retention_hours": 2.0 / 3600,
                                         "consumer_group": f"{settings.consumer_group}-again"})
    with Pipeline(replay):
        wait_until(lambda: len(outcomes(database_url)) == 3, what="three outcomes")
        wait_until(lambda: {o[:2] for o in outcomes(database_url).values()}
                   == {("rejected", "CMD-008")}, what="all refused as too old")
        assert len(events(settings, expected=3, idle=2.0)) == 3
    assert resources(database_url)[rid] == before


def test_the_worker_says_when_the_topic_outlives_the_dedupe_window(
        settings: Settings, kafka_servers: str) -> None:
    topic = f"{settings.commands_topic}.month"
    admin = AdminClient({"bootstrap.servers": kafka_servers})
    created = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                            config={"retention.ms": str(30 * 86_400_000)})])
    created[topic].result(30)
    a_week = settings.model_copy(update={"commands_topic": topic,
                                         "processed_retention_hours": 24.0 * 7})
    # The new topic's metadata reaches every broker listener shortly after creation.
    wait_until(lambda: bootstrap.replay_window_warning(a_week) is not None, timeout=20,
               what="the retention warning")
    warning = bootstrap.replay_window_warning(a_week)
    assert warning is not None
    assert "retention.ms=2592000000" in warning
    assert "CMD-008" in warning
    a_month = a_week.model_copy(update={"processed_retention_hours": 24.0 * 30})
    assert bootstrap.replay_window_warning(a_month) is None
