"""The native building blocks against their reference on their own: typed binary arrays
(``adapters/postgres/arrays.py``), name-based ids (``domain/ids.py``), the schema
fingerprints the native reader and writers follow, and the one refusal the native fold
raises where the reference would fail later (a version past PostgreSQL's BIGINT)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_resources.domain.commands import UpdateResource
from phoenix_resources.domain.ids import name_based_uuid
from tests.native.reference import (
    COMMAND_SCHEMA,
    EVENT_SCHEMA,
    REJECTION_SCHEMA,
    CommandCodec,
    Framing,
    Record,
    arrays,
    decode_natively,
    load_schema,
)
from tests.native.strategies import PARITY

pytestmark = pytest.mark.unit

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
TIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3))]))
ELEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "UuidArray": st.uuids(), "TextArray": TEXT, "ByteaArray": st.binary(max_size=20),
    "JsonbArray": TEXT, "Int8Array": st.integers(-(2**63), 2**63 - 1),
    "Int4Array": st.integers(-(2**31), 2**31 - 1), "TimestamptzArray": TIMES,
}


@st.composite
def typed_arrays(draw: st.DrawFn) -> tuple[str, list[Any]]:
    kind = draw(st.sampled_from(sorted(ELEMENTS)))
    return kind, draw(st.lists(st.none() | ELEMENTS[kind], max_size=6))


@PARITY
@given(array=typed_arrays())
def test_typed_arrays_are_the_same_bytes(native: ModuleType, array: tuple[str, list[Any]]
                                         ) -> None:
    kind, values = array
    assert native.pg_array(kind, values) == arrays.encode(getattr(arrays, kind)(values))


@PARITY
@given(namespace=st.uuids(), name=TEXT)
def test_name_based_ids(native: ModuleType, namespace: uuid.UUID, name: str) -> None:
    assert native.name_based_uuid(namespace, name) == name_based_uuid(namespace, name).bytes
    assert uuid.UUID(bytes=native.name_based_uuid(namespace, name)) == uuid.uuid5(namespace, name)


def test_it_follows_the_current_schemas(native: ModuleType) -> None:
    """When this fails a schema changed: the native reader or writer must follow it before
    the worker may use them (the Python reference follows the schema files by itself)."""
    assert load_schema(COMMAND_SCHEMA).fingerprint == native.COMMAND_FINGERPRINT
    assert load_schema(EVENT_SCHEMA).fingerprint == native.EVENT_FINGERPRINT
    assert load_schema(REJECTION_SCHEMA).fingerprint == native.REJECTION_FINGERPRINT
    assert load_schema(EVENT_SCHEMA).header == native.EVENT_HEADER
    assert load_schema(REJECTION_SCHEMA).header == native.REJECTION_HEADER


def test_a_version_past_bigint_is_refused(native: ModuleType) -> None:
    codec = CommandCodec(Framing())
    rid = uuid.uuid4()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    command = UpdateResource(command_id=uuid.uuid4(), resource_id=rid, issued_at=now, name="b")
    value, _ = codec.encode(command)
    batch, _ = decode_natively(native, codec, [Record(value, str(rid).encode(), None, 0, 0)])
    row: tuple[Any, ...] = (rid, "a", {}, "active", 2**63 - 1, now, now, uuid.uuid4(), None)
    with pytest.raises(OverflowError, match="2\\^63 - 1"):
        batch.plan().fold([], [], [row], now, events_topic="e", rejections_topic="r")
