"""Commands on the wire: Avro (either framing) or JSON (``content-type: application/json``).

Decoding checks structure only (types, ids, storable values); the rules are ``decide``'s.

Guarantee: :meth:`CommandCodec.decode` turns any bytes into a storable command or raises
:class:`~phoenix_resources.errors.DecodeError` (whose ``reason`` slug goes into the DLQ
headers) — nothing else, except :class:`~phoenix_resources.errors.RegistryUnavailable` while
a registry that must name the writer schema cannot answer. *Storable* means PostgreSQL takes
every value as it is: ids are UUIDs; text has no NUL and is valid UTF-8; ``correlation_id``
and ``issued_by`` have at most 255 characters; ``expected_version`` is within 0..2^63-1
(BIGINT); ``issued_at`` is within 1970-01-01 .. 9999-12-31T23:59:59.999999 UTC.
``tests/fuzz`` checks this property on generated input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson

from phoenix_resources.domain.commands import (
    AnyCommand,
    CommandType,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.ids import parse_uuid
from phoenix_resources.domain.model import Status
from phoenix_resources.errors import DecodeError, MessageTooLarge
from phoenix_resources.wire import command_reader
from phoenix_resources.wire.framing import (
    COMMAND_SCHEMA,
    AvroSchema,
    Framing,
    clip,
    load_schema,
    released_schemas,
)
from phoenix_resources.wire.headers import JSON_CONTENT_TYPE, is_json

AVRO_CONTENT_TYPE = "application/avro"

TEXT_MAX = 255
"""Longest correlation_id / issued_by (they are stored in VARCHAR(255) columns)."""
VERSION_MAX = 2**63 - 1
"""Largest expected_version: PostgreSQL's BIGINT (and Avro's long) cannot hold more."""
ISSUED_AT_MIN = datetime(1970, 1, 1, tzinfo=UTC)
ISSUED_AT_MAX = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
"""``issued_at`` range. Before 1970 no command of this service was issued; after 9999
Python's datetime ends (PostgreSQL's goes further, so everything in range is storable)."""

_MICROSECOND = timedelta(microseconds=1)
_MAX_MICROS = (ISSUED_AT_MAX - ISSUED_AT_MIN) // _MICROSECOND
_COMMAND_TYPES = {t.value: t for t in CommandType}
_STATUSES = {s.value: s for s in Status}


def _show(value: Any) -> str:
    """A short, ASCII-only picture of a value for ``dlq.detail`` (never ``str()`` of an
    arbitrary value: a 5,000-digit int cannot even be turned into text)."""
    if isinstance(value, str):
        return ascii(value[:48])
    return type(value).__name__


def _uuid(record: Mapping[str, Any], field: str) -> UUID:
    value = record.get(field)
    if value is None:
        raise DecodeError("missing-field", f"'{field}' is required")
    if isinstance(value, UUID):
        return value
    if isinstance(value, str) and len(value) <= 45:  # the longest form: urn:uuid:{...}
        try:
            return parse_uuid(value)
        except ValueError:
            pass
    raise DecodeError("invalid-field", f"'{field}' is not a UUID: {_show(value)}")


def _timestamp(value: Any) -> datetime:
    """Epoch microseconds (Avro's timestamp-micros; JSON integers) or ISO-8601 text (naive
    means UTC), within :data:`ISSUED_AT_MIN` .. :data:`ISSUED_AT_MAX`; anything else —
    floats, booleans, nanoseconds mistaken for microseconds — is refused."""
    if type(value) is int:  # not bool, and the common case first
        if 0 <= value <= _MAX_MICROS:
            return ISSUED_AT_MIN + value * _MICROSECOND
        raise DecodeError("invalid-field", "'issued_at' epoch micros out of range "
                          f"(0..{_MAX_MICROS}: years 1970..9999; nanoseconds?)")
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value) if len(value) <= 64 else None
        except ValueError:  # UnicodeEncodeError (lone surrogates) is a ValueError too
            at = None
        if at is None:
            raise DecodeError("invalid-field", "'issued_at' is not an ISO-8601 time: "
                              f"{_show(value)}")
        value = at
    if isinstance(value, datetime):
        at = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        # Compare before converting: astimezone(UTC) overflows for 9999-12-31T23:00-05:00.
        if not ISSUED_AT_MIN <= at <= ISSUED_AT_MAX:
            raise DecodeError("invalid-field", "'issued_at' is out of range (years "
                              "1970..9999 UTC)")
        return at if at.tzinfo is UTC else at.astimezone(UTC)
    raise DecodeError("invalid-field", "'issued_at' must be ISO-8601 text or epoch "
                      f"micros, not {_show(value)}")


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


def _text(record: Mapping[str, Any], field: str, max_len: int | None = None) -> str | None:
    value = record.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DecodeError("invalid-field", f"'{field}' must be text, not {_show(value)}")
    if max_len is not None and len(value) > max_len:
        raise DecodeError("invalid-field", f"'{field}' is longer than {max_len} characters")
    return _storable(value, field)


def _version(record: Mapping[str, Any]) -> int | None:
    value = record.get("expected_version")
    if value is None:
        return None
    # JSON integers past 64 bits arrive as floats (orjson): refused here with the rest.
    if type(value) is not int:
        raise DecodeError("invalid-field", "'expected_version' must be an integer, not "
                          f"{_show(value)}")
    if not 0 <= value <= VERSION_MAX:
        raise DecodeError("invalid-field", f"'expected_version' must be within "
                          f"0..{VERSION_MAX}")
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
    status = _STATUSES.get(value) if isinstance(value, str) else None
    if status is None:
        raise DecodeError("invalid-field", f"'status' must be one of {list(_STATUSES)}, "
                          f"not {_show(value)}")
    return status


def command_from_record(record: Mapping[str, Any]) -> AnyCommand:
    """Build a command from a decoded Avro record (plain: UUIDs as text, times as epoch
    micros), a JSON object, or a dict holding ``UUID``/``datetime`` values (the CLI).
    Structural checks only; raises nothing but :class:`DecodeError`."""
    raw_type = record.get("command_type")
    ctype = _COMMAND_TYPES.get(raw_type) if isinstance(raw_type, str) else None
    if ctype is None:
        raise DecodeError("invalid-field", "'command_type' must be CREATE, UPDATE or "
                          f"DELETE, not {_show(raw_type)}")
    issued_at = record.get("issued_at")
    if issued_at is None:
        raise DecodeError("missing-field", "'issued_at' is required")
    common: dict[str, Any] = {
        "command_id": _uuid(record, "command_id"),
        "resource_id": _uuid(record, "resource_id"),
        "issued_at": _timestamp(issued_at),
        "expected_version": _version(record),
        "correlation_id": _text(record, "correlation_id", TEXT_MAX),
        "issued_by": _text(record, "issued_by", TEXT_MAX),
    }
    if ctype is CommandType.DELETE:
        return DeleteResource(**common)
    name = _text(record, "name")
    if ctype is CommandType.CREATE:
        return CreateResource(**common, name=name or "", config=_config(record) or {},
                              status=_status(record) or Status.PENDING)
    return UpdateResource(**common, name=name, config=_config(record), status=_status(record))


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
    # json, not orjson: it escapes what orjson would refuse (lone surrogates), so a careless
    # value is dead-lettered by the worker with a reason instead of failing the publisher.
    return json.dumps({k: v for k, v in record.items() if v is not None}).encode()


def _json_problem(e: orjson.JSONDecodeError) -> str:
    text = str(e)
    if "depth" in text or "recursion" in text.lower():
        return clip(f"nested deeper than the JSON parser allows (1,024 levels): {text}")
    return clip(text)


class CommandCodec:
    """Decodes commands in any accepted format; encodes them in the configured one."""

    def __init__(self, framing: Framing, max_bytes: int = 256 * 1024,
                 writers: tuple[AvroSchema, ...] = ()) -> None:
        """``writers``: further writer schemas to accept in single-object encoding (newer
        compatible versions; see ``docs/wire-format.md``)."""
        self.framing = framing
        self.schema = load_schema(COMMAND_SCHEMA)
        # The specialised reader follows one version of the schema; any other uses fastavro.
        self._specialised = (command_reader.read_command
                             if self.schema.fingerprint == command_reader.READS else None)
        framing.remember(*released_schemas(COMMAND_SCHEMA), *writers)
        self.max_bytes = max_bytes

    def encode(self, command: AnyCommand, fmt: str = "avro") -> tuple[bytes, str]:
        """Return ``(value, content_type)``."""
        if fmt == "json":
            return command_to_json(command), JSON_CONTENT_TYPE
        return self.framing.encode(self.schema, command_to_record(command)), AVRO_CONTENT_TYPE

    def decode(self, value: bytes | None, content_type: str | None = None) -> AnyCommand:
        """Any bytes → a storable command, or :class:`DecodeError` (see the module doc).
        ``content_type``: the header's media type (parameters are ignored); JSON is also
        recognised by a leading ``{``."""
        if not value:
            raise DecodeError("empty", "the record has no value (a tombstone?)")
        if len(value) > self.max_bytes:  # first: nothing of an oversized value is read
            raise MessageTooLarge("too-large", f"{len(value)} bytes; the limit is "
                                  f"{self.max_bytes} (PHOENIX_MAX_COMMAND_BYTES)")
        if value[:1] == b"{" or (content_type is not None and is_json(content_type)):
            try:
                record = orjson.loads(value)
            except orjson.JSONDecodeError as e:
                raise DecodeError("malformed-json", _json_problem(e)) from e
            if not isinstance(record, dict):
                raise DecodeError("malformed-json", "a command must be a JSON object")
            return command_from_record(record)
        return command_from_record(self.framing.decode(self.schema, value, plain=True,
                                                       specialised=self._specialised))
