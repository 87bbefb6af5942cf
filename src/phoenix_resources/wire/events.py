"""Events and rejections on the wire: Avro in the configured framing.

The worker encodes what it writes to the outbox; subscribers decode what they read.
Decoding raises nothing but :class:`~phoenix_resources.errors.DecodeError` (and
:class:`~phoenix_resources.errors.RegistryUnavailable` while the registry cannot answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from phoenix_resources.domain.commands import CommandType
from phoenix_resources.domain.events import (
    EVENT_CLASSES,
    CommandRejected,
    EventType,
    ResourceChanged,
)
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.errors import DecodeError
from phoenix_resources.wire import event_writer
from phoenix_resources.wire.framing import (
    EVENT_SCHEMA,
    REJECTION_SCHEMA,
    Framing,
    load_schema,
    released_schemas,
)

RESOURCE_RECORD = "phoenix.resources.v1.Resource"

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
        framing.remember(*released_schemas(EVENT_SCHEMA), *released_schemas(REJECTION_SCHEMA))
        # The specialised writer follows one version of the schema; any other uses fastavro.
        self._fast = self.event_schema.fingerprint == event_writer.WRITTEN_FOR

    def prepare(self) -> None:
        """Look up the registry ids of the event and rejection schemas now. The worker calls
        it at start: a subject the registry does not have is a ConfigurationError there
        (the worker never registers schemas), not at the first write. No-op without a
        registry. Raises RegistryUnavailable while the registry cannot answer."""
        self.framing.prepare((self.event_schema, self.rejection_schema))

    def encode_event(self, event: ResourceChanged) -> bytes:
        if self._fast:
            return self.framing.prefix(self.event_schema) + event_writer.event_body(event)
        return self.framing.encode(self.event_schema, event_to_wire(event), plain=True)

    def decode_event(self, value: bytes) -> ResourceChanged:
        record = self.framing.decode(self.event_schema, value)
        try:
            return event_from_record(record)
        except (KeyError, ValueError, TypeError) as e:
            raise DecodeError("invalid-field", f"not an event: {type(e).__name__}") from e

    def encode_rejection(self, rejection: CommandRejected) -> bytes:
        return self.framing.encode(self.rejection_schema, rejection_to_record(rejection))

    def decode_rejection(self, value: bytes) -> CommandRejected:
        record = self.framing.decode(self.rejection_schema, value)
        try:
            return rejection_from_record(record)
        except (KeyError, ValueError, TypeError) as e:
            raise DecodeError("invalid-field", f"not a rejection: {type(e).__name__}") from e
