"""Property: every input ends as a storable command or a DecodeError with a documented
reason — nothing else escapes the codec. Run big with ``make fuzz``."""

from __future__ import annotations

import io
import json
import struct
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix_resources.errors import DecodeError
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.framing import (
    COMMAND_SCHEMA,
    EVENT_SCHEMA,
    SINGLE_OBJECT_MAGIC,
    AvroSchema,
    Framing,
    load_schema,
    writer_schemas,
)
from phoenix_resources.wire.headers import (
    CONTENT_TYPE,
    TRACEPARENT,
    CommandHeaders,
    command_headers,
)
from tests.fuzz.conftest import COUNT, PROFILE
from tests.fuzz.oracle import assert_documented, assert_storable

pytestmark = pytest.mark.unit

FUZZ = settings(parent=settings.get_profile(PROFILE))
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "writer_schemas"
MIB = 1 << 20

COMMAND = load_schema(COMMAND_SCHEMA)
V2 = writer_schemas(FIXTURES)[0]


class InProcessRegistry:
    """Ids 1 (the command schema), 2 (its v2), 3 (the event schema: incompatible); every
    other id is unknown. Not HTTP: the HTTP client is tested in test_codec_registry."""

    schemas = {1: COMMAND, 2: V2, 3: load_schema(EVENT_SCHEMA)}

    def id_for(self, subject: str, schema: AvroSchema) -> int:
        return 1

    def writer_for(self, schema_id: int) -> AvroSchema:
        found = self.schemas.get(schema_id)
        if found is None:
            raise DecodeError("unknown-schema", f"schema id {schema_id}")
        return found


CODEC = CommandCodec(Framing(InProcessRegistry()), max_bytes=MIB, writers=(V2,))


def check(value: bytes | None, content_type: str | None = None) -> None:
    COUNT["inputs"] += 1
    try:
        command = CODEC.decode(value, content_type)
    except DecodeError as e:
        assert_documented(e)
    else:
        assert_storable(command)


CONTENT_TYPES = st.sampled_from([None, "application/json", "application/avro", "text/plain",
                                 "Application/JSON; charset=utf-8", "application/x+json",
                                 "", ";;", "application/json\x00"])

# --- arbitrary bytes --------------------------------------------------------------------

PREFIXES = (b"", b"{", b"[", b"\x00", b"\x00\x00\x00\x00\x01", b"\x00\x00\x00\x00\x02",
            b"\x00\x00\x00\x00\x03", b"\x00\xff\xff\xff\xff", SINGLE_OBJECT_MAGIC,
            COMMAND.header, V2.header, b'{"command_type": "CREATE", ')


@FUZZ
@given(tail=st.binary(max_size=512), content_type=CONTENT_TYPES)
def test_arbitrary_bytes(tail: bytes, content_type: str | None) -> None:
    """The same bytes behind each framing's magic (12 inputs per example)."""
    for prefix in PREFIXES:
        check(prefix + tail, content_type)


# --- JSON documents: every field in every type, size and depth ---------------------------

MAX_MICROS = 253_402_300_799_999_999
INTS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, MAX_MICROS, MAX_MICROS + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64,
                     1_700_000_000_000_000_000, 10**30, -(10**30), 10**300]))
TEXT = st.text(max_size=80)  # any code point, lone surrogates and NUL included
SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(allow_nan=False), TEXT)
ANY_JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)
UUIDS = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex),
                  st.uuids().map(lambda u: "{" + str(u).upper() + "}"),
                  st.uuids().map(lambda u: f"urn:uuid:{u}"))
TIMES = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["9999-12-31T23:59:59.999999+00:00", "9999-12-31T23:00:00-05:00",
                     "0001-01-01T00:00:00+05:00", "1970-01-01T00:00:00Z", "2026-11-24",
                     "1969-12-31T23:59:59.999999+00:00", "nonsense", "", "\ud800"]))
FIELD_VALUES: dict[str, Any] = {
    "command_id": UUIDS, "resource_id": UUIDS,
    "command_type": st.sampled_from(["CREATE", "UPDATE", "DELETE", "create", "PATCH"]),
    "expected_version": INTS, "issued_at": st.one_of(TIMES, INTS),
    "name": TEXT, "config": st.dictionaries(TEXT, TEXT, max_size=5),
    "status": st.sampled_from(["pending", "active", "inactive", "ACTIVE", "gone"]),
    "correlation_id": st.text(min_size=250, max_size=260) | TEXT, "issued_by": TEXT,
}


@st.composite
def json_documents(draw: st.DrawFn) -> bytes:
    doc: dict[str, Any] = {}
    for field, typical in FIELD_VALUES.items():
        choice = draw(st.sampled_from(["absent", "typical", "typical", "any"]))
        if choice != "absent":
            doc[field] = draw(typical if choice == "typical" else ANY_JSON)
    doc.update(draw(st.dictionaries(TEXT, ANY_JSON, max_size=2)))
    deep = draw(st.sampled_from([0, 0, 0, 10, 1023, 1025, 5000, 100_000]))
    padding = draw(st.sampled_from([0, 0, 0, 4096, 300_000, MIB - 400, MIB + 1]))
    if deep:
        doc[draw(st.sampled_from(["name", "config", "extra"]))] = "\x01deep\x01"
    if padding:
        doc["name" if draw(st.booleans()) else "padding"] = "x" * padding
    # Integers past 4,300 digits cannot even be written by json; none are drawn.
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    text = text.replace('"\\u0001deep\\u0001"', "[" * deep + "]" * deep).replace(
        '"\x01deep\x01"', "[" * deep + "]" * deep)
    return text.encode("utf-8", "surrogatepass")  # lone surrogates → invalid UTF-8


