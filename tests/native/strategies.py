"""Generated records for the parity tests: well-formed commands in every framing, the same
mutated (a flipped byte, a truncation, bytes appended), the codec fuzz tests' hostile values
(JSON documents, hostile Avro records, arbitrary bytes behind each framing's magic), keys and
header lists."""

from __future__ import annotations

import io
import struct
import uuid
from typing import Any

import fastavro
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import PROFILE
from tests.native.reference import (
    COMMAND_SCHEMA,
    HEADER_NAMES,
    HEADER_VALUES,
    PREFIXES,
    V2,
    Record,
    avro_values,
    json_documents,
    load_schema,
)

PARITY = settings(max_examples=2_000 if PROFILE == "fuzz" else 40, deadline=None,
                  database=None, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.large_base_example,
                                         HealthCheck.filter_too_much])
"""A few seconds with the unit suite; ``HYPOTHESIS_PROFILE=fuzz`` (``make fuzz``) for more."""

COMMAND = load_schema(COMMAND_SCHEMA)
MAX_MICROS = 253_402_300_799_999_999
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

# Text of every kind: NUL, controls, quotes, non-ASCII, astral; no lone surrogates (Avro
# strings are UTF-8).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
NAMES = st.one_of(TEXT, st.sampled_from(["", " ", "\t\x1c\u3000", "ok", "x" * 256, "é" * 255,
                                          "a\x00b", "it's", "\"q\"", "\\"]))
UUID_TEXT = st.one_of(
    st.uuids().map(str), st.uuids().map(str), st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()), st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: f"urn:uuid:{u}"), st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: " " + u.hex + "\n"), st.uuids().map(lambda u: "0x" + u.hex[2:]),
    st.sampled_from(["", "not-a-uuid", "x" * 46, "é" * 40, "'" * 50, "1_" * 16,
                     "+" + "f" * 31, "\u0661" * 32]),
    TEXT)
LONGS = st.one_of(st.integers(-(2**63), 2**63 - 1),
                  st.sampled_from([0, -1, 1, MAX_MICROS, MAX_MICROS + 1, 2**63 - 1, -(2**63)]))
TIMES = st.one_of(st.integers(0, MAX_MICROS), st.integers(1_600_000_000_000_000,
                                                           1_900_000_000_000_000), LONGS)
CONFIGS = st.dictionaries(TEXT, TEXT, max_size=4) | st.sampled_from(
    [{}, {"a": "1", "b": "2"}, {"k\x00": "v"}, {"k": "v\x00"}])


@st.composite
def command_records(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A record of the command schema (plain: ids as text, times as micros), mostly valid."""
    rid = draw(st.uuids())
    record = {
        "command_id": draw(UUID_TEXT), "resource_id": draw(st.just(str(rid)) | UUID_TEXT),
        "command_type": draw(st.sampled_from(["CREATE", "UPDATE", "DELETE"])),
        "expected_version": draw(st.none() | st.integers(0, 5) | LONGS),
        "name": draw(st.none() | NAMES), "config": draw(st.none() | CONFIGS),
        "status": draw(st.none() | st.sampled_from(["pending", "active", "inactive"])),
        "issued_at": draw(TIMES),
        "correlation_id": draw(st.none() | TEXT | st.text(min_size=254, max_size=257)),
        "issued_by": draw(st.none() | TEXT | st.sampled_from(["é" * 256, "a\x00"])),
        "priority": None,
    }
    return record, str(rid)


def avro_body(record: dict[str, Any], writer: Any = COMMAND) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, writer.plain, record)
    return out.getvalue()


FRAMINGS = [COMMAND.header, COMMAND.header, COMMAND.header, struct.pack(">bI", 0, 1),
            V2.header, struct.pack(">bI", 0, 2), struct.pack(">bI", 0, 3),
            struct.pack(">bI", 0, 77)]


@st.composite
def mutated(draw: st.DrawFn, value: bytes) -> bytes:
    at = draw(st.integers(0, len(value) - 1))
    how = draw(st.sampled_from(["flip", "cut", "append", "none"]))
    if how == "flip":
        return value[:at] + bytes([value[at] ^ draw(st.integers(1, 255))]) + value[at + 1:]
    if how == "cut":
        return value[:at]
    if how == "append":
        return value + draw(st.binary(min_size=1, max_size=8))
    return value


@st.composite
def command_values(draw: st.DrawFn) -> tuple[bytes, str]:
    """A framed command, as written or mutated; and its resource id (for the key)."""
    record, rid = draw(command_records())
    header = draw(st.sampled_from(FRAMINGS))
    writer = V2 if header in (V2.header, struct.pack(">bI", 0, 2)) else COMMAND
    if writer is V2:
        record["priority"] = draw(st.none() | st.integers(-(2**31), 2**31 - 1))
    value = header + avro_body(record, writer)
    if draw(st.integers(0, 3)) == 0:
        value = draw(mutated(value))
    return value, rid


HEADER_LISTS = st.one_of(
    st.none(), st.just([("content-type", b"application/avro")]),
    st.just([("content-type", b"application/avro"), ("traceparent", TRACE.encode())]),
    st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4))


@st.composite
def records(draw: st.DrawFn) -> Record:
    kind = draw(st.sampled_from(["command"] * 6 + ["json", "avro", "bytes", "prefix", "empty"]))
    rid = str(uuid.uuid4())
    value: bytes | None
    if kind == "command":
        value, rid = draw(command_values())
    elif kind == "json":
        value = draw(json_documents())
    elif kind == "avro":
        value = draw(avro_values())
    elif kind == "bytes":
        value = draw(st.binary(max_size=64))
    elif kind == "prefix":
        value = draw(st.sampled_from(PREFIXES)) + draw(st.binary(max_size=40))
    else:
        value = draw(st.sampled_from([None, b""]))
    key = draw(st.sampled_from([rid.encode(), rid.encode(), rid.upper().encode(), None,
                                b"other"]))
    return Record(value, key, draw(HEADER_LISTS), draw(st.integers(0, 11)),
                  draw(st.integers(0, 2**40)))
