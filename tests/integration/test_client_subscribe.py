"""The subscriber and the outcome watcher against a real broker, fed with events produced
here with the project's EventCodec (the worker and relay are not needed for these)."""

from __future__ import annotations

import uuid

import pytest

from phoenix_resources.client import CommandPublisher, Delivery, EventSubscriber
from phoenix_resources.config import Settings
from phoenix_resources.domain.events import (
    ResourceCreated,
)
from phoenix_resources.errors import OutcomeTimeout
from tests.support.events import (
    TRACEPARENT,
    make_event,
    produce_events,
    produce_rejection,
    take,
)

pytestmark = pytest.mark.integration



def test_typed_events_with_cloudevents_attributes_and_trace(settings: Settings) -> None:
    rid = uuid.uuid4()
    produce_events(settings, [make_event(rid, 1)])
    with EventSubscriber(settings, "g-typed", from_beginning=True) as sub:
        [delivery] = take(sub, 1)
    assert isinstance(delivery.event, ResourceCreated)
    assert delivery.event.resource_id == rid
    assert delivery.event.resource is not None
    assert delivery.event.resource.name == "r-1"
    assert delivery.ce["type"] == "phoenix.resources.v1.ResourceCreated"
    assert delivery.ce["subject"] == str(rid)
    assert delivery.ce["id"] == str(delivery.event.event_id)
    assert delivery.ce["specversion"] == "1.0"
    assert delivery.ce["datacontenttype"] == "application/avro"
    assert delivery.traceparent == TRACEPARENT
    assert delivery.key == str(rid)


def test_offset_is_stored_only_after_the_handler_is_done(settings: Settings) -> None:
    rid = uuid.uuid4()  # one key: one partition, in order
    produce_events(settings, [make_event(rid, v) for v in range(1, 6)])
    group = f"g-{uuid.uuid4()}"

    with EventSubscriber(settings, group, from_beginning=True) as sub:
        assert [d.event.version for d in take(sub, 3)] == [1, 2, 3]
    # 3 was handed out but the next one was never asked for: it comes again.
    with EventSubscriber(settings, group) as sub:
        assert [d.event.version for d in take(sub, 1)] == [3]

    def handler(d: Delivery) -> None:
        if d.event.version == 4:
            raise RuntimeError("handler failed")

    with EventSubscriber(settings, group) as sub, pytest.raises(RuntimeError):
        sub.run(handler, timeout=30)
    # 3 was stored when run() asked for 4; 4's handler raised, so 4 is not stored.
    with EventSubscriber(settings, group) as sub:
        seen: list[int] = []
        sub.run(lambda d: seen.append(d.event.version), timeout=5)
    assert seen == [4, 5]
    with EventSubscriber(settings, group) as sub:
        assert take(sub, 1, timeout=4) == []  # all acknowledged by run()


def test_asking_for_the_next_stores_the_last_even_when_none_follows(
        settings: Settings) -> None:
    rid = uuid.uuid4()
    produce_events(settings, [make_event(rid, 1), make_event(rid, 2)])
    group = f"g-{uuid.uuid4()}"
    with EventSubscriber(settings, group, from_beginning=True) as sub:
        # The loop ends by timeout while waiting for a third event: 2 counts as handled.
        assert [d.event.version for d in sub.deliveries(timeout=8)] == [1, 2]
    with EventSubscriber(settings, group) as sub:
        assert take(sub, 1, timeout=4) == []


def test_dedupe_drops_repeats_by_resource_and_version(settings: Settings) -> None:
    rid = uuid.uuid4()
    v1, v2, v3 = (make_event(rid, v) for v in (1, 2, 3))
    produce_events(settings, [v1, v2, v2, v1, v3])
    with EventSubscriber(settings, f"g-{uuid.uuid4()}", from_beginning=True) as raw:
        assert [d.event.version for d in take(raw, 5)] == [1, 2, 2, 1, 3]
    with EventSubscriber(settings, f"g-{uuid.uuid4()}", from_beginning=True,
                         dedupe=True) as deduped:
        assert [d.event.version for d in take(deduped, 3)] == [1, 2, 3]
        assert deduped.dropped_repeats == 2


def test_without_from_beginning_a_new_group_starts_at_the_newest(settings: Settings) -> None:
    rid = uuid.uuid4()
    produce_events(settings, [make_event(rid, 1), make_event(rid, 2)])
    with EventSubscriber(settings, f"g-{uuid.uuid4()}") as sub:
        assert take(sub, 1, timeout=5) == []  # joined the group; nothing new yet
        produce_events(settings, [make_event(rid, 3)])
        assert [d.event.version for d in take(sub, 1)] == [3]


def test_wait_for_outcome_from_the_topics(settings: Settings) -> None:
    with CommandPublisher(settings) as publisher:
        created = publisher.create("db")
        refused = publisher.update(uuid.uuid4(), name="x")
        # Stand-ins for the relay: announce one change and one rejection.
        produce_events(settings, [make_event(uuid.uuid4(), 1),
                                  make_event(created.resource_id, 1, created.command_id)])
        produce_rejection(settings, refused.command_id, refused.resource_id)

        applied = publisher.wait_for_outcome(created, timeout=20)
        rejected = publisher.wait_for_outcome(str(refused), timeout=20)
        with pytest.raises(OutcomeTimeout, match="no outcome"):
            publisher.wait_for_outcome(uuid.uuid4(), timeout=2)

    assert (applied.outcome, applied.resulting_version, applied.resource_id) == (
        "applied", 1, created.resource_id)
    assert (rejected.outcome, rejected.error_code) == ("rejected", "CMD-004")
    assert rejected.error_message is not None
    assert "does not exist" in rejected.error_message
