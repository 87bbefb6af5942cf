"""Wire formats of commands, events and rejections.

* Avro binary with single-object encoding (``C3 01`` + CRC-64-AVRO fingerprint, little
  endian) — the default, no registry needed;
* Avro with the Confluent framing (``00`` + big-endian schema id) when a registry is set;
* JSON commands (``content-type: application/json``).

Decoding never raises anything but :class:`~phoenix_resources.errors.DecodeError`; its
``reason`` slug goes into the DLQ headers.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, Protocol
from uuid import UUID

import fastavro

from phoenix_resources.domain.commands import (
    AnyCommand,
    CommandType,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.events import (
    EVENT_CLASSES,
    CommandRejected,
    EventType,
    ResourceChanged,
)
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.errors import DecodeError, MessageTooLarge

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0
JSON_CONTENT_TYPE = "application/json"
AVRO_CONTENT_TYPE = "application/avro"

COMMAND_SCHEMA = "resource_command.avsc"
EVENT_SCHEMA = "resource_changed.avsc"
REJECTION_SCHEMA = "command_rejected.avsc"
RESOURCE_RECORD = "phoenix.resources.v1.Resource"

@dataclass(frozen=True)
class AvroSchema:
    name: str
    raw: Mapping[str, Any]
    parsed: Any
    canonical: str
    fingerprint: bytes  # 8 bytes, little endian, as single-object encoding wants
    plain: Any
    """The same schema without ``logicalType`` annotations: identical canonical form,
    fingerprint and bytes, but fastavro skips its per-field conversions. Writers that
    already hold strings and epoch micros use it on hot paths."""

    @property
    def header(self) -> bytes:
        return SINGLE_OBJECT_MAGIC + self.fingerprint


@cache
def load_schema(filename: str) -> AvroSchema:
    raw = json.loads(resources.files("phoenix_resources").joinpath("schemas", filename)
                     .read_text())
    parsed = fastavro.parse_schema(raw)
    canonical = fastavro.schema.to_parsing_canonical_form(raw)
    fp = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    plain = fastavro.parse_schema(_without_logical_types(raw))
    return AvroSchema(raw["name"], raw, parsed, canonical, fp, plain)


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


class SchemaRegistry(Protocol):
    """What the codec needs of a Confluent-compatible registry (see ``adapters.registry``)."""

    def id_for(self, subject: str, schema: AvroSchema) -> int: ...

    def schema_for(self, schema_id: int) -> Any: ...


class Framing:
    """Writes one framing; reads all of them. One instance per process, shared by threads."""

    def __init__(self, registry: SchemaRegistry | None = None,
                 subject_for: Callable[[AvroSchema], str] | None = None) -> None:
        self.registry = registry
        self._subject_for = subject_for or (lambda s: f"phoenix.resources.v1.{s.name}")
        self._known: dict[bytes, Any] = {}
        self._ids: dict[str, int] = {}

    def remember(self, schema: AvroSchema) -> None:
        """Accept payloads written with ``schema`` (e.g. an older version) when reading."""
        self._known[schema.fingerprint] = schema.parsed

    def prefix(self, schema: AvroSchema) -> bytes:
        if self.registry is None:
            return schema.header
        sid = self._ids.get(schema.name)
        if sid is None:
            sid = self._ids[schema.name] = self.registry.id_for(self._subject_for(schema), schema)
        return struct.pack(">bI", CONFLUENT_MAGIC, sid)

    def encode(self, schema: AvroSchema, record: Mapping[str, Any], *,
               plain: bool = False) -> bytes:
        """``plain``: ``record`` already holds wire values (UUIDs as strings, times as
        epoch micros), so the logical-type-free schema is used (same bytes, less work)."""
        buf = io.BytesIO()
        buf.write(self.prefix(schema))
        fastavro.schemaless_writer(buf, schema.plain if plain else schema.parsed, record)
        return buf.getvalue()

    def decode(self, schema: AvroSchema, value: bytes) -> dict[str, Any]:
        """Read an Avro payload in either framing into ``schema``'s shape."""
        if value[:2] == SINGLE_OBJECT_MAGIC:
            fp = value[2:10]
            writer = schema.parsed if fp == schema.fingerprint else self._known.get(fp)
            if writer is None:
                raise DecodeError("unknown-schema",
                                  f"no schema with fingerprint {fp.hex()} is known")
            body = value[10:]
        elif value[:1] == b"\x00" and len(value) >= 5:
            if self.registry is None:
                raise DecodeError("unknown-schema", "Confluent-framed payload but no schema "
                                  "registry is configured (PHOENIX_SCHEMA_REGISTRY_URL)")
            (sid,) = struct.unpack(">I", value[1:5])
            try:
                writer = self.registry.schema_for(sid)
            except Exception as e:
                raise DecodeError("unknown-schema", f"schema id {sid}: {e}") from e
            body = value[5:]
        else:
            raise DecodeError("unknown-format", "neither Avro single-object (C3 01), "
                              "Confluent (00) nor JSON")
        try:
            # Same writer and reader: skip schema resolution, it is the hot path.
            reader = None if writer is schema.parsed else schema.parsed
            record = fastavro.schemaless_reader(io.BytesIO(body), writer, reader)
        except Exception as e:
            raise DecodeError("malformed-avro", f"{type(e).__name__}: {e}") from e
        if not isinstance(record, dict):
            raise DecodeError("malformed-avro", "the payload is not a record")
        return record


