"""Commands: what publishers ask for. Imperative names; immutable values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from phoenix_resources.domain.model import Status


class CommandType(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Fields every command carries. ``command_id`` is the idempotency key."""

    type: ClassVar[CommandType]
    command_id: UUID
    resource_id: UUID
    issued_at: datetime
    expected_version: int | None = None
    correlation_id: str | None = None
    issued_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateResource(Command):
    type: ClassVar[CommandType] = CommandType.CREATE
    name: str
    config: Mapping[str, str]
    status: Status = Status.PENDING


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateResource(Command):
    """``None`` means "unchanged"; ``config`` replaces the whole map when given."""

    type: ClassVar[CommandType] = CommandType.UPDATE
    name: str | None = None
    config: Mapping[str, str] | None = None
    status: Status | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteResource(Command):
    type: ClassVar[CommandType] = CommandType.DELETE


AnyCommand = CreateResource | UpdateResource | DeleteResource
