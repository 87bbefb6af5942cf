"""The specialised command reader reads what the generic Avro reader reads, and refuses the
rest: on bodies any Avro writer produces, on mutations of them, and on the encodings fastavro
tolerates but no writer produces."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from phoenix_resources.errors import DecodeError
from phoenix_resources.wire.command_reader import READS, read_command
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.framing import COMMAND_SCHEMA, Framing, load_schema

pytestmark = pytest.mark.unit

SCHEMA = load_schema(COMMAND_SCHEMA)
START = len(SCHEMA.header)
TEXT = st.text(max_size=60)  # surrogates included: the writer refuses those records
LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
NON_CANONICAL = ("union index", "enum index", "negative or past the end", "64 bits")


def optional(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | values


RECORDS = st.fixed_dictionaries({
    "command_id": TEXT, "command_type": st.sampled_from(["CREATE", "UPDATE", "DELETE"]),
    "resource_id": TEXT, "expected_version": optional(LONGS), "name": optional(TEXT),
    "config": optional(st.dictionaries(TEXT, TEXT, max_size=40)),
    "status": optional(st.sampled_from(["pending", "active", "inactive"])),
    "issued_at": LONGS, "correlation_id": optional(TEXT), "issued_by": optional(TEXT),
})


def written(record: dict[str, Any]) -> bytes | None:
    """``record`` in single-object encoding by fastavro; None when the writer refuses it."""
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, SCHEMA.plain, record)
    except (UnicodeEncodeError, ValueError, OverflowError):
        return None
    return SCHEMA.header + buf.getvalue()


def generic(value: bytes) -> dict[str, Any] | DecodeError:
    """What fastavro makes of ``value`` (through the framing, as before the reader)."""
    try:
        return Framing().decode(SCHEMA, value, plain=True)
    except DecodeError as e:
        return e


def ours(value: bytes) -> dict[str, Any] | DecodeError:
    try:
        return read_command(value, START)
    except DecodeError as e:
        return e


def test_it_follows_the_current_command_schema() -> None:
    """When this fails the schema changed: update command_reader (and READS), or the codec
    silently falls back to the slower generic reader."""
    assert SCHEMA.fingerprint == READS
    assert CommandCodec(Framing())._specialised is read_command


@settings(max_examples=400, deadline=None)
@given(record=RECORDS)
def test_it_reads_what_the_generic_reader_reads(record: dict[str, Any]) -> None:
    value = written(record)
    if value is None:
        return
    assert ours(value) == generic(value) == record


def _mutated(value: bytes, data: st.DataObject) -> bytes:
    out = bytearray(value)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(START, max(START, len(out) - 1)))
        how = data.draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        if how == "set" and at < len(out):
            out[at] = data.draw(st.integers(0, 255))
        elif how == "insert":
            out[at:at] = data.draw(st.binary(min_size=1, max_size=12))
        elif how == "delete":
            del out[at:at + data.draw(st.integers(1, 8))]
        else:
            del out[at:]
    return bytes(out)


@settings(max_examples=600, deadline=None)
@given(record=RECORDS, data=st.data())
def test_on_mutated_bodies_it_agrees_or_refuses_what_no_writer_produces(
        record: dict[str, Any], data: st.DataObject) -> None:
    value = written(record)
    if value is None:
        return
    mutated = _mutated(value, data)
    mine, theirs = ours(mutated), generic(mutated)
    if isinstance(mine, DecodeError):
        assert mine.reason == "malformed-avro"
        if not isinstance(theirs, DecodeError):
            assert any(kind in mine.detail for kind in NON_CANONICAL), (mine.detail, theirs)
    else:
        assert mine == theirs


def _body(*parts: bytes) -> bytes:
    return SCHEMA.header + b"".join(parts)


_ID = b"\x48" + b"a" * 36  # a 36-character string
_HEAD = _ID + b"\x02" + _ID  # command_id, UPDATE, resource_id
_TAIL = b"\x80\x01" + b"\x00\x00"  # issued_at 64, no correlation_id, no issued_by


@pytest.mark.parametrize("config", [
    b"\x04\x02k\x02v\x02l\x02w\x00",  # one block of two entries
    b"\x02\x02k\x02v\x02\x02l\x02w\x00",  # two blocks of one
    b"\x03\x10\x02k\x02v\x02l\x02w\x00",  # a block giving its size (count -2, 8 bytes)
    b"\x02\x02k\x02v\x02\x02k\x02w\x00",  # a repeated key: the last one wins
])
def test_maps_in_any_block_layout_read_like_the_generic_reader(config: bytes) -> None:
    value = _body(_HEAD, b"\x00", b"\x00", b"\x02" + config, b"\x00", _TAIL)
    assert ours(value) == generic(value)
    assert isinstance(ours(value), dict)


@pytest.mark.parametrize(("middle", "kind"), [
    (b"\x00\x00\x00\x02\x01" + _TAIL, "enum index"),  # status index -1
    (b"\x00\x00\x00\x02\x06" + _TAIL, "enum index"),  # status index 3
    (b"\x01" + b"\x00\x00\x00" + _TAIL, "union index"),  # expected_version branch -1
    (b"\x00\x02\x01" + b"\x00\x00" + _TAIL, "negative or past the end"),  # name length -1
    (b"\x00\x00\x00\x00" + b"\xff" * 9 + b"\x02" + b"\x00\x00", "64 bits"),
])
def test_encodings_no_writer_produces_are_refused(middle: bytes, kind: str) -> None:
    result = ours(_body(_HEAD, middle))
    assert isinstance(result, DecodeError)
    assert result.reason == "malformed-avro"
    assert kind in result.detail


@given(record=RECORDS)
@example(record={"command_id": "x", "command_type": "DELETE", "resource_id": "y",
                 "expected_version": None, "name": None, "config": None, "status": None,
                 "issued_at": 0, "correlation_id": None, "issued_by": None})
@settings(max_examples=50, deadline=None)
def test_every_truncation_and_trailing_byte_is_refused(record: dict[str, Any]) -> None:
    value = written(record)
    if value is None:
        return
    for end in range(START, len(value)):
        assert isinstance(ours(value[:end]), DecodeError)
    trailing = ours(value + b"\x00")
    assert isinstance(trailing, DecodeError)
    assert "after the record" in trailing.detail


def test_invalid_utf8_is_refused_like_the_generic_reader() -> None:
    value = _body(b"\x48" + b"\xff" * 36, b"\x02", _ID, b"\x00\x00\x00\x00", _TAIL)
    assert isinstance(generic(value), DecodeError)
    result = ours(value)
    assert isinstance(result, DecodeError)
    assert "not UTF-8" in result.detail
