"""The fast UUID helpers give exactly what the standard library gives."""

from __future__ import annotations

import copy
import pickle
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_resources.domain.events import event_id_for, rejection_id_for
from phoenix_resources.domain.ids import name_based_uuid, parse_uuid

pytestmark = pytest.mark.unit


@given(value=st.uuids(), name=st.text(st.characters(exclude_categories=["Cs"])))
def test_name_based_uuid_is_uuid5(value: uuid.UUID, name: str) -> None:
    made = name_based_uuid(value, name)
    expected = uuid.uuid5(value, name)
    assert made == expected
    assert (made.version, made.variant) == (5, uuid.RFC_4122)
    assert str(made) == str(expected)
    assert hash(made) == hash(expected)


@given(value=st.uuids())
def test_parse_uuid_reads_every_form_uuid_reads(value: uuid.UUID) -> None:
    for text in (str(value), str(value).upper(), value.hex, "{" + str(value) + "}",
                 f"urn:uuid:{value}"):
        assert parse_uuid(text) == uuid.UUID(text) == value
        assert str(parse_uuid(text)) == str(value)


@pytest.mark.parametrize("text", ["", "xyz", "0" * 35, "g" * 36,
                                  "12345678-1234-1234-1234-12345678901g"])
def test_parse_uuid_refuses_what_uuid_refuses(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the standard library's own error
        parse_uuid(text)


def test_event_and_rejection_ids_are_stable() -> None:
    cid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert event_id_for(cid) == uuid.uuid5(uuid.UUID("6f1c1d6e-2b7a-4c55-9a64-3d1b8f0e5a21"),
                                           str(cid))
    assert rejection_id_for(cid) == uuid.uuid5(
        uuid.UUID("0b8e7c4a-91d2-4f3e-8a0c-5c2d7e9f1b33"), str(cid))


@given(value=st.uuids())
def test_a_parsed_id_is_an_ordinary_uuid_that_keeps_its_text(value: uuid.UUID) -> None:
    parsed = parse_uuid(str(value))
    assert isinstance(parsed, uuid.UUID)
    assert (parsed, hash(parsed), str(parsed), repr(parsed)) == (
        value, hash(value), str(value), repr(value))
    assert {parsed: 1}[value] == 1
    assert sorted([parsed, value, uuid.UUID(int=0)])[0] == uuid.UUID(int=0)
    for copied in (copy.copy(parsed), copy.deepcopy(parsed),
                   pickle.loads(pickle.dumps(parsed))):
        assert type(copied) is uuid.UUID
        assert copied == value
        assert str(copied) == str(value)
