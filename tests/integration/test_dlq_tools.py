"""Reading the DLQ back and replaying from it, with the real worker: a replayed command that
is good is applied; one that fails again is dead-lettered again — once: replay skips it
unless forced."""

from __future__ import annotations

import uuid

import pytest

from phoenix_resources import bootstrap
from phoenix_resources.adapters import dlq_topic
from phoenix_resources.adapters.dlq import build_dead_letter
from phoenix_resources.adapters.kafka import new_producer, publish_all
from phoenix_resources.config import Settings
from tests.support.kafka import read_all
from tests.support.pipeline import Pipeline, create, publish_raw, resources, wait_until

pytestmark = pytest.mark.integration


def dlq_size(settings: Settings) -> int:
    return len(read_all(settings.kafka_bootstrap_servers, settings.dlq_topic, idle=1.0))


def test_list_find_and_replay_without_loops(settings: Settings) -> None:
    bad_key = str(uuid.uuid4()).encode()
    with Pipeline(settings, relay=False) as p:
        publish_raw(settings, [(bad_key, b'{"command_type": "CREATE", ',
                                [("content-type", b"application/json"),
                                 ("x-origin", b"importer")])])
        wait_until(lambda: dlq_size(settings) == 1, what="the first dead letter")
        # A good command that was dead-lettered earlier (say, its schema was not
        # registered yet): written to the DLQ as the worker would have.
        command = create(name="late")
        value, content_type = bootstrap.command_codec(settings).encode(command, "json")
        publish_all(new_producer(settings), [build_dead_letter(
            settings.dlq_topic, source=(settings.commands_topic, 0, 99),
            key=str(command.resource_id).encode(), value=value,
            headers=[("content-type", content_type.encode())], reason="unknown-schema",
            detail="not registered yet")])

        common = settings.kafka_common()
        letters = list(dlq_topic.read(common, settings.dlq_topic))
        assert [(d.offset, d.reason) for d in letters] == [(0, "malformed-json"),
                                                          (1, "unknown-schema")]
        first = letters[0]
        assert first.source[0] == settings.commands_topic
        assert first.key == bad_key
        assert first.original_headers() == [("content-type", b"application/json"),
                                            ("x-origin", b"importer")]
        found = dlq_topic.find(common, settings.dlq_topic, 0, 1)
        assert found is not None
        assert found.reason == "unknown-schema"
        assert dlq_topic.find(common, settings.dlq_topic, 0, 50) is None

        replayer = dlq_topic.Replayer(new_producer(settings), settings.commands_topic)
        report = replayer.replay(dlq_topic.read(common, settings.dlq_topic))
        assert report.replayed == [(0, 0), (0, 1)]
        wait_until(lambda: command.resource_id in resources(settings.database_url),
                   what="the replayed command to be applied")
        wait_until(lambda: dlq_size(settings) == 3, what="the bad one back in the DLQ")
        again = dlq_topic.find(common, settings.dlq_topic, 0, 2)
        assert again is not None
        assert again.replayed
        assert again.key == bad_key
        assert ("x-origin", b"importer") in again.original_headers()

        # The one that failed after a replay is not replayed again unless forced.
        report = dlq_topic.Replayer(new_producer(settings), settings.commands_topic).replay(
            [again])
        assert report.replayed == []
        assert "already replayed" in report.skipped[(0, 2)]
        assert dlq_size(settings) == 3
        report = dlq_topic.Replayer(new_producer(settings), settings.commands_topic,
                                    force=True).replay([again])
        assert report.replayed == [(0, 2)]
        wait_until(lambda: dlq_size(settings) == 4, what="the forced replay's dead letter")
    assert not p.errors
