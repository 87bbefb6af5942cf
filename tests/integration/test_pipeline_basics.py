"""The worker + relay against the real broker and database: the happy path, rejections,
duplicates and the DLQ."""

from __future__ import annotations

import uuid

import pytest

from phoenix_resources.config import Settings
from phoenix_resources.domain.events import EventType
from tests.support.kafka import header, read_all
from tests.support.pipeline import (
    ACTIVE,
    Pipeline,
    create,
    delete,
    events,
    outcomes,
    publish,
    publish_raw,
    rejections,
    resources,
    update,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_commands_become_rows_and_versioned_events_in_order(settings: Settings,
                                                             database_url: str) -> None:
    rid = uuid.uuid4()
    commands = [create(rid, "db", config={"size": "s"}), update(rid, status=ACTIVE),
                update(rid, config={"size": "m"}, expected_version=2), delete(rid)]
    publish(settings, commands)
    with Pipeline(settings):
        received = events(settings, expected=4)
    row = resources(database_url)[rid]
    assert row["version"] == 4
    assert row["deleted_at"] is not None
    assert [r.event.version for r in received] == [1, 2, 3, 4]
    assert [r.event.event_type for r in received] == [
        EventType.CREATED, EventType.UPDATED, EventType.UPDATED, EventType.DELETED]
    first = received[0].message
    assert first.key() == str(rid).encode()
    assert header(first, "ce_id") == str(received[0].event.event_id)
    assert header(first, "ce_type") == "phoenix.resources.v1.ResourceCreated"
    assert header(first, "ce_subject") == str(rid)
    assert header(first, "ce_specversion") == "1.0"
    assert all(o[0] == "applied" for o in outcomes(database_url).values())


def test_rejected_commands_are_recorded_and_announced(settings: Settings,
                                                      database_url: str) -> None:
    rid = uuid.uuid4()
    stale = update(rid, name="late")
    recreate = create(rid, "again")
    conflict = update(uuid.uuid4(), name="x")
    commands = [create(rid, "a"), update(rid, name="b", expected_version=5), delete(rid),
                stale, recreate, conflict]
    publish(settings, commands)
    with Pipeline(settings):
        got = rejections(settings, expected=4)
        events(settings, expected=2)
    codes = {r.command_id: r.code for r in got}
    assert codes[commands[1].command_id] == "CMD-006"  # version conflict
    assert codes[stale.command_id] == "CMD-005"  # update after delete
    assert codes[recreate.command_id] == "CMD-005"  # re-create of a deleted id
    assert codes[conflict.command_id] == "CMD-004"  # not found
    recorded = outcomes(database_url)
    assert recorded[stale.command_id][:2] == ("rejected", "CMD-005")
    assert resources(database_url)[rid]["name"] == "a"


def test_every_command_delivered_twice_changes_the_database_once(settings: Settings,
                                                                  database_url: str) -> None:
    rids = [uuid.uuid4() for _ in range(20)]
    commands = [c for rid in rids for c in (create(rid), update(rid, status=ACTIVE))]
    publish(settings, commands)
    publish(settings, commands)  # a publisher's retry: same command ids
    with Pipeline(settings) as p:
        received = events(settings, expected=40)
        wait_until(lambda: p.metrics.commands.labels("duplicate", "none")._value.get() == 40,
                   what="40 duplicates counted")
    assert len(received) == 40
    assert all(row["version"] == 2 for row in resources(database_url).values())
    recorded = outcomes(database_url)
    assert len(recorded) == 40
    assert {o[2] for o in recorded.values()} == {1}  # one duplicate delivery each


def test_undecodable_bytes_go_to_the_dlq_with_reasons_and_the_worker_goes_on(
        settings: Settings, database_url: str) -> None:
    good = create(name="after-poison")
    publish_raw(settings, [
        (b"k1", b"\xde\xad\xbe\xef", [("x-origin", b"test")]),
        (b"k2", b'{"command_type": "CREATE"}', [("content-type", b"application/json")]),
        (b"k3", b"{broken json", []),
        (b"k4", b"x" * 300_000, []),
    ])
    publish(settings, [good])
    with Pipeline(settings):
        dead = read_all(settings.kafka_bootstrap_servers, settings.dlq_topic, expected=4)
        events(settings, expected=1)
    reasons = sorted(header(m, "dlq.reason") or "" for m in dead)
    assert reasons == ["malformed-json", "missing-field", "too-large", "unknown-format"]
    first = next(m for m in dead if m.key() == b"k1")
    assert first.value() == b"\xde\xad\xbe\xef"
    assert header(first, "x-origin") == "test"
    assert header(first, "dlq.source.topic") == settings.commands_topic
    assert header(first, "dlq.source.offset") is not None
    assert good.resource_id in resources(database_url)
