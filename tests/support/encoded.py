"""The compiled hot path's binary parameters read back into the ports' rows, so that the
in-memory batch unit (``tests/fakes.py``) stores a natively folded batch exactly as it stores
one made by ``stored_rows``: the worker's unit tests then run either path on the same fake."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson

from phoenix_resources.adapters import native as compiled
from phoenix_resources.adapters.native import NativePath
from phoenix_resources.config import Settings
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.services.ports import (
    BatchRows,
    Incoming,
    OutboxEntry,
    OutcomeRow,
    ParkingEntry,
    StateChange,
)
from phoenix_resources.services.ports_encoded import EncodedWrite
from phoenix_resources.wire.commands import CommandCodec, command_from_record
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import Framing

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _element(oid: int, raw: bytes) -> Any:
    if oid == 2950:
        return UUID(bytes=raw)
    if oid == 25:
        return raw.decode()
    if oid == 17:
        return raw
    if oid == 3802:
        assert raw[:1] == b"\x01"
        return orjson.loads(raw[1:])
    if oid in (20, 23):
        return int.from_bytes(raw, "big", signed=True)
    if oid == 1184:
        return _PG_EPOCH + timedelta(microseconds=int.from_bytes(raw, "big", signed=True))
    raise ValueError(f"no reader for element oid {oid}")


def decode_array(data: bytes) -> list[Any]:
    """PostgreSQL's binary array (``array_send``, one dimension) as a list; NULL is None."""
    ndim, _, oid = struct.unpack(">iii", data[:12])
    if ndim == 0:
        return []
    (length, _) = struct.unpack(">ii", data[12:20])
    at, values = 20, list[Any]()
    for _ in range(length):
        (size,) = struct.unpack(">i", data[at:at + 4])
        at += 4
        if size < 0:
            values.append(None)
            continue
        values.append(_element(oid, data[at:at + size]))
        at += size
    return values


def _columns(params: dict[str, list[bytes]], name: str) -> list[tuple[Any, ...]]:
    if name not in params:
        return []
    return list(zip(*(decode_array(p) for p in params[name]), strict=True))


def rows_of(written: EncodedWrite, processed_at: datetime,
            current: Callable[[UUID], Resource | None]) -> BatchRows:
    """What ``stored_rows`` would have given the unit for ``written``; ``current`` finds an
    updated resource's row as loaded (its ``created_at`` is not among the parameters)."""
    params = written.params()
    claimed = [OutcomeRow(*row) for row in _columns(params, "insert_outcomes")]
    repeated = dict(_columns(params, "bump_duplicates"))
    created = [Resource(id=r[0], name=r[1], config=r[2], status=Status(r[3]), version=r[4],
                        created_at=r[5], updated_at=r[6], last_command_id=r[7],
                        deleted_at=r[8]) for r in _columns(params, "insert_new")]
    changed = []
    for rid, name, config, status, version, updated, last, deleted, prior in _columns(
            params, "update_existing"):
        before = current(rid)
        assert before is not None, rid
        after = Resource(id=rid, name=name, config=config, status=Status(status),
                         version=version, created_at=before.created_at, updated_at=updated,
                         last_command_id=last, deleted_at=deleted)
        changed.append(StateChange(Resource(
            id=rid, name=before.name, config=before.config, status=before.status,
            version=prior, created_at=before.created_at, updated_at=before.updated_at,
            last_command_id=before.last_command_id, deleted_at=before.deleted_at), after))
    parked = [ParkingEntry(Incoming(command_from_record(orjson.loads(payload)), partition,
                                    offset, traceparent), reason, error)
              for _, _, _, payload, traceparent, partition, offset, reason, error
              in _columns(params, "park")]
    outbox = [OutboxEntry(*row) for row in _columns(params, "insert_outbox")]
    return BatchRows(processed_at=processed_at, claimed=claimed, repeated=repeated,
                     created=created, changed=changed, parked=parked, outbox=outbox)


def resource_row(r: Resource) -> tuple[Any, ...]:
    """A resource as the ``LOAD`` query returns it."""
    return (r.id, r.name, dict(r.config), r.status.value, r.version, r.created_at,
            r.updated_at, r.last_command_id, r.deleted_at)


def hot_path(codec: CommandCodec) -> NativePath | None:
    """The path ``PHOENIX_NATIVE`` (from the environment, ``auto`` by default) chooses, as
    bootstrap chooses it: the worker's unit tests run the compiled path when it is built,
    and the Python reference under ``PHOENIX_NATIVE=off`` (``tests/unit/
    test_both_paths.py`` runs them so)."""
    return compiled.load(Settings().native, codec, _events())


_EVENTS: list[EventCodec] = []


def _events() -> EventCodec:
    if not _EVENTS:
        _EVENTS.append(EventCodec(Framing()))
    return _EVENTS[0]