# --- commands ----------------------------------------------------------------------------


def _uuid(record: Mapping[str, Any], field: str) -> UUID:
    value = record.get(field)
    if value is None:
        raise DecodeError("missing-field", f"'{field}' is required")
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError as e:
        raise DecodeError("invalid-field", f"'{field}' is not a UUID: {str(value)[:64]!r}") from e


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1_000_000, UTC)
    if isinstance(value, str):
        try:
            return _timestamp(datetime.fromisoformat(value))
        except ValueError:
            pass
    raise DecodeError("invalid-field", "'issued_at' must be an ISO-8601 time or epoch micros")


TEXT_MAX = 255
"""Longest correlation_id / issued_by (they are stored in VARCHAR(255) columns)."""


def _storable(text: str, field: str) -> str:
    """Text PostgreSQL can store: no NUL (text and jsonb refuse it) and valid UTF-8 (JSON
    escapes can produce lone surrogates). Refusing here turns what would be a crash loop on
    every redelivery into one dead letter."""
    if "\x00" in text:
        raise DecodeError("invalid-field", f"'{field}' contains a NUL character")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as e:
            raise DecodeError("invalid-field", f"'{field}' is not valid Unicode") from e
    return text


def _opt(record: Mapping[str, Any], field: str, kind: type, max_len: int | None = None) -> Any:
    value = record.get(field)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DecodeError("invalid-field", f"'{field}' must be {kind.__name__}")
    if isinstance(value, str):
        if max_len is not None and len(value) > max_len:
            raise DecodeError("invalid-field", f"'{field}' is longer than {max_len} characters")
        _storable(value, field)
    return value


def _config(record: Mapping[str, Any]) -> dict[str, str] | None:
    value = record.get("config")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise DecodeError("invalid-field", "'config' must map strings to strings")
    for k, v in value.items():
        _storable(k, "config")
        _storable(v, "config")
    return value


def _status(record: Mapping[str, Any]) -> Status | None:
    value = record.get("status")
    if value is None:
        return None
    try:
        return Status(value)
    except ValueError as e:
        raise DecodeError("invalid-field", f"'status' must be one of "
                          f"{[s.value for s in Status]}, not {str(value)[:32]!r}") from e


def command_from_record(record: Mapping[str, Any]) -> AnyCommand:
    """Build a command from a decoded Avro record or JSON object (structural checks only)."""
    try:
        ctype = CommandType(str(record.get("command_type")))
    except ValueError as e:
        raise DecodeError("invalid-field", "'command_type' must be CREATE, UPDATE or "
                          f"DELETE, not {str(record.get('command_type'))[:32]!r}") from e
    if record.get("issued_at") is None:
        raise DecodeError("missing-field", "'issued_at' is required")
    common: dict[str, Any] = {
        "command_id": _uuid(record, "command_id"),
        "resource_id": _uuid(record, "resource_id"),
        "issued_at": _timestamp(record["issued_at"]),
        "expected_version": _opt(record, "expected_version", int),
        "correlation_id": _opt(record, "correlation_id", str, TEXT_MAX),
        "issued_by": _opt(record, "issued_by", str, TEXT_MAX),
    }
    name = _opt(record, "name", str)
    if ctype is CommandType.CREATE:
        return CreateResource(**common, name=name or "", config=_config(record) or {},
                              status=_status(record) or Status.PENDING)
    if ctype is CommandType.UPDATE:
        return UpdateResource(**common, name=name, config=_config(record),
                              status=_status(record))
    return DeleteResource(**common)


def command_to_record(command: AnyCommand) -> dict[str, Any]:
    record: dict[str, Any] = {
        "command_id": command.command_id, "command_type": command.type.value,
        "resource_id": command.resource_id, "expected_version": command.expected_version,
        "name": None, "config": None, "status": None, "issued_at": command.issued_at,
        "correlation_id": command.correlation_id, "issued_by": command.issued_by,
    }
    if isinstance(command, CreateResource | UpdateResource):
        record["name"] = command.name
        record["config"] = None if command.config is None else dict(command.config)
        record["status"] = None if command.status is None else command.status.value
    return record


