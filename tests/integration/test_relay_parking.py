"""The relay parks an outbox row the broker refuses for good, and only that resource waits.

The events topic's ``max.message.bytes`` is lowered so the real broker refuses one large row
permanently (``MSG_SIZE_TOO_LARGE``): the rows of other resources are published, the parked
resource's later rows wait behind it in order, the relay stays up; after the topic is fixed,
``retry`` publishes the parked row and its followers in order — or ``discard`` drops it and
the followers flow."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from phoenix_resources.adapters.postgres import parked_outbox
from phoenix_resources.adapters.postgres.parked_outbox import Selection
from phoenix_resources.config import Settings
from tests.support.kafka import header, read_all, set_max_message_bytes
from tests.support.pipeline import Pipeline, scalar, wait_until

pytestmark = pytest.mark.integration

TOPIC_LIMIT = 20_000
BIG = 50_000  # random bytes: compression cannot bring it under the limit


def insert_rows(settings: Settings, rows: list[tuple[str, bytes]]) -> list[uuid.UUID]:
    """One outbox row per (resource id, payload), in this order; returns the event ids."""
    ids = [uuid.uuid4() for _ in rows]
    with psycopg.connect(settings.database_url) as conn:
        for event_id, (resource, payload) in zip(ids, rows, strict=True):
            conn.execute(
                "INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload, "
                "occurred_at) VALUES (%s, 'resource', %s, 'ResourceUpdated', %s, %s, %s)",
                (event_id, resource, settings.events_topic, payload, datetime.now(UTC)))
    return ids


def published(settings: Settings, expected: int) -> list[str]:
    """ce_id of every event on the topic, in offset order per partition (keys are
    resources, so one resource's events are in order)."""
    messages = read_all(settings.kafka_bootstrap_servers, settings.events_topic, expected,
                        timeout=60, idle=1.5)
    return [header(m, "ce_id") or "" for m in messages]


def in_resource_order(events: list[str], ids: list[uuid.UUID]) -> bool:
    positions = [events.index(str(i)) for i in ids]
    return positions == sorted(positions)


def test_a_refused_row_is_parked_and_only_its_resource_waits_until_retried(
        settings: Settings) -> None:
    set_max_message_bytes(settings.kafka_bootstrap_servers, settings.events_topic, TOPIC_LIMIT)
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    small = b"x" * 200
    a1, b1, a2, c1, b2, a3 = insert_rows(settings, [
        (a, os.urandom(BIG)), (b, small), (a, small), (c, small), (b, small), (a, small)])

    with Pipeline(settings, worker=False) as p:
        events = published(settings, expected=3)
        assert sorted(events) == sorted(map(str, [b1, c1, b2]))
        wait_until(lambda: p.relay.parked_outbox_rows == 1, what="the parked count")
        # Readiness counts the parked row as backlog (the relay stays ready: all else flows).
        state = p.relay.watch.readiness()
        assert (state["ok"], state["parked_rows"], state["waiting_rows"]) == (True, 1, 2)
        assert state["backlog_rows"] == 3
        reason = scalar(settings.database_url,
                        "SELECT parked_reason FROM outbox WHERE id = %s", a1)
        assert reason.startswith("MSG_SIZE_TOO_LARGE")
        assert scalar(settings.database_url, "SELECT count(*) FROM outbox "
                      "WHERE parked_reason IS NULL") == 2  # a2, a3 wait behind a1
        assert p.metrics.outbox_parked._value.get() == 1
        assert p.metrics.events_parked.labels(settings.events_topic)._value.get() == 1

        # Other resources keep flowing; the parked resource's new rows wait too.
        d1, a4 = insert_rows(settings, [(str(uuid.uuid4()), small), (a, small)])
        events = published(settings, expected=4)
        assert str(d1) in events
        assert str(a4) not in events

        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            listed = parked_outbox.list_parked(conn)
            assert [(r.event_id, r.aggregateid, r.waiting) for r in listed] == \
                [(str(a1), a, 3)]
            set_max_message_bytes(settings.kafka_bootstrap_servers, settings.events_topic,
                                  1_048_588)
            assert parked_outbox.retry(conn, Selection(resources=[a])) == [listed[0].seq]

        events = published(settings, expected=8)
        assert all(str(i) in events for i in (a1, a2, a3, a4))
        assert in_resource_order(events, [a1, a2, a3, a4])
        wait_until(lambda: p.relay.parked_outbox_rows == 0, what="the parked count")
        assert scalar(settings.database_url, "SELECT count(*) FROM outbox") == 0
    assert not p.errors  # the relay stayed up throughout


def test_a_discarded_parked_row_is_never_published_and_its_followers_flow(
        settings: Settings) -> None:
    set_max_message_bytes(settings.kafka_bootstrap_servers, settings.events_topic, TOPIC_LIMIT)
    a = str(uuid.uuid4())
    a1, a2 = insert_rows(settings, [(a, os.urandom(BIG)), (a, b"x" * 200)])
    with Pipeline(settings, worker=False) as p:
        wait_until(lambda: p.relay.parked_outbox_rows == 1, what="the row to be parked")
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            assert parked_outbox.retry(conn, Selection(seqs=[10**9])) == []
            gone = parked_outbox.discard(conn, Selection(everything=True))
        assert [r.event_id for r in gone] == [str(a1)]
        assert published(settings, expected=1) == [str(a2)]
    assert not p.errors
