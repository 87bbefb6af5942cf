"""Events: what happened. Past-tense names; immutable values.

``event_id`` is derived from ``command_id``, so it is the same however often the command or
the event is redelivered; subscribers may drop repeats by ``event_id`` or by
``(resource_id, version)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from phoenix_resources.domain.commands import CommandType
from phoenix_resources.domain.ids import name_based_uuid
from phoenix_resources.domain.model import Resource

_EVENT_NAMESPACE = UUID("6f1c1d6e-2b7a-4c55-9a64-3d1b8f0e5a21")
_REJECTION_NAMESPACE = UUID("0b8e7c4a-91d2-4f3e-8a0c-5c2d7e9f1b33")


def event_id_for(command_id: UUID) -> UUID:
    """``uuid5(event namespace, str(command_id))``: the same however often it is derived."""
    return name_based_uuid(_EVENT_NAMESPACE, str(command_id))


def rejection_id_for(command_id: UUID) -> UUID:
    return name_based_uuid(_REJECTION_NAMESPACE, str(command_id))


def reuse_rejection_id_for(command_id: UUID, resource_id: UUID, command_type: str) -> UUID:
    """The id of the refusal of a command that reuses ``command_id`` (CMD-012):
    ``uuid5(rejection namespace, "<command_id>/<resource_id>/<COMMAND_TYPE>")``. The name
    holds what differs from the command the id names, so it never equals that command's
    refusal id (``rejection_id_for``: the bare id) nor another reuse's, and stays the same
    however often this one is delivered."""
    return name_based_uuid(_REJECTION_NAMESPACE, f"{command_id}/{resource_id}/{command_type}")


class EventType(StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceChanged:
    """A change to one resource. ``resource`` is the state after (``None`` on delete)."""

    event_type: ClassVar[EventType]
    type_name: ClassVar[str]
    event_id: UUID
    resource_id: UUID
    version: int
    occurred_at: datetime
    command_id: UUID
    correlation_id: str | None
    changed_fields: tuple[str, ...]
    resource: Resource | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceCreated(ResourceChanged):
    event_type: ClassVar[EventType] = EventType.CREATED
    type_name: ClassVar[str] = "ResourceCreated"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceUpdated(ResourceChanged):
    event_type: ClassVar[EventType] = EventType.UPDATED
    type_name: ClassVar[str] = "ResourceUpdated"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceDeleted(ResourceChanged):
    event_type: ClassVar[EventType] = EventType.DELETED
    type_name: ClassVar[str] = "ResourceDeleted"


EVENT_CLASSES: dict[EventType, type[ResourceChanged]] = {
    EventType.CREATED: ResourceCreated,
    EventType.UPDATED: ResourceUpdated,
    EventType.DELETED: ResourceDeleted,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected:
    """A command refused by the rules; announced on the rejections topic."""

    type_name: ClassVar[str] = "CommandRejected"
    rejection_id: UUID
    command_id: UUID
    command_type: CommandType
    resource_id: UUID
    code: str
    message: str
    rejected_at: datetime
    correlation_id: str | None
