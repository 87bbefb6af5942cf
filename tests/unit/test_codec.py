"""Avro contracts round-trip with fastavro; bad bytes become DecodeError with a reason."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime

import fastavro
import pytest

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
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import (
    COMMAND_SCHEMA,
    EVENT_SCHEMA,
    SINGLE_OBJECT_MAGIC,
    Framing,
    load_schema,
)

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


# --- decoding is total: the inputs that used to crash-loop the worker ----------------------

def _doc(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"command_id": str(uuid.uuid4()), "command_type": "UPDATE",
                               "resource_id": str(uuid.uuid4()), "issued_at": NOW.isoformat()}
    base.update(fields)
    return base


def _decode_json(payload: bytes | str) -> object:
    raw = payload.encode() if isinstance(payload, str) else payload
    return CommandCodec(Framing(), max_bytes=1 << 20).decode(raw, "application/json")


@pytest.mark.parametrize("issued_at", [
    1_700_000_000_000_000_000,        # nanoseconds given as micros: year ~55,800
    253_402_300_800_000_000,          # 10000-01-01
    -1,                               # before 1970
    2**63, 10**30, -(10**30),
    "9" * 400,                        # hundreds of digits, as text
    1.7e15, True, "yesterday", "", "not a time",
    "0001-01-01T00:00:00+05:00",      # in datetime's range, before 1970
    "9999-12-31T23:00:00-05:00",      # in datetime's range, past 9999 in UTC
    "2026-11-24T12:00:00" + "0" * 500,
    [], {},
])
def test_out_of_range_or_mistyped_times_are_invalid_fields(issued_at: object) -> None:
    with pytest.raises(DecodeError) as info:
        _decode_json(json.dumps(_doc(issued_at=issued_at)))
    assert info.value.reason == "invalid-field"
    assert "issued_at" in info.value.detail


def test_digits_beyond_python_int_conversion_limit_are_refused() -> None:
    # 5,000 digits: json.dumps cannot write it and str(int) would raise; orjson reads a float.
    with pytest.raises(DecodeError) as info:
        _decode_json(json.dumps(_doc(issued_at=0)).replace('"issued_at": 0',
                                                           '"issued_at": ' + "9" * 5000))
    assert info.value.reason in {"invalid-field", "malformed-json"}


@pytest.mark.parametrize(("issued_at", "expected"), [
    (0, datetime(1970, 1, 1, tzinfo=UTC)),
    (253_402_300_799_999_999, datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
    ("2026-11-24T13:00:00+01:00", datetime(2026, 11, 24, 12, tzinfo=UTC)),
    ("2026-11-24T12:00:00", datetime(2026, 11, 24, 12, tzinfo=UTC)),
    ("2026-11-24T12:00:00Z", datetime(2026, 11, 24, 12, tzinfo=UTC)),
])
def test_times_at_the_edges_of_the_range_are_accepted_in_utc(issued_at: object,
                                                             expected: datetime) -> None:
    command = _decode_json(json.dumps(_doc(issued_at=issued_at)))
    assert command.issued_at == expected  # type: ignore[attr-defined]
    assert command.issued_at.utcoffset().total_seconds() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", [-1, 2**63, 2**64, 10**30, 1.0, True, "3", [3]])
def test_expected_versions_beyond_bigint_or_mistyped_are_invalid(version: object) -> None:
    with pytest.raises(DecodeError) as info:
        _decode_json(json.dumps(_doc(expected_version=version)))
    assert info.value.reason == "invalid-field"


def test_the_largest_bigint_is_a_valid_expected_version() -> None:
    command = _decode_json(json.dumps(_doc(expected_version=2**63 - 1)))
    assert command.expected_version == 2**63 - 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("depth", [1024, 1025, 5000, 200_000])
def test_nesting_of_any_depth_is_a_decode_error_not_a_recursion_error(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    with pytest.raises(DecodeError) as info:
        _decode_json('{"name": ' + nested + ', "command_type": "UPDATE"}')
    assert info.value.reason in {"malformed-json", "invalid-field"}


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"a": "\xff"}', "malformed-json"),               # invalid UTF-8
    (b'{"name": "\\ud800"}', "malformed-json"),          # lone surrogate escape
    (b'\xef\xbb\xbf{"a": 1}', "malformed-json"),         # byte-order mark
    (b'{"expected_version": NaN}', "malformed-json"),
    (b'{"expected_version": 1e400}', "malformed-json"),
    (b"[1, 2]", "malformed-json"),
    (b"", "empty"),
])
def test_json_parser_failures_map_to_reasons(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        _decode_json(payload)
    assert info.value.reason == reason


@pytest.mark.parametrize("field", ["correlation_id", "issued_by"])
def test_text_of_255_characters_is_storable_and_256_is_not(field: str) -> None:
    ok = _decode_json(json.dumps(_doc(**{field: "é" * 255})))
    assert getattr(ok, field) == "é" * 255
    with pytest.raises(DecodeError):
        _decode_json(json.dumps(_doc(**{field: "é" * 256})))


def test_lone_surrogates_are_refused_when_a_caller_builds_the_record() -> None:
    from phoenix_resources.wire.commands import command_from_record

    with pytest.raises(DecodeError) as info:
        command_from_record(_doc(name="lone \ud800 surrogate"))
    assert info.value.reason == "invalid-field"


@pytest.mark.parametrize("value", [12345, 10**5000, "nope", "x" * 10_000, ["a"], {"a": 1}],
                         ids=["int", "5000-digit-int", "text", "long-text", "list", "dict"])
def test_ids_that_are_not_uuids_are_invalid_whatever_their_type(value: object) -> None:
    from phoenix_resources.wire.commands import command_from_record

    with pytest.raises(DecodeError) as info:
        command_from_record(_doc(command_id=value))
    assert info.value.reason == "invalid-field"
    info.value.detail.encode("ascii")


def test_a_document_of_one_mebibyte_decodes_when_the_limit_allows_it() -> None:
    doc = json.dumps(_doc(name="x" * ((1 << 20) - 300))).encode()
    assert len(doc) <= 1 << 20
    assert _decode_json(doc).name.startswith("xxx")  # type: ignore[attr-defined]


def test_avro_times_beyond_9999_are_invalid_not_overflow_errors() -> None:
    codec = CommandCodec(Framing())
    schema = load_schema(COMMAND_SCHEMA)
    buf = io.BytesIO()
    record = {"command_id": str(uuid.uuid4()), "command_type": "DELETE",
              "resource_id": str(uuid.uuid4()), "issued_at": 2**63 - 1}
    fastavro.schemaless_writer(buf, schema.plain, record)
    with pytest.raises(DecodeError) as info:
        codec.decode(schema.header + buf.getvalue())
    assert info.value.reason == "invalid-field"


def test_bytes_after_an_avro_record_are_malformed() -> None:
    value, _ = CommandCodec(Framing()).encode(_create())
    with pytest.raises(DecodeError) as info:
        CommandCodec(Framing()).decode(value + b"\x00")
    assert info.value.reason == "malformed-avro"


def test_undecodable_events_raise_decode_error_only() -> None:
    codec = EventCodec(Framing())
    for value in (b"", b"\x00", b"junk", load_schema(EVENT_SCHEMA).header + b"\x02"):
        with pytest.raises(DecodeError):
            codec.decode_event(value)
