"""The parking lot against the real broker and database: a command PostgreSQL refuses is
parked with everything behind it for its resource, other resources keep flowing, and a
replay after the fix applies the queue in order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings
from phoenix_resources.services.replay import discard, replay_resource
from tests.support.pipeline import (
    ACTIVE,
    INACTIVE,
    Pipeline,
    create,
    events,
    outcomes,
    publish,
    resources,
    update,
    wait_until,
)
from tests.support.poison import allow_poison, refuse_poison

pytestmark = pytest.mark.integration


@pytest.fixture
def parking(settings: Settings) -> Iterator[bootstrap.ParkingParts]:
    parts = bootstrap.parking_parts(settings)
    parts.pool.open()
    yield parts
    parts.pool.close()


def test_a_refused_command_parks_its_resource_and_others_flow(
        settings: Settings, database_url: str, parking: bootstrap.ParkingParts) -> None:
    refuse_poison(database_url)
    good, bad = uuid.uuid4(), uuid.uuid4()
    first = [create(good, "fine"), create(bad, "poison"), update(bad, status=ACTIVE),
             update(good, status=ACTIVE)]
    later = update(bad, name="renamed")
    with Pipeline(settings):
        publish(settings, first)
        wait_until(lambda: len(outcomes(database_url)) == 4, what="four outcomes")
        publish(settings, [later, create(uuid.uuid4(), "another")])
        wait_until(lambda: len(outcomes(database_url)) == 6, what="six outcomes")

        recorded = outcomes(database_url)
        assert recorded[first[1].command_id][:2] == ("parked", "PRK-001")
        assert recorded[first[2].command_id][:2] == ("parked", "PRK-002")
        assert recorded[later.command_id][:2] == ("parked", "PRK-002")
        assert recorded[first[0].command_id][0] == recorded[first[3].command_id][0] == "applied"
        assert bad not in resources(database_url)
        queue = parking.lot.commands(bad)
        assert [p.command_id for p in queue] == [c.command_id for c in (*first[1:3], later)]
        assert "refusing a poison row" in queue[0].error

        # Still refused: the replay stops at the head and records the attempt.
        stopped = replay_resource(parking.unit_factory, bad, lambda: datetime.now(UTC))
        assert (stopped.applied, stopped.stopped_at, stopped.remaining) == (
            0, first[1].command_id, 3)
        assert parking.lot.commands(bad)[0].attempts == 1

        allow_poison(database_url)
        done = replay_resource(parking.unit_factory, bad, lambda: datetime.now(UTC))
        assert (done.applied, done.stopped_at) == (3, None)
        assert parking.lot.commands(bad) == []

        received = [r.event for r in events(settings, expected=6)
                    if r.event.resource_id == bad]
        assert [e.version for e in received] == [1, 2, 3]
        assert resources(database_url)[bad]["name"] == "renamed"
        # The lot is empty: the resource's next command is applied at once.
        publish(settings, [update(bad, status=INACTIVE)])
        wait_until(lambda: resources(database_url)[bad]["version"] == 4, what="version 4")
    assert outcomes(database_url)[first[1].command_id][0] == "applied"


def test_discard_refuses_the_parked_commands_and_frees_the_resource(
        settings: Settings, database_url: str, parking: bootstrap.ParkingParts) -> None:
    refuse_poison(database_url)
    bad = uuid.uuid4()
    commands = [create(bad, "poison"), update(bad, status=ACTIVE)]
    with Pipeline(settings):
        publish(settings, commands)
        wait_until(lambda: len(parking.lot.commands(bad)) == 2, what="two parked")
        gone = discard(parking.unit_factory, bad, None, datetime.now(UTC), "test")
        assert gone == [c.command_id for c in commands]
        recorded = outcomes(database_url)
        assert {recorded[c.command_id][:2] for c in commands} == {("rejected", "CMD-010")}
        assert parking.lot.resources() == []
        allow_poison(database_url)
        again = create(uuid.uuid4(), "fine")
        publish(settings, [again])
        wait_until(lambda: outcomes(database_url).get(again.command_id, ("",))[0] == "applied",
                   what="the next command applied")
