"""The partition check against the real broker (DESIGN promise 9): a command record produced
explicitly to another partition than its key's is refused with CMD-011 and announced on the
rejections topic; what the shipped publishers send (the Java client's partitioner) never
trips it."""

from __future__ import annotations

import uuid

import pytest

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings
from phoenix_resources.wire.partitioner import partition_for
from tests.support.pipeline import Pipeline, create, outcomes, publish, rejections, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 3  # the commands topic of the tests (tests/conftest.py)


def test_a_record_produced_to_another_partition_is_refused_and_announced(
        settings: Settings, database_url: str) -> None:
    good = [create(uuid.uuid4(), f"r{i}") for i in range(20)]
    publish(settings, good)
    misplaced = create(uuid.uuid4(), "elsewhere")
    key = str(misplaced.resource_id).encode()
    wrong = (partition_for(key, PARTITIONS) + 1) % PARTITIONS
    value, content_type = bootstrap.command_codec(settings).encode(misplaced)
    producer = bootstrap.producer(settings)
    producer.produce(settings.commands_topic, key=key, value=value, partition=wrong,
                     headers=[("content-type", content_type.encode())])
    assert producer.flush(30) == 0

    with Pipeline(settings):
        wait_until(lambda: len(outcomes(database_url)) == len(good) + 1, timeout=90)
        refused = rejections(settings, expected=1)
    seen = outcomes(database_url)
    assert seen[misplaced.command_id][:2] == ("rejected", "CMD-011")
    assert {seen[c.command_id][:2] for c in good} == {("applied", None)}
    assert [(r.command_id, r.code) for r in refused] == [(misplaced.command_id, "CMD-011")]
    assert f"is in partition {wrong}" in refused[0].message
