"""Events and rejections produced straight to the topics with the project's EventCodec, as
the relay would (for subscriber tests that need no worker or relay)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from confluent_kafka import Producer

from phoenix_resources import bootstrap
from phoenix_resources.client import Delivery, EventSubscriber
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import CommandType
from phoenix_resources.domain.events import (
    CommandRejected,
    ResourceChanged,
    ResourceCreated,
    ResourceUpdated,
    event_id_for,
    rejection_id_for,
)
from phoenix_resources.domain.model import Resource, Status

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def make_event(rid: uuid.UUID, version: int, command_id: uuid.UUID | None = None
               ) -> ResourceChanged:
    now = datetime.now(UTC)
    cid = command_id or uuid.uuid4()
    kind = ResourceCreated if version == 1 else ResourceUpdated
    resource = Resource(id=rid, name=f"r-{version}", config={}, status=Status.ACTIVE,
                        version=version, created_at=now, updated_at=now, last_command_id=cid)
    return kind(event_id=event_id_for(cid), resource_id=rid, version=version, occurred_at=now,
                command_id=cid, correlation_id=None, changed_fields=("name",),
                resource=resource)


def ce_headers(type_name: str, ce_id: uuid.UUID, subject: uuid.UUID) -> list[tuple[str, bytes]]:
    return [("ce_id", str(ce_id).encode()), ("ce_type", f"phoenix.resources.v1.{type_name}"
                                             .encode()),
            ("ce_source", b"urn:phoenix:resources"), ("ce_subject", str(subject).encode()),
            ("ce_time", datetime.now(UTC).isoformat().encode()), ("ce_specversion", b"1.0"),
            ("content-type", b"application/avro"), ("traceparent", TRACEPARENT.encode())]


def produce_events(settings: Settings, events: list[ResourceChanged]) -> None:
    codec = bootstrap.event_codec(settings)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for e in events:
        producer.produce(settings.events_topic, key=str(e.resource_id).encode(),
                         value=codec.encode_event(e),
                         headers=ce_headers(e.type_name, e.event_id, e.resource_id))
    assert producer.flush(10) == 0


def produce_rejection(settings: Settings, command_id: uuid.UUID, rid: uuid.UUID) -> None:
    codec = bootstrap.event_codec(settings)
    rejection = CommandRejected(rejection_id=rejection_id_for(command_id), command_id=command_id,
                                command_type=CommandType.UPDATE, resource_id=rid,
                                code="CMD-004", message=f"resource {rid} does not exist",
                                rejected_at=datetime.now(UTC), correlation_id=None)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(settings.rejections_topic, key=str(rid).encode(),
                     value=codec.encode_rejection(rejection),
                     headers=ce_headers("CommandRejected", rejection.rejection_id, rid))
    assert producer.flush(10) == 0


def take(subscriber: EventSubscriber, n: int, timeout: float = 30) -> list[Delivery]:
    out: list[Delivery] = []
    for delivery in subscriber.deliveries(timeout=timeout):
        out.append(delivery)
        if len(out) == n:
            break  # the n-th is handed out but not stored
    return out
