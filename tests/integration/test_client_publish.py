"""The publisher against a real broker: the raw record has the contract's key, headers and
a decodable value; bulk sends fire-then-flush; failures are DeliveryFailed, not silence."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from phoenix_resources import bootstrap
from phoenix_resources.client import CommandPublisher, Sent, create_command
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import (
    AnyCommand,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.model import Status
from phoenix_resources.errors import CommandInvalid, DeliveryFailed
from tests.support.kafka import read_all

pytestmark = pytest.mark.integration


def test_create_update_delete_are_keyed_framed_and_decodable(settings: Settings) -> None:
    with CommandPublisher(settings) as publisher:
        created = publisher.create("db-1", config={"size": "m"}, status="active",
                                   correlation_id="corr-1", issued_by="alice",
                                   traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
        updated = publisher.update(created.resource_id, name="db-2", expected_version=1)
        deleted = publisher.delete(str(created.resource_id))

    assert isinstance(created, Sent)
    assert isinstance(created, uuid.UUID)
    records = read_all(settings.kafka_bootstrap_servers, settings.commands_topic, expected=3)
    assert len(records) == 3
    assert {r.partition() for r in records} == {records[0].partition()}  # one key, one partition
    codec = bootstrap.command_codec(settings)
    decoded = [codec.decode(r.value(), dict(r.headers() or [])["content-type"].decode())
               for r in sorted(records, key=lambda r: r.offset())]
    assert all(r.key() == str(created.resource_id).encode() for r in records)
    assert all(r.value()[:2] == b"\xc3\x01" for r in records)  # single-object Avro

    first = decoded[0]
    assert isinstance(first, CreateResource)
    assert (first.command_id, first.resource_id, first.name, dict(first.config), first.status,
            first.correlation_id, first.issued_by) == (
        created, created.resource_id, "db-1", {"size": "m"}, Status.ACTIVE, "corr-1", "alice")
    assert isinstance(decoded[1], UpdateResource)
    assert (decoded[1].command_id, decoded[1].name, decoded[1].config, decoded[1].status,
            decoded[1].expected_version) == (updated, "db-2", None, None, 1)
    assert isinstance(decoded[2], DeleteResource)
    assert decoded[2].command_id == deleted

    headers = dict(sorted(records, key=lambda r: r.offset())[0].headers() or [])
    assert headers["content-type"] == b"application/avro"
    assert headers["correlation_id"] == b"corr-1"
    assert headers["traceparent"].startswith(b"00-aaaa")
    later = dict(sorted(records, key=lambda r: r.offset())[1].headers() or [])
    assert re.fullmatch(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", later["traceparent"])


def test_json_wire_format_and_caller_chosen_command_id(settings: Settings) -> None:
    command_id, resource_id = uuid.uuid4(), uuid.uuid4()
    with CommandPublisher(settings, wire_format="json") as publisher:
        first = publisher.create("svc", resource_id=resource_id, command_id=command_id)
        retry = publisher.create("svc", resource_id=resource_id, command_id=command_id)
    assert first == retry == command_id
    records = read_all(settings.kafka_bootstrap_servers, settings.commands_topic, expected=2)
    assert len(records) == 2
    for r in records:
        assert dict(r.headers() or [])["content-type"] == b"application/json"
        body = json.loads(r.value())
        assert body["command_id"] == str(command_id)
        assert body["command_type"] == "CREATE"
        assert r.key() == str(resource_id).encode()


def test_invalid_commands_are_refused_before_sending(settings: Settings) -> None:
    with CommandPublisher(settings) as publisher:
        with pytest.raises(CommandInvalid) as empty:
            publisher.create("  ")
        with pytest.raises(CommandInvalid) as config:
            publisher.update(uuid.uuid4(), config={"": "x"})
        with pytest.raises(CommandInvalid) as status:
            publisher.update(uuid.uuid4(), status="deleted")
        with pytest.raises(CommandInvalid):
            publisher.delete("not-a-uuid")
    assert (empty.value.code, config.value.code, status.value.code) == (
        "CMD-001", "CMD-002", "invalid-field")
    assert read_all(settings.kafka_bootstrap_servers, settings.commands_topic,
                    timeout=3, idle=1) == []


def test_send_many_fires_then_flushes_once(settings: Settings) -> None:
    commands: list[AnyCommand] = [create_command(f"r-{i}") for i in range(2000)]
    commands.insert(7, create_command(""))
    with CommandPublisher(settings) as publisher:
        result = publisher.send_many(commands)
    assert len(result.sent) == 2000
    assert [(f.index, f.error[:7]) for f in result.failed] == [(7, "CMD-001")]
    records = read_all(settings.kafka_bootstrap_servers, settings.commands_topic,
                       expected=2000)
    assert len(records) == 2000


def test_unreachable_broker_is_delivery_failed() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", commands_topic="nowhere")
    publisher = CommandPublisher(settings, delivery_timeout_s=1.5)
    try:
        with pytest.raises(DeliveryFailed, match=r"not delivered|no delivery report"):
            publisher.create("x")
    finally:
        publisher.close(timeout=0)


def test_a_command_over_the_workers_size_limit_is_refused_before_sending(
        settings: Settings) -> None:
    small = settings.model_copy(update={"max_command_bytes": 4096})
    config = {f"k{i}": "v" * 100 for i in range(60)}  # ~6 KiB encoded, valid by the rules
    with CommandPublisher(small) as publisher, pytest.raises(CommandInvalid) as refused:
        publisher.create("big", config=config)
    assert refused.value.code == "too-large"
    assert "4096" in refused.value.message
    assert read_all(settings.kafka_bootstrap_servers, settings.commands_topic,
                    timeout=3, idle=1) == []
