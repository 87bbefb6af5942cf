"""Response shapes, declared for the OpenAPI document only.

The routes render JSON in PostgreSQL and return it as bytes; these models are what that JSON
conforms to (the schemathesis tests check it). They are never instantiated on the hot path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from phoenix_resources.domain.model import Status


class ResourceOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID
    name: str
    config: dict[str, str]
    status: Status
    version: int = Field(ge=1, description="Increases by one with every applied command.")
    created_at: datetime
    updated_at: datetime
    last_command_id: UUID = Field(description="The command that produced this version.")


class ResourcePage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ResourceOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page.")


class CommandOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command_id: UUID
    resource_id: UUID
    command_type: Literal["CREATE", "UPDATE", "DELETE"]
    outcome: Literal["pending", "applied", "rejected", "parked"] = Field(
        description="`parked`: applying it failed unexpectedly (PRK-001) or an earlier command "
                    "of its resource is parked (PRK-002); it waits for a replay.")
    error_code: str | None = Field(
        description="The rule's code when rejected (CMD-…), the reason when parked (PRK-…).")
    error_message: str | None
    resulting_version: int | None = Field(
        description="The resource's version after this command, when applied.")
    duplicate_deliveries: int = Field(
        ge=0, description="Repeat deliveries of this command_id that changed nothing.")
    duplicate: bool = Field(description="True when the command was delivered more than once.")
    correlation_id: str | None
    processed_at: datetime


class Problem(BaseModel):
    """RFC 9457 problem details with the service's stable ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(pattern=r"^RES-\d{3}$")
    instance: str


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    checks: dict[str, dict[str, object]]
