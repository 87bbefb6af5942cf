"""Commands on the wire: Avro (either framing) or JSON (``content-type: application/json``).

Decoding checks structure only (types, ids, storable text); the rules are ``decide``'s.
It raises nothing but :class:`~phoenix_resources.errors.DecodeError`, whose ``reason`` slug
goes into the DLQ headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from phoenix_resources.adapters.codec.framing import (
    COMMAND_SCHEMA,
    Framing,
    load_schema,
    released_schemas,
)
from phoenix_resources.domain.commands import (
    AnyCommand,
    CommandType,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.model import Status
from phoenix_resources.errors import DecodeError, MessageTooLarge

JSON_CONTENT_TYPE = "application/json"
AVRO_CONTENT_TYPE = "application/avro"

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
        framing.remember(*released_schemas(COMMAND_SCHEMA))
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


