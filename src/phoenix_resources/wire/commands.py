"""Commands on the wire: Avro (either framing) or JSON (``content-type: application/json``).

Decoding checks structure only (types, ids, storable values), with the one validator every
entry uses (``wire/validation.py``); the rules are ``decide``'s.

Guarantee: :meth:`CommandCodec.decode` turns any bytes into a storable command or raises
:class:`~phoenix_resources.errors.DecodeError` (whose ``reason`` slug goes into the DLQ
headers) — nothing else, except :class:`~phoenix_resources.errors.RegistryUnavailable` while
a registry that must name the writer schema cannot answer. *Storable* is
:func:`~phoenix_resources.wire.validation.check_command`'s: ids are UUIDs; text has no NUL
and is valid UTF-8; ``correlation_id`` and ``issued_by`` have at most 255 characters;
``expected_version`` is within 0..2^63-1 (BIGINT); ``issued_at`` is within
1973-03-03T09:46:40 .. 9999-12-31T23:59:59.999999 UTC (epoch integers below 10^14 are
milliseconds or seconds mistaken for microseconds: ``issued-at-unit``).
``tests/fuzz`` checks this property on generated input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
from phoenix_resources.wire.validation import check_command, issued_at_from, show, status_of

AVRO_CONTENT_TYPE = "application/avro"

_COMMAND_TYPES = {t.value: t for t in CommandType}


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
    raise DecodeError("invalid-field", f"'{field}' is not a UUID: {show(value)}")


def command_from_record(record: Mapping[str, Any]) -> AnyCommand:
    """Build a command from a decoded Avro record (plain: UUIDs as text, times as epoch
    micros), a JSON object, or a dict holding ``UUID``/``datetime`` values (the CLI), then
    check it with the one validator's :func:`~.validation.check_command` — what every
    entry checks before publishing. Raises nothing but :class:`DecodeError`."""
    raw_type = record.get("command_type")
    ctype = _COMMAND_TYPES.get(raw_type) if isinstance(raw_type, str) else None
    if ctype is None:
        raise DecodeError("invalid-field", "'command_type' must be CREATE, UPDATE or "
                          f"DELETE, not {show(raw_type)}")
    issued_at = record.get("issued_at")
    if issued_at is None:
        raise DecodeError("missing-field", "'issued_at' is required")
    common: dict[str, Any] = {
        "command_id": _uuid(record, "command_id"),
        "resource_id": _uuid(record, "resource_id"),
        "issued_at": issued_at_from(issued_at),
        "expected_version": record.get("expected_version"),
        "correlation_id": record.get("correlation_id"),
        "issued_by": record.get("issued_by"),
    }
    command: AnyCommand
    if ctype is CommandType.DELETE:
        command = DeleteResource(**common)
    elif ctype is CommandType.CREATE:
        name, config = record.get("name"), record.get("config")
        command = CreateResource(**common, name="" if name is None else name,
                                 config={} if config is None else config,
                                 status=status_of(record.get("status")) or Status.PENDING)
    else:
        command = UpdateResource(**common, name=record.get("name"),
                                 config=record.get("config"),
                                 status=status_of(record.get("status")))
    check_command(command)
    return command


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


def json_record(value: bytes | str) -> dict[str, Any]:
    """A command's JSON object as the worker reads it (orjson: no NaN, no lone surrogate
    escapes, integers past 64 bits as floats); :class:`DecodeError` ``malformed-json``
    for anything else. ``send --file`` reads its lines with this too."""
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise DecodeError("malformed-json", _json_problem(e)) from e
    if not isinstance(record, dict):
        raise DecodeError("malformed-json", "a command must be a JSON object")
    return record


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
            return command_from_record(json_record(value))
        return command_from_record(self.framing.decode(self.schema, value, plain=True,
                                                       specialised=self._specialised))
