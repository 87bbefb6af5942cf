"""A reader specialised for the ``ResourceCommand`` schema: the worker reads one command per
record, on its critical path, and a generic Avro reader spends much of each call on walking
the schema.

Guarantee: for a body that follows the Avro specification under the schema this reader was
written for (``READS``, the schema's CRC-64-AVRO fingerprint), :func:`read_command` returns
exactly the record ``fastavro.schemaless_reader`` returns under the logical-type-free schema
(UUIDs as text, ``issued_at`` as epoch micros). Every other body raises
:class:`~phoenix_resources.errors.DecodeError` (``malformed-avro``): truncated ones, trailing
bytes, invalid UTF-8, and encodings no Avro writer produces that fastavro would still read
(negative or out-of-range enum and union indexes, negative lengths, varints over 64 bits).
``tests/unit/test_command_reader.py`` checks both halves on generated and mutated bodies.
:class:`~phoenix_resources.wire.commands.CommandCodec` uses it only while the
command schema still has that fingerprint, and reads with fastavro otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from phoenix_resources.errors import DecodeError

READS = bytes.fromhex("1ad66f279838378e")
"""Fingerprint of ``schemas/resource_command.avsc`` this reader follows (checked in tests)."""

_COMMAND_TYPES = ("CREATE", "UPDATE", "DELETE")
_STATUSES = ("pending", "active", "inactive")
_MALFORMED = "malformed-avro"


def _long(b: bytes, p: int) -> tuple[int, int]:
    """Avro's long at ``p``: a little-endian base-128 varint, zig-zag; at most 64 bits."""
    c = b[p]
    if c < 0x80:  # one byte: -64..63, the common case
        return (c >> 1) ^ -(c & 1), p + 1
    n, shift = c & 0x7F, 7
    while True:
        p += 1
        c = b[p]
        if shift == 63 and c > 1:
            raise DecodeError(_MALFORMED, "a varint longer than 64 bits")
        n |= (c & 0x7F) << shift
        if c < 0x80:
            return (n >> 1) ^ -(n & 1), p + 1
        shift += 7


def _text(b: bytes, p: int) -> tuple[str, int]:
    n, p = _long(b, p)
    end = p + n
    if n < 0 or end > len(b):
        raise DecodeError(_MALFORMED, "a string length that is negative or past the end")
    return b[p:end].decode(), end


def _optional(b: bytes, p: int, read: Callable[[bytes, int], tuple[Any, int]]
              ) -> tuple[Any, int]:
    """A ``["null", T]`` union: ``None`` for branch 0, ``read`` for branch 1."""
    c = b[p]
    if c == 0:
        return None, p + 1
    if c == 2:
        return read(b, p + 1)
    raise DecodeError(_MALFORMED, "a union index other than 0 or 1")


def _symbol(b: bytes, p: int, symbols: tuple[str, ...]) -> tuple[str, int]:
    i, p = _long(b, p)
    if not 0 <= i < len(symbols):
        raise DecodeError(_MALFORMED, f"enum index {i} out of range")
    return symbols[i], p


def _map(b: bytes, p: int) -> tuple[dict[str, str], int]:
    out: dict[str, str] = {}
    while True:
        count, p = _long(b, p)
        if count == 0:
            return out, p
        if count < 0:  # a block that also gives its size in bytes (readers may skip it)
            count = -count
            _, p = _long(b, p)
        for _ in range(count):
            key, p = _text(b, p)
            out[key], p = _text(b, p)


def _status(b: bytes, p: int) -> tuple[str, int]:
    return _symbol(b, p, _STATUSES)


def _read(b: bytes, p: int) -> tuple[dict[str, Any], int]:
    command_id, p = _text(b, p)
    command_type, p = _symbol(b, p, _COMMAND_TYPES)
    resource_id, p = _text(b, p)
    expected_version, p = _optional(b, p, _long)
    name, p = _optional(b, p, _text)
    config, p = _optional(b, p, _map)
    status, p = _optional(b, p, _status)
    issued_at, p = _long(b, p)
    correlation_id, p = _optional(b, p, _text)
    issued_by, p = _optional(b, p, _text)
    return {"command_id": command_id, "command_type": command_type,
            "resource_id": resource_id, "expected_version": expected_version, "name": name,
            "config": config, "status": status, "issued_at": issued_at,
            "correlation_id": correlation_id, "issued_by": issued_by}, p


def read_command(value: bytes, start: int) -> dict[str, Any]:
    """The record whose body starts at ``start`` and ends with ``value``; see the module's
    guarantee."""
    try:
        record, end = _read(value, start)
    except IndexError:
        raise DecodeError(_MALFORMED, "the record ends before its last field") from None
    except UnicodeDecodeError as e:
        raise DecodeError(_MALFORMED, f"a string is not UTF-8: {e.reason} at byte "
                          f"{e.start}") from None
    if end != len(value):
        raise DecodeError(_MALFORMED, f"{len(value) - end} bytes after the record (a "
                          "writer schema other than the one announced?)")
    return record
