"""Avro contracts round-trip with fastavro; bad bytes become DecodeError with a reason."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime

import fastavro
import pytest

from phoenix_resources.adapters.codec import CommandCodec, EventCodec, Framing
from phoenix_resources.adapters.codec.framing import (
    COMMAND_SCHEMA,
    EVENT_SCHEMA,
    SINGLE_OBJECT_MAGIC,
    load_schema,
)
from phoenix_resources.domain.commands import CreateResource, DeleteResource, UpdateResource
from phoenix_resources.domain.events import (
    CommandRejected,
    CommandType,
    ResourceCreated,
    ResourceDeleted,
    event_id_for,
    rejection_id_for,
)
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.errors import DecodeError, MessageTooLarge

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)


def _create(**kw: object) -> CreateResource:
    base: dict[str, object] = {"command_id": uuid.uuid4(), "resource_id": uuid.uuid4(),
                               "issued_at": NOW, "name": "db-1", "config": {"size": "m"},
                               "status": Status.ACTIVE, "correlation_id": "c-1"}
    base.update(kw)
    return CreateResource(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["avro", "json"])
@pytest.mark.parametrize("command", [
    _create(),
    UpdateResource(command_id=uuid.uuid4(), resource_id=uuid.uuid4(), issued_at=NOW,
                   expected_version=3, status=Status.INACTIVE),
    DeleteResource(command_id=uuid.uuid4(), resource_id=uuid.uuid4(), issued_at=NOW,
                   issued_by="svc-a"),
])
def test_commands_round_trip(fmt: str, command: object) -> None:
    codec = CommandCodec(Framing())
    value, content_type = codec.encode(command, fmt)  # type: ignore[arg-type]
    assert codec.decode(value, content_type) == command


def test_single_object_encoding_is_readable_by_plain_fastavro() -> None:
    schema = load_schema(COMMAND_SCHEMA)
    value, _ = CommandCodec(Framing()).encode(_create())
    assert value[:2] == SINGLE_OBJECT_MAGIC
    assert value[2:10] == bytes.fromhex(fastavro.schema.fingerprint(schema.canonical,
                                                                    "CRC-64-AVRO"))
    record = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema.parsed, None)
    assert record["name"] == "db-1"
    assert record["command_type"] == "CREATE"


def test_events_and_rejections_round_trip() -> None:
    codec = EventCodec(Framing())
    cid, rid = uuid.uuid4(), uuid.uuid4()
    state = Resource(id=rid, name="n", config={"a": "b"}, status=Status.PENDING, version=1,
                     created_at=NOW, updated_at=NOW, last_command_id=cid)
    created = ResourceCreated(event_id=event_id_for(cid), resource_id=rid, version=1,
                              occurred_at=NOW, command_id=cid, correlation_id=None,
                              changed_fields=("name", "config", "status"), resource=state)
    deleted = ResourceDeleted(event_id=event_id_for(cid), resource_id=rid, version=2,
                              occurred_at=NOW, command_id=cid, correlation_id="x",
                              changed_fields=(), resource=None)
    for event in (created, deleted):
        assert codec.decode_event(codec.encode_event(event)) == event
    rejection = CommandRejected(rejection_id=rejection_id_for(cid), command_id=cid,
                                command_type=CommandType.UPDATE, resource_id=rid,
                                code="CMD-004", message="gone", rejected_at=NOW,
                                correlation_id=None)
    assert codec.decode_rejection(codec.encode_rejection(rejection)) == rejection


@pytest.mark.parametrize(("value", "reason"), [
    (b"\x00\x01garbage", "unknown-schema"),
    (b"not avro at all", "unknown-format"),
    (SINGLE_OBJECT_MAGIC + b"\x00" * 8 + b"body", "unknown-schema"),
    (b"{not json", "malformed-json"),
    (b"[1, 2]", "unknown-format"),
    (json.dumps({"command_type": "CREATE"}).encode(), "missing-field"),
    (json.dumps({"command_type": "PATCH"}).encode(), "invalid-field"),
    (json.dumps({"command_type": "DELETE", "command_id": "nope",
                 "resource_id": str(uuid.uuid4()), "issued_at": 1}).encode(), "invalid-field"),
])
def test_undecodable_bytes_raise_decode_error_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        CommandCodec(Framing()).decode(value)
    assert info.value.reason == reason


def test_truncated_avro_is_malformed() -> None:
    value, _ = CommandCodec(Framing()).encode(_create())
    with pytest.raises(DecodeError) as info:
        CommandCodec(Framing()).decode(value[:20])
    assert info.value.reason == "malformed-avro"


def test_oversized_values_are_refused_before_decoding() -> None:
    value, _ = CommandCodec(Framing()).encode(_create(name="x" * 5000))
    with pytest.raises(MessageTooLarge):
        CommandCodec(Framing(), max_bytes=1024).decode(value)


@pytest.mark.parametrize(("field", "value"), [
    ("name", "bad\x00name"),
    ("config", {"k": "v\x00"}),
    ("config", {"k\x00": "v"}),
    ("correlation_id", "c" * 256),
    ("issued_by", "svc\x00"),
])
def test_strings_postgresql_cannot_store_are_dead_lettered_not_crash_looped(
        field: str, value: object) -> None:
    record = {"command_id": str(uuid.uuid4()), "command_type": "CREATE",
              "resource_id": str(uuid.uuid4()), "issued_at": NOW.isoformat(), "name": "ok",
              field: value}
    payload = json.dumps(record).encode()
    with pytest.raises(DecodeError) as info:
        CommandCodec(Framing()).decode(payload, "application/json")
    assert info.value.reason == "invalid-field"
    assert field in info.value.detail


@pytest.mark.parametrize("with_resource", [True, False])
def test_fast_event_encoding_writes_exactly_what_plain_fastavro_writes(
        with_resource: bool) -> None:
    codec = EventCodec(Framing())
    cid, rid = uuid.uuid4(), uuid.uuid4()
    state = Resource(id=rid, name="n", config={"a": "b", "c": ""}, status=Status.INACTIVE,
                     version=7, created_at=NOW, updated_at=NOW, last_command_id=cid)
    event = ResourceCreated(event_id=event_id_for(cid), resource_id=rid, version=7,
                            occurred_at=NOW, command_id=cid, correlation_id="corr",
                            changed_fields=("status",),
                            resource=state if with_resource else None)
    schema = load_schema(EVENT_SCHEMA)
    reference = io.BytesIO()
    # The logical-typed record a plain fastavro user would write (UUIDs, datetimes).
    record = {"event_id": event.event_id, "event_type": "CREATED", "resource_id": rid,
              "version": 7, "occurred_at": NOW, "command_id": cid, "correlation_id": "corr",
              "changed_fields": ["status"],
              "resource": {"id": rid, "name": "n", "config": {"a": "b", "c": ""},
                           "status": "inactive", "version": 7, "created_at": NOW,
                           "updated_at": NOW} if with_resource else None}
    fastavro.schemaless_writer(reference, schema.parsed, record)
    assert codec.encode_event(event) == schema.header + reference.getvalue()