def command_to_json(command: AnyCommand) -> bytes:
    record = command_to_record(command)
    record["command_id"] = str(command.command_id)
    record["resource_id"] = str(command.resource_id)
    record["issued_at"] = command.issued_at.isoformat()
    return json.dumps({k: v for k, v in record.items() if v is not None}).encode()


class CommandCodec:
    """Decodes commands in any accepted format; encodes them in the configured one."""

    def __init__(self, framing: Framing, max_bytes: int = 256 * 1024) -> None:
        self.framing = framing
        self.schema = load_schema(COMMAND_SCHEMA)
        self.max_bytes = max_bytes

    def encode(self, command: AnyCommand, fmt: str = "avro") -> tuple[bytes, str]:
        """Return ``(value, content_type)``."""
        if fmt == "json":
            return command_to_json(command), JSON_CONTENT_TYPE
        return self.framing.encode(self.schema, command_to_record(command)), AVRO_CONTENT_TYPE

    def decode(self, value: bytes | None, content_type: str | None = None) -> AnyCommand:
        if value is None:
            raise DecodeError("empty", "the record has no value (a tombstone?)")
        if len(value) > self.max_bytes:
            raise MessageTooLarge("too-large", f"{len(value)} bytes; the limit is "
                                  f"{self.max_bytes} (PHOENIX_MAX_COMMAND_BYTES)")
        if content_type == JSON_CONTENT_TYPE or value[:1] == b"{":
            try:
                record = json.loads(value)
            except (ValueError, UnicodeDecodeError) as e:
                raise DecodeError("malformed-json", str(e)[:200]) from e
            if not isinstance(record, dict):
                raise DecodeError("malformed-json", "a command must be a JSON object")
            return command_from_record(record)
        return command_from_record(self.framing.decode(self.schema, value))


# --- events and rejections ------------------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


def event_to_wire(e: ResourceChanged) -> dict[str, Any]:
    """The event as the Avro record, in wire values (UUIDs as text, times as epoch micros)
    for :attr:`AvroSchema.plain`: each UUID is turned to text once."""
    rid = str(e.resource_id)
    r = e.resource
    resource = None if r is None else (RESOURCE_RECORD, {
        "id": rid, "name": r.name, "config": dict(r.config), "status": r.status.value,
        "version": r.version, "created_at": _micros(r.created_at),
        "updated_at": _micros(r.updated_at)})
    return {"event_id": str(e.event_id), "event_type": e.event_type.value,
            "resource_id": rid, "version": e.version, "occurred_at": _micros(e.occurred_at),
            "command_id": str(e.command_id), "correlation_id": e.correlation_id,
            "changed_fields": list(e.changed_fields), "resource": resource}


def event_from_record(rec: Mapping[str, Any]) -> ResourceChanged:
    r = rec.get("resource")
    resource = None if r is None else Resource(
        id=r["id"], name=r["name"], config=r["config"], status=Status(r["status"]),
        version=r["version"], created_at=r["created_at"], updated_at=r["updated_at"],
        last_command_id=rec["command_id"])
    cls = EVENT_CLASSES[EventType(rec["event_type"])]
    return cls(event_id=rec["event_id"], resource_id=rec["resource_id"], version=rec["version"],
               occurred_at=rec["occurred_at"], command_id=rec["command_id"],
               correlation_id=rec.get("correlation_id"),
               changed_fields=tuple(rec["changed_fields"]), resource=resource)


def rejection_to_record(r: CommandRejected) -> dict[str, Any]:
    return {"rejection_id": r.rejection_id, "command_id": r.command_id,
            "command_type": r.command_type.value, "resource_id": r.resource_id, "code": r.code,
            "message": r.message, "rejected_at": r.rejected_at,
            "correlation_id": r.correlation_id}


def rejection_from_record(rec: Mapping[str, Any]) -> CommandRejected:
    return CommandRejected(rejection_id=rec["rejection_id"], command_id=rec["command_id"],
                           command_type=CommandType(rec["command_type"]),
                           resource_id=rec["resource_id"], code=rec["code"],
                           message=rec["message"], rejected_at=rec["rejected_at"],
                           correlation_id=rec.get("correlation_id"))


class EventCodec:
    """Encodes what the worker writes to the outbox; decodes what subscribers read."""

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.event_schema = load_schema(EVENT_SCHEMA)
        self.rejection_schema = load_schema(REJECTION_SCHEMA)

    def encode_event(self, event: ResourceChanged) -> bytes:
        return self.framing.encode(self.event_schema, event_to_wire(event), plain=True)

    def decode_event(self, value: bytes) -> ResourceChanged:
        return event_from_record(self.framing.decode(self.event_schema, value))

    def encode_rejection(self, rejection: CommandRejected) -> bytes:
        return self.framing.encode(self.rejection_schema, rejection_to_record(rejection))

    def decode_rejection(self, value: bytes) -> CommandRejected:
        return rejection_from_record(self.framing.decode(self.rejection_schema, value))
