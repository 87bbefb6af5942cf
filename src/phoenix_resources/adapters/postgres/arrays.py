"""Binary array parameters built in one pass: the worker sends every batch as ``unnest`` of
arrays, some 25 array elements per command, and psycopg's generic list dumper spends a
Python call, a ``struct.pack`` and a list append on each element.

Each wrapper type (:class:`UuidArray`, :class:`TextArray` …) is a plain ``list`` that says
which PostgreSQL element type it carries; :func:`register` teaches a connection to dump it in
PostgreSQL's binary array format (``array_send``) directly. Guarantee: the bytes are those
psycopg's own ``ListBinaryDumper`` produces for the same values (``tests/unit/
test_pg_arrays.py`` compares them; ``tests/contract`` round-trips them through PostgreSQL).
``None`` elements are NULLs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.abc import AdaptContext
from psycopg.adapt import Dumper
from psycopg.pq import Format

_HEADER = struct.Struct(">iiiii")  # ndim, has-null flag, element oid, length, lower bound
_EMPTY = struct.Struct(">iii")  # ndim 0, no nulls, element oid
_NULL = b"\xff\xff\xff\xff"
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _length(n: int) -> bytes:
    return n.to_bytes(4, "big")


_LEN16, _LEN8, _LEN4 = _length(16), _length(8), _length(4)


def _uuid(value: UUID) -> bytes:
    return _LEN16 + value.int.to_bytes(16, "big")


def _text(value: str) -> bytes:
    raw = value.encode()
    return _length(len(raw)) + raw


def _bytes(value: bytes) -> bytes:
    return _length(len(value)) + value


def _jsonb(value: str) -> bytes:
    raw = value.encode()
    return _length(len(raw) + 1) + b"\x01" + raw  # jsonb's binary format: version 1, text


def _int8(value: int) -> bytes:
    return _LEN8 + value.to_bytes(8, "big", signed=True)


def _int4(value: int) -> bytes:
    return _LEN4 + value.to_bytes(4, "big", signed=True)


def _timestamptz(value: datetime) -> bytes:
    return _LEN8 + ((value - _PG_EPOCH) // _MICROSECOND).to_bytes(8, "big", signed=True)


class _TypedArray(list[Any]):
    element_oid = 0
    array_oid = 0
    item: Callable[[Any], bytes]


class UuidArray(_TypedArray):
    element_oid, array_oid, item = 2950, 2951, staticmethod(_uuid)


class TextArray(_TypedArray):
    element_oid, array_oid, item = 25, 1009, staticmethod(_text)


class ByteaArray(_TypedArray):
    element_oid, array_oid, item = 17, 1001, staticmethod(_bytes)


class JsonbArray(_TypedArray):
    """Items are JSON text (already serialised)."""

    element_oid, array_oid, item = 3802, 3807, staticmethod(_jsonb)


class Int8Array(_TypedArray):
    element_oid, array_oid, item = 20, 1016, staticmethod(_int8)


class Int4Array(_TypedArray):
    element_oid, array_oid, item = 23, 1007, staticmethod(_int4)


class TimestamptzArray(_TypedArray):
    element_oid, array_oid, item = 1184, 1185, staticmethod(_timestamptz)


ARRAY_TYPES: tuple[type[_TypedArray], ...] = (
    UuidArray, TextArray, ByteaArray, JsonbArray, Int8Array, Int4Array, TimestamptzArray)


def encode(values: _TypedArray) -> bytes:
    """``values`` in PostgreSQL's binary array format."""
    kind = type(values)
    if not values:
        return _EMPTY.pack(0, 0, kind.element_oid)
    item = kind.item
    try:  # the common case: no NULL (a None fails in item(), whatever the type)
        parts = [item(v) for v in values]
        has_null = 0
    except (AttributeError, TypeError):
        parts = [_NULL if v is None else item(v) for v in values]
        has_null = 1
    return _HEADER.pack(1, has_null, kind.element_oid, len(values), 1) + b"".join(parts)


class _ArrayDumper(Dumper):
    format = Format.BINARY

    def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        self.oid = cls.array_oid  # type: ignore[attr-defined]

    def dump(self, obj: Any) -> bytes:
        return encode(obj)


class Encoded(bytes):
    """An array parameter already in PostgreSQL's binary form (the compiled hot path makes
    them); one subclass per element type, :data:`ENCODED`."""

    array_oid = 0


def _encoded(kind: type[_TypedArray]) -> type[Encoded]:
    return type(f"Encoded{kind.__name__}", (Encoded,), {"array_oid": kind.array_oid})


ENCODED: dict[type[_TypedArray], type[Encoded]] = {kind: _encoded(kind) for kind in ARRAY_TYPES}


class _EncodedDumper(Dumper):
    format = Format.BINARY

    def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        self.oid = cls.array_oid  # type: ignore[attr-defined]

    def dump(self, obj: Any) -> bytes:
        return obj  # type: ignore[no-any-return]


def register(conn: Connection[Any]) -> None:
    """Teach ``conn`` the typed arrays, and the encoded ones (a pool's ``configure``
    callback)."""
    for cls in ARRAY_TYPES:
        conn.adapters.register_dumper(cls, _ArrayDumper)
    for encoded in ENCODED.values():
        conn.adapters.register_dumper(encoded, _EncodedDumper)


def columns(rows: Iterable[tuple[Any, ...]], kinds: tuple[type[_TypedArray], ...],
            ) -> list[_TypedArray]:
    """Transpose rows into one typed array per column (what ``unnest`` takes)."""
    transposed = list(zip(*rows, strict=True))
    if not transposed:
        return [kind() for kind in kinds]
    return [kind(column) for kind, column in zip(kinds, transposed, strict=True)]
