"""A writer specialised for the ``ResourceChanged`` schema: the worker encodes one event per
applied command, on its critical path, and a generic Avro writer spends most of its time on
walking the schema and on per-field conversions this shape does not need.

Guarantee: :func:`event_body` returns exactly the bytes ``fastavro.schemaless_writer`` writes
for the same event under the schema it was written for (``WRITTEN_FOR``, the schema's
CRC-64-AVRO fingerprint); ``tests/unit/test_event_writer.py`` checks it on generated events.
:class:`~phoenix_resources.wire.events.EventCodec` uses it only while the event
schema still has that fingerprint, and falls back to the generic writer otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from phoenix_resources.domain.events import ResourceChanged

WRITTEN_FOR = bytes.fromhex("1b909ccd4b0e0e39")
"""Fingerprint of ``schemas/resource_changed.avsc`` this writer follows (checked in tests)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_UUID_TEXT = b"\x48"  # zig-zag varint of 36, the length of a UUID's text
_NULL, _PRESENT = b"\x00", b"\x02"  # union branch 0 (null) / 1, zig-zag encoded
_END = b"\x00"  # the end of an array or map
_EVENT_TYPES = {"CREATED": b"\x00", "UPDATED": b"\x02", "DELETED": b"\x04"}
_STATUSES = {"pending": b"\x00", "active": b"\x02", "inactive": b"\x04"}


def _long(n: int) -> bytes:
    """Avro's long: zig-zag, then a little-endian base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [_long(i) for i in range(128)]


def _count(n: int) -> bytes:
    """``_long(n)``, from a table for 0..127: lengths, and versions, are mostly small."""
    return _SMALL[n] if 0 <= n < 128 else _long(n)


def _text(value: str) -> bytes:
    raw = value.encode()
    return _count(len(raw)) + raw


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


_LAST_TIME: list[tuple[datetime, bytes]] = [(_EPOCH, _long(0))]


def _time(at: datetime) -> bytes:
    """``at`` as Avro timestamp-micros. A batch's events share one ``now`` (occurred_at,
    updated_at, a create's created_at), so the last encoding is kept; the pair is one tuple,
    read and replaced whole, so threads sharing the writer cannot mix two entries."""
    last = _LAST_TIME[0]
    if last[0] == at:
        return last[1]
    encoded = _long(_micros(at))
    _LAST_TIME[0] = (at, encoded)
    return encoded


def event_body(e: ResourceChanged) -> bytes:
    """The Avro body (no framing) of ``e``; see the module's guarantee."""
    rid = str(e.resource_id).encode()
    parts = [_UUID_TEXT, str(e.event_id).encode(), _EVENT_TYPES[e.event_type.value],
             _UUID_TEXT, rid, _count(e.version), _time(e.occurred_at),
             _UUID_TEXT, str(e.command_id).encode()]
    if e.correlation_id is None:
        parts.append(_NULL)
    else:
        parts += (_PRESENT, _text(e.correlation_id))
    if e.changed_fields:
        parts.append(_count(len(e.changed_fields)))
        parts += [_text(f) for f in e.changed_fields]
    parts.append(_END)
    r = e.resource
    if r is None:
        parts.append(_NULL)
        return b"".join(parts)
    parts += (_PRESENT, _UUID_TEXT, rid, _text(r.name))
    if r.config:
        parts.append(_count(len(r.config)))
        for key, value in r.config.items():
            parts += (_text(key), _text(value))
    parts += (_END, _STATUSES[r.status.value], _count(r.version), _time(r.created_at),
              _time(r.updated_at))
    return b"".join(parts)
