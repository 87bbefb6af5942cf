"""The resource aggregate and its status machine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class Status(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    INACTIVE = "inactive"


ALLOWED_TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.ACTIVE, Status.INACTIVE}),
    Status.ACTIVE: frozenset({Status.INACTIVE}),
    Status.INACTIVE: frozenset({Status.ACTIVE}),
}
"""pending → active | inactive, active ↔ inactive; nothing ever returns to pending."""

NAME_MAX = 255
CONFIG_MAX_ENTRIES = 256
CONFIG_KEY_MAX = 255
CONFIG_VALUE_MAX = 4096


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource as stored. ``deleted_at`` set means a tombstone: the id is never reused."""

    id: UUID
    name: str
    config: Mapping[str, str]
    status: Status
    version: int
    created_at: datetime
    updated_at: datetime
    last_command_id: UUID
    deleted_at: datetime | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None
