"""Building and checking commands on the publisher's side, before anything is sent.

:func:`validate` is the one validator every entry and the worker's decoder share
(``wire/validation.py``): a command the worker would dead-letter or reject for its shape
alone is refused here with the same code (:class:`CommandInvalid`), so what is sent is
applied or rejected with a code, never dead-lettered. :func:`encode_checked` adds the
worker's size limit on the encoded bytes.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from phoenix_resources.domain.commands import (
    AnyCommand,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.model import Status
from phoenix_resources.errors import CommandInvalid
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.validation import INVALID_FIELD, check_encoded, validate

__all__ = ["INVALID_FIELD", "as_status", "as_uuid", "create_command", "delete_command",
           "encode_checked", "new_traceparent", "resource_id_for", "sampled_at",
           "update_command", "validate"]

RESOURCE_NAMESPACE = UUID("4b1f7c43-5a7e-4b51-9f0e-7d1e2a6c9b30")
"""Namespace of the resource ids :func:`resource_id_for` derives from command ids."""


def as_uuid(value: UUID | str, field: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError as e:
        raise CommandInvalid(INVALID_FIELD, f"{field} is not a UUID: {str(value)[:64]!r}") from e


def as_status(value: Status | str | None) -> Status | None:
    if value is None or isinstance(value, Status):
        return value
    try:
        return Status(value)
    except ValueError as e:
        raise CommandInvalid(INVALID_FIELD, f"status must be one of "
                             f"{', '.join(s.value for s in Status)}, not {value!r}") from e


_TRACECONTEXT = TraceContextTextMapPropagator()
_ID_BOUND = 1 << 64


def sampled_at(trace_id: int, ratio: float) -> bool:
    """OpenTelemetry's ``TraceIdRatioBased`` decision: the trace id's low 64 bits below
    ``ratio`` x 2^64. Every process deciding on the same id agrees."""
    return (trace_id & (_ID_BOUND - 1)) < round(ratio * _ID_BOUND)


def new_traceparent(sample_ratio: float = 1.0) -> str:
    """The ``traceparent`` header a command is published with, written by OpenTelemetry's
    W3C propagator.

    Inside an active OpenTelemetry span (an application that traces), the command joins that
    trace with that span as its parent, and the application's sampling decision stands.
    Otherwise a new trace starts, sampled with probability ``sample_ratio``
    (``PHOENIX_TRACE_SAMPLE_RATIO`` for the publisher), decided on the trace id like
    :func:`sampled_at`. Needs only the OpenTelemetry API package, no SDK."""
    span = trace.get_current_span()
    if not span.get_span_context().is_valid:
        trace_id = random.getrandbits(128) or 1
        flags = TraceFlags.SAMPLED if sampled_at(trace_id, sample_ratio) else TraceFlags.DEFAULT
        span = NonRecordingSpan(SpanContext(trace_id, random.getrandbits(64) or 1,
                                            is_remote=False, trace_flags=TraceFlags(flags)))
    carrier: dict[str, str] = {}
    _TRACECONTEXT.inject(carrier, context=trace.set_span_in_context(span))
    return carrier["traceparent"]


def encode_checked(codec: CommandCodec, command: AnyCommand, wire_format: str,
                   max_bytes: int) -> tuple[bytes, str]:
    """``(value, content_type)`` of ``command`` as it goes on the wire, after the one
    validator (:func:`validate`) and the worker's size limit (``too-large``); raises
    :class:`CommandInvalid` (nothing to send) otherwise."""
    validate(command)
    value, content_type = codec.encode(command, wire_format)
    return check_encoded(value, max_bytes), content_type


def resource_id_for(command_id: UUID) -> UUID:
    """The id a create gets when its caller does not name the resource: derived from the
    command id (UUID version 5). A retry of that create with the same ``command_id`` then
    targets the same resource, on the same partition, and is recognised as a duplicate —
    instead of racing the first attempt under another, random id."""
    return uuid.uuid5(RESOURCE_NAMESPACE, str(command_id))


def _common(resource_id: UUID | str, command_id: UUID | str | None,
            correlation_id: str | None, issued_by: str | None,
            expected_version: int | None) -> dict[str, Any]:
    return {"resource_id": as_uuid(resource_id, "resource_id"),
            "command_id": uuid.uuid4() if command_id is None
            else as_uuid(command_id, "command_id"),
            "issued_at": datetime.now(UTC), "correlation_id": correlation_id,
            "issued_by": issued_by, "expected_version": expected_version}


def create_command(name: str, *, resource_id: UUID | str | None = None,
                   config: Mapping[str, str] | None = None, status: Status | str | None = None,
                   command_id: UUID | str | None = None, correlation_id: str | None = None,
                   issued_by: str | None = None, expected_version: int | None = None
                   ) -> CreateResource:
    """A create command, e.g. for ``send_many``. A command id not given is generated; a
    resource id not given is derived from the command id (:func:`resource_id_for`), so a
    retry with the same ``command_id`` is the same command."""
    cid = uuid.uuid4() if command_id is None else as_uuid(command_id, "command_id")
    rid = resource_id_for(cid) if resource_id is None else resource_id
    return CreateResource(**_common(rid, cid, correlation_id, issued_by, expected_version),
                          name=name, config=dict(config or {}),
                          status=as_status(status) or Status.PENDING)


def update_command(resource_id: UUID | str, *, name: str | None = None,
                   config: Mapping[str, str] | None = None, status: Status | str | None = None,
                   command_id: UUID | str | None = None, correlation_id: str | None = None,
                   issued_by: str | None = None, expected_version: int | None = None
                   ) -> UpdateResource:
    return UpdateResource(**_common(resource_id, command_id, correlation_id, issued_by,
                                    expected_version),
                          name=name, config=None if config is None else dict(config),
                          status=as_status(status))


def delete_command(resource_id: UUID | str, *, command_id: UUID | str | None = None,
                   correlation_id: str | None = None, issued_by: str | None = None,
                   expected_version: int | None = None) -> DeleteResource:
    return DeleteResource(**_common(resource_id, command_id, correlation_id, issued_by,
                                    expected_version))