@FUZZ
@given(document=json_documents(), content_type=CONTENT_TYPES)
def test_json_documents(document: bytes, content_type: str | None) -> None:
    for kind in {None, "application/json", content_type}:
        check(document, kind)


# --- Avro records built from the schema, with hostile values ------------------------------

AVRO_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
LONGS = st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1),
                  st.sampled_from([0, -1, MAX_MICROS, MAX_MICROS + 1, 2**63 - 1, -(2**63),
                                   1_700_000_000_000_000_000]))


@st.composite
def avro_records(draw: st.DrawFn) -> tuple[AvroSchema, bytes]:
    """A record of the command schema (or its v2) with hostile values, Avro-encoded."""
    writer = draw(st.sampled_from([COMMAND, V2]))
    record = {
        "command_id": draw(UUIDS | AVRO_TEXT), "resource_id": draw(UUIDS | AVRO_TEXT),
        "command_type": draw(st.sampled_from(["CREATE", "UPDATE", "DELETE"])),
        "expected_version": draw(st.none() | LONGS), "name": draw(st.none() | AVRO_TEXT),
        "config": draw(st.none() | st.dictionaries(AVRO_TEXT, AVRO_TEXT, max_size=4)),
        "status": draw(st.none() | st.sampled_from(["pending", "active", "inactive"])),
        "issued_at": draw(LONGS), "correlation_id": draw(st.none() | AVRO_TEXT),
        "issued_by": draw(st.none() | AVRO_TEXT), "priority": draw(st.none() | st.integers(
            min_value=-(2**31), max_value=2**31 - 1)),
    }
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer.plain, record)
    return writer, body.getvalue()


def framings(writer: AvroSchema, unknown_id: int) -> list[bytes]:
    """Single-object, Confluent with the writer's id, an unknown id, an incompatible one."""
    return [writer.header, struct.pack(">bI", 0, 1 if writer is COMMAND else 2),
            struct.pack(">bI", 0, unknown_id), struct.pack(">bI", 0, 3)]


@st.composite
def avro_values(draw: st.DrawFn) -> bytes:
    writer, payload = draw(avro_records())
    return draw(st.sampled_from(framings(writer, 4))) + payload


@FUZZ
@given(record=avro_records(), unknown_id=st.integers(4, 2**32 - 1), cut=st.integers(0, 10**6),
       flip=st.integers(1, 255), extra=st.binary(min_size=1, max_size=16))
def test_avro_records(record: tuple[AvroSchema, bytes], unknown_id: int, cut: int, flip: int,
                      extra: bytes) -> None:
    """Each framing of the record as written, truncated, with a flipped byte and with bytes
    appended (16 inputs per example)."""
    writer, payload = record
    for header in framings(writer, unknown_id):
        value = header + payload
        at = cut % len(value)
        mutated = value[:at] + bytes([value[at] ^ flip]) + value[at + 1:]
        for variant in (value, value[:at], mutated, value + extra):
            check(variant)

# --- header sets -----------------------------------------------------------------------

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HEADER_NAMES = st.sampled_from([CONTENT_TYPE, TRACEPARENT, "Content-Type", "TRACEPARENT",
                                "x-other", "dlq.reason", ""])
HEADER_VALUES = st.one_of(
    st.none(), st.binary(max_size=80),
    st.sampled_from([TRACE.encode(), (TRACE + "-x").encode(), ("01" + TRACE[2:]).encode(),
                     ("01" + TRACE[2:] + "-more").encode(), ("ff" + TRACE[2:]).encode(),
                     TRACE.upper().encode(), TRACE.encode() * 3, b"application/json",
                     b"application/json; charset=utf-8", b"APPLICATION/JSON", b"json",
                     b"application/\xff"]),
    st.text(max_size=60))


@FUZZ
@given(pairs=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6))
def test_header_sets(pairs: list[tuple[str, bytes | str | None]]) -> None:
    COUNT["inputs"] += 1
    result = command_headers(pairs)
    assert isinstance(result, CommandHeaders)
    last = {name.lower(): value for name, value in pairs
            if name.lower() in (CONTENT_TYPE, TRACEPARENT)}
    if result.traceparent is not None:
        assert len(result.traceparent) == 55
        assert result.traceparent.isascii()
        assert last[TRACEPARENT] is not None
    assert (TRACEPARENT in result.invalid) == (
        TRACEPARENT in last and result.traceparent is None)
    if result.content_type is not None:
        assert result.content_type == result.content_type.lower()
        assert result.content_type.count("/") == 1
    assert (CONTENT_TYPE in result.invalid) == (
        CONTENT_TYPE in last and result.content_type is None)
    assert set(result.invalid) <= set(last)


# --- the worker's composition: headers feed the decoder -----------------------------------

@FUZZ
@given(pairs=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4),
       value=st.one_of(st.none(), json_documents(), avro_values(), st.binary(max_size=64)))
def test_records_with_headers(pairs: list[tuple[str, bytes | str | None]],
                              value: bytes | None) -> None:
    check(value, command_headers(pairs).content_type)


def test_a_well_formed_command_decodes() -> None:
    """The generators above do reach the success path (not only errors)."""
    doc = {"command_id": str(uuid.uuid4()), "resource_id": str(uuid.uuid4()),
           "command_type": "CREATE", "issued_at": 1_700_000_000_000_000, "name": "n"}
    assert_storable(CODEC.decode(json.dumps(doc).encode()))
