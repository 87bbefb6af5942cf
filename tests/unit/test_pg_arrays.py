"""The typed arrays dump to exactly the bytes of psycopg's own binary list dumper."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import psycopg
import pytest
from psycopg.adapt import PyFormat, Transformer
from psycopg.types.json import Jsonb

from phoenix_resources.adapters.postgres import arrays

pytestmark = pytest.mark.unit

T = datetime(2026, 11, 25, 12, 30, 1, 123456, tzinfo=UTC)
CASES: list[tuple[type[arrays._TypedArray], str, list[Any]]] = [
    (arrays.UuidArray, "uuid", [uuid.uuid4(), uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]),
    (arrays.TextArray, "text", ["", "a", "é€😀", "x" * 300, None]),
    (arrays.ByteaArray, "bytea", [b"", b"\x00\xff", b"x" * 1000]),
    (arrays.Int8Array, "int8", [0, -1, 2**63 - 1, -(2**63), None]),
    (arrays.Int4Array, "int4", [0, -1, 2**31 - 1, -(2**31)]),
    (arrays.TimestamptzArray, "timestamptz",
     [T, datetime(1970, 1, 1, tzinfo=UTC), T.astimezone(timezone(timedelta(hours=-5))),
      datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), None]),
]


def psycopg_bytes(values: list[Any], pg_type: str) -> bytes:
    """What psycopg itself sends for ``values`` as ``%b::<pg_type>[]``."""
    dumper = Transformer(psycopg.adapters).get_dumper(values, PyFormat.BINARY)
    return bytes(dumper.dump(values))  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "pg_type", "values"), CASES, ids=[c[1] for c in CASES])
def test_same_bytes_as_psycopg(kind: type[arrays._TypedArray], pg_type: str,
                               values: list[Any]) -> None:
    ours = arrays.encode(kind(values))
    theirs = psycopg_bytes(values, pg_type)
    # psycopg writes the oid of the Python type it guessed (e.g. text for str); ours says
    # the column's type. Everything after the 12-byte prefix must be equal.
    assert ours[:8] == theirs[:8]  # dimensions and the null flag
    assert ours[12:] == theirs[12:]
    assert int.from_bytes(ours[8:12], "big") == kind.element_oid
    without_nulls = [v for v in values if v is not None]
    assert arrays.encode(kind(without_nulls))[12:] == psycopg_bytes(without_nulls, pg_type)[12:]


def test_jsonb_is_version_one_then_the_text() -> None:
    doc = orjson.dumps({"a": "é"}).decode()
    ours = arrays.encode(arrays.JsonbArray([doc]))
    theirs = psycopg_bytes([Jsonb({"a": "é"})], "jsonb")
    assert ours[12:20] == theirs[12:20]  # the dimension: one element, lower bound 1
    assert ours[20:24] == (len(doc.encode()) + 1).to_bytes(4, "big")
    assert ours[24:] == b"\x01" + doc.encode()
    assert theirs[24:25] == b"\x01"  # psycopg's jsonb: the same version byte


def test_an_empty_array_has_no_dimensions() -> None:
    assert arrays.encode(arrays.UuidArray()) == bytes.fromhex("00000000" "00000000"
                                                              "00000b86")


def test_columns_transposes_rows_into_typed_arrays() -> None:
    cols = arrays.columns([(1, "a"), (2, None)], (arrays.Int8Array, arrays.TextArray))
    assert [type(c) for c in cols] == [arrays.Int8Array, arrays.TextArray]
    assert cols == [[1, 2], ["a", None]]
    assert arrays.columns([], (arrays.UuidArray,)) == [[]]
