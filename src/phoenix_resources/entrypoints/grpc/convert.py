"""Messages of ``phoenix.resources.v1`` to and from what the rest of the service speaks: the
read queries' JSON documents, domain events, and commands. Pure functions: no I/O.

Guarantees: a resource or outcome carries exactly the fields (and values) the HTTP API
answers for it; requests become the same commands the client library builds, so the same
local validation (:class:`CommandInvalid` with the rule's code) applies before anything is
published.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from phoenix_resources.client.commands import (
    INVALID_FIELD,
    create_command,
    delete_command,
    update_command,
)
from phoenix_resources.domain.commands import CreateResource, DeleteResource, UpdateResource
from phoenix_resources.domain.events import EventType, ResourceChanged
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.errors import CommandInvalid
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb

STATUS_TO_PROTO: Mapping[str, pb.ResourceStatus.ValueType] = {
    Status.PENDING.value: pb.RESOURCE_STATUS_PENDING,
    Status.ACTIVE.value: pb.RESOURCE_STATUS_ACTIVE,
    Status.INACTIVE.value: pb.RESOURCE_STATUS_INACTIVE,
}
STATUS_FROM_PROTO: Mapping[int, Status] = {
    v: Status(k) for k, v in STATUS_TO_PROTO.items()}
COMMAND_TYPE_TO_PROTO: Mapping[str, pb.CommandType.ValueType] = {
    "CREATE": pb.COMMAND_TYPE_CREATE, "UPDATE": pb.COMMAND_TYPE_UPDATE,
    "DELETE": pb.COMMAND_TYPE_DELETE}
OUTCOME_TO_PROTO: Mapping[str, pb.Outcome.ValueType] = {
    "pending": pb.OUTCOME_PENDING, "applied": pb.OUTCOME_APPLIED,
    "rejected": pb.OUTCOME_REJECTED, "parked": pb.OUTCOME_PARKED}
EVENT_TYPE_TO_PROTO: Mapping[EventType, pb.EventType.ValueType] = {
    EventType.CREATED: pb.EVENT_TYPE_CREATED, EventType.UPDATED: pb.EVENT_TYPE_UPDATED,
    EventType.DELETED: pb.EVENT_TYPE_DELETED}


def timestamp(value: str | datetime) -> Timestamp:
    """An RFC 3339 text (as PostgreSQL renders it, ``…Z``) or an aware datetime."""
    ts = Timestamp()
    ts.FromDatetime(datetime.fromisoformat(value) if isinstance(value, str) else value)
    return ts


# --- reads ---------------------------------------------------------------------------------

def parse_id(value: str, field: str) -> UUID:
    """A UUID from a request field; ``ApiProblem`` RES-001 (INVALID_ARGUMENT) otherwise."""
    try:
        return UUID(value)
    except ValueError:
        raise p.ApiProblem(p.INVALID_REQUEST,
                           f"{field} is not a UUID: {value[:64]!r}") from None


def resource_from_doc(doc: Mapping[str, Any]) -> pb.Resource:
    """A resource document of the read queries (``RESOURCE_JSON``), already parsed."""
    return pb.Resource(id=doc["id"], name=doc["name"], config=doc["config"],
                       status=STATUS_TO_PROTO[doc["status"]], version=doc["version"],
                       created_at=timestamp(doc["created_at"]),
                       updated_at=timestamp(doc["updated_at"]),
                       last_command_id=doc["last_command_id"])


def resource_from_json(text: str) -> pb.Resource:
    return resource_from_doc(orjson.loads(text))


def outcome_from_json(text: str) -> pb.CommandOutcome:
    """The recorded outcome document of the read queries (``COMMAND_JSON``)."""
    doc = orjson.loads(text)
    out = pb.CommandOutcome(
        command_id=doc["command_id"], resource_id=doc["resource_id"],
        command_type=COMMAND_TYPE_TO_PROTO[doc["command_type"]],
        outcome=OUTCOME_TO_PROTO[doc["outcome"]], error_code=doc["error_code"] or "",
        error_message=doc["error_message"] or "",
        duplicate_deliveries=doc["duplicate_deliveries"],
        correlation_id=doc["correlation_id"] or "", processed_at=timestamp(doc["processed_at"]))
    if doc["resulting_version"] is not None:
        out.resulting_version = doc["resulting_version"]
    return out


def status_filter(value: int) -> Status | None:
    """A list filter: UNSPECIFIED is "any"; an unknown number is RES-001."""
    if value == pb.RESOURCE_STATUS_UNSPECIFIED:
        return None
    if value not in STATUS_FROM_PROTO:
        raise p.ApiProblem(p.INVALID_REQUEST, f"status {value} is not a ResourceStatus")
    return STATUS_FROM_PROTO[value]


# --- events --------------------------------------------------------------------------------

def resource_message(r: Resource) -> pb.Resource:
    return pb.Resource(id=str(r.id), name=r.name, config=dict(r.config),
                       status=STATUS_TO_PROTO[r.status.value], version=r.version,
                       created_at=timestamp(r.created_at), updated_at=timestamp(r.updated_at),
                       last_command_id=str(r.last_command_id))


def event_message(e: ResourceChanged, position: str, traceparent: str | None) -> pb.ResourceEvent:
    out = pb.ResourceEvent(
        event_id=str(e.event_id), event_type=EVENT_TYPE_TO_PROTO[e.event_type],
        resource_id=str(e.resource_id), version=e.version, occurred_at=timestamp(e.occurred_at),
        command_id=str(e.command_id), correlation_id=e.correlation_id or "",
        changed_fields=list(e.changed_fields), position=position,
        traceparent=traceparent or "")
    if e.resource is not None:
        out.resource.CopyFrom(resource_message(e.resource))
    return out


# --- writes --------------------------------------------------------------------------------

def command_status(value: int) -> Status | None:
    """A command's status: UNSPECIFIED means "not given"; an unknown number is refused like
    the client library refuses an unknown status (``invalid-field``)."""
    if value == pb.RESOURCE_STATUS_UNSPECIFIED:
        return None
    if value not in STATUS_FROM_PROTO:
        raise CommandInvalid(INVALID_FIELD, f"status {value} is not a ResourceStatus")
    return STATUS_FROM_PROTO[value]


def create_from(r: pb.CreateResourceRequest) -> CreateResource:
    return create_command(r.name, resource_id=r.resource_id or None, config=dict(r.config),
                          status=command_status(r.status), command_id=r.command_id or None,
                          correlation_id=r.correlation_id or None)


def update_from(r: pb.UpdateResourceRequest) -> UpdateResource:
    return update_command(
        r.resource_id, name=r.name if r.HasField("name") else None,
        config=dict(r.config.entries) if r.HasField("config") else None,
        status=command_status(r.status), command_id=r.command_id or None,
        correlation_id=r.correlation_id or None,
        expected_version=r.expected_version if r.HasField("expected_version") else None)


def delete_from(r: pb.DeleteResourceRequest) -> DeleteResource:
    return delete_command(
        r.resource_id, command_id=r.command_id or None, correlation_id=r.correlation_id or None,
        expected_version=r.expected_version if r.HasField("expected_version") else None)
