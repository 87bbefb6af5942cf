"""The specialised event writer writes exactly the bytes of the generic Avro writer."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix_resources.domain.events import (
    ResourceChanged,
    ResourceCreated,
    ResourceDeleted,
    ResourceUpdated,
)
from phoenix_resources.domain.ids import parse_uuid
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.wire.event_writer import WRITTEN_FOR, event_body
from phoenix_resources.wire.events import EventCodec, event_to_wire
from phoenix_resources.wire.framing import EVENT_SCHEMA, Framing, load_schema

pytestmark = pytest.mark.unit

SCHEMA = load_schema(EVENT_SCHEMA)
GENERIC = Framing()
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
TIMES = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31),
                     timezones=st.just(UTC))
VERSIONS = st.integers(min_value=1, max_value=2**63 - 1)


@st.composite
def events(draw: st.DrawFn) -> ResourceChanged:
    cls = draw(st.sampled_from([ResourceCreated, ResourceUpdated, ResourceDeleted]))
    rid, cid = draw(st.uuids()), draw(st.uuids())
    version = draw(VERSIONS)
    resource = None if cls is ResourceDeleted else Resource(
        id=rid, name=draw(TEXT), config=draw(st.dictionaries(TEXT, TEXT, max_size=200)),
        status=draw(st.sampled_from(list(Status))), version=version,
        created_at=draw(TIMES), updated_at=draw(TIMES), last_command_id=cid)
    return cls(event_id=draw(st.uuids()), resource_id=rid, version=version,
               occurred_at=draw(TIMES), command_id=cid,
               correlation_id=draw(st.none() | TEXT),
               changed_fields=tuple(draw(st.lists(TEXT, max_size=200))),
               resource=resource)


def test_it_follows_the_current_event_schema() -> None:
    """When this fails the schema changed: update event_writer (and WRITTEN_FOR), or the
    codec silently falls back to the slower generic writer."""
    assert SCHEMA.fingerprint == WRITTEN_FOR


@settings(max_examples=300, deadline=None)
@given(event=events())
def test_same_bytes_as_the_generic_writer(event: ResourceChanged) -> None:
    generic = GENERIC.encode(SCHEMA, event_to_wire(event), plain=True)
    assert SCHEMA.header + event_body(event) == generic
    codec = EventCodec(Framing())
    assert codec.encode_event(event) == generic
    assert codec.decode_event(generic) == event


@settings(max_examples=100, deadline=None)
@given(data=st.data(), times=st.lists(TIMES, min_size=1, max_size=3))
def test_same_bytes_when_events_share_times_versions_and_parsed_ids(
        data: st.DataObject, times: list[datetime]) -> None:
    """A batch's events share ``now`` and carry small versions and ids parsed from text:
    the writer's shortcuts for those (the last time's encoding, one-byte longs, the ids'
    kept text) give the generic writer's bytes in any interleaving."""
    for _ in range(6):
        event = data.draw(events())
        rid = parse_uuid(str(event.resource_id))
        cid = parse_uuid(str(event.command_id))
        at = data.draw(st.sampled_from(times))
        version = data.draw(st.integers(min_value=1, max_value=130))
        resource = None if event.resource is None else replace(
            event.resource, id=rid, version=version, updated_at=at,
            created_at=data.draw(st.sampled_from(times)))
        event = replace(event, resource_id=rid, command_id=cid, occurred_at=at,
                        version=version, resource=resource)
        generic = GENERIC.encode(SCHEMA, event_to_wire(event), plain=True)
        assert SCHEMA.header + event_body(event) == generic
