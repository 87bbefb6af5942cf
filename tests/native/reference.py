"""The Python reference, run the way the worker runs it, for the native extension to be
compared with: every import of the reference is in this module (when a module moves, this
is the one file to update).

* :func:`decode_reference` — what ``Worker._decode`` makes of one record: its headers, then
  the codec's command (and the key check) or its ``DecodeError``;
* :func:`write_reference` — ``apply_batch`` over ``PostgresBatchUnit`` on a connection that
  answers the read round trip from given rows and records every statement of the write with
  its parameters in PostgreSQL's binary form (``arrays.encode``);
* :func:`decode_natively` — the native batch, with the records the native reader hands back
  decoded by the Python codec and supplied, as the worker will do it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from phoenix_resources.adapters.postgres import arrays, batch_unit
from phoenix_resources.adapters.postgres.batch_unit import PostgresBatchUnit, _row_to_resource
from phoenix_resources.domain.commands import AnyCommand
from phoenix_resources.domain.decide import Applied, Rejected
from phoenix_resources.domain.rules import Misplaced
from phoenix_resources.errors import DecodeError, MessageTooLarge
from phoenix_resources.services.apply_batch import (
    BatchReport,
    apply_batch,
    fold,
    split_repeats,
)
from phoenix_resources.services.ports import Incoming, OutboxFormat, Parked
from phoenix_resources.wire.cloudevents import CloudEventHeaders
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import (
    COMMAND_SCHEMA,
    EVENT_SCHEMA,
    REJECTION_SCHEMA,
    Framing,
    load_schema,
    released_schemas,
)
from phoenix_resources.wire.headers import command_headers
from phoenix_resources.wire.partitioner import partition_for
from tests.fuzz.test_codec_fuzz import (
    CONTENT_TYPES,
    HEADER_NAMES,
    HEADER_VALUES,
    PREFIXES,
    V2,
    InProcessRegistry,
    avro_values,
    json_documents,
)

__all__ = [
    "COMMAND_SCHEMA",
    "CONTENT_TYPES",
    "EVENT_SCHEMA",
    "HEADER_NAMES",
    "HEADER_VALUES",
    "PREFIXES",
    "REJECTION_SCHEMA",
    "V2",
    "CommandCodec",
    "EventCodec",
    "Framing",
    "InProcessRegistry",
    "MessageTooLarge",
    "arrays",
    "avro_values",
    "fold",
    "json_documents",
    "load_schema",
    "split_repeats",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EVENTS_TOPIC, REJECTIONS_TOPIC = "events", "rejections"


def micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


# --- decoding ---------------------------------------------------------------------------

def codec_options(codec: CommandCodec, registry_ids: Sequence[int] = ()) -> dict[str, Any]:
    """The native decoder's options for ``codec``: the other writer schemas it accepts (their
    records fall back to Python) and, with a registry, the ids known to name the command
    schema itself."""
    others = {s.fingerprint for s in (*released_schemas(COMMAND_SCHEMA), V2)}
    others.discard(codec.schema.fingerprint)
    return {"max_bytes": codec.max_bytes, "known_fingerprints": sorted(others),
            "registry": codec.framing.registry is not None, "registry_ids": list(registry_ids)}


def command_view(command: AnyCommand, key: bytes | None) -> dict[str, Any]:
    """A command as the native ``Batch.command`` shows it (without where it came from)."""
    config = getattr(command, "config", None)
    status = getattr(command, "status", None)
    return {"type": command.type.value, "command_id": command.command_id.bytes,
            "command_id_text": str(command.command_id), "resource_id": command.resource_id.bytes,
            "resource_id_text": str(command.resource_id), "issued_at": micros(command.issued_at),
            "expected_version": command.expected_version,
            "correlation_id": command.correlation_id, "issued_by": command.issued_by,
            "name": getattr(command, "name", None),
            "config": None if config is None else list(config.items()),
            "status": None if status is None else status.value,
            "key_matches": key == str(command.resource_id).encode()}


@dataclass(frozen=True)
class Record:
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, Any]] | None
    partition: int
    offset: int


Decoding = tuple[str, Any]
"""``("command", view)`` or ``("dead", (reason, detail, error class name))``."""


def decode_reference(codec: CommandCodec, r: Record) -> tuple[tuple[Any, ...], Decoding,
                                                               AnyCommand | None]:
    """(headers, decoding, command) as ``Worker._decode`` sees one record."""
    h = command_headers(r.headers)
    seen = (h.content_type, h.traceparent, h.invalid)
    try:
        command = codec.decode(r.value, h.content_type)
    except DecodeError as e:
        return seen, ("dead", (e.reason, e.detail, type(e).__name__)), None
    return seen, ("command", command_view(command, r.key)), command


def incoming_reference(codec: CommandCodec, r: Record, partitions: int | None = None,
                       ) -> Incoming:
    """``Worker._decode``'s ``Incoming`` for a record that decodes (with ``partitions``, the
    partition check refusing: ``PHOENIX_PARTITION_CHECK=refuse``)."""
    h = command_headers(r.headers)
    command = codec.decode(r.value, h.content_type)
    misplaced = None
    if partitions is not None and r.key is not None:
        home = partition_for(r.key, partitions)
        misplaced = None if home == r.partition else Misplaced(r.partition, home, partitions)
    return Incoming(command, r.partition, r.offset, h.traceparent,
                    r.key == str(command.resource_id).encode(), misplaced)


def dead_class(reason: str) -> str:
    """The error class the worker dead-letters a native refusal as."""
    return MessageTooLarge.__name__ if reason == "too-large" else DecodeError.__name__


def decode_natively(native: Any, codec: CommandCodec, records: Sequence[Record],
                    registry_ids: Sequence[int] = ()) -> tuple[Any, set[int]]:
    """The native batch of ``records`` with its fallbacks decoded by ``codec``; and which
    records fell back."""
    batch = native.decode_batch([r.value for r in records], [r.key for r in records],
                                [r.headers for r in records], [r.partition for r in records],
                                [r.offset for r in records], **codec_options(codec, registry_ids))
    fell_back = set(batch.fallbacks())
    for i in fell_back:
        content_type = batch.headers(i)[0]
        try:
            batch.supply(i, codec.decode(records[i].value, content_type))
        except DecodeError as e:
            batch.refuse(i, e.reason, e.detail)
    return batch, fell_back


def native_decoding(batch: Any, i: int) -> Decoding:
    error = batch.error(i)
    if error is not None:
        return "dead", (*error, dead_class(error[0]))
    view = dict(batch.command(i))
    for where in ("partition", "offset", "traceparent"):
        del view[where]
    return "command", view


# --- the transaction --------------------------------------------------------------------

STATEMENTS = {id(batch_unit.KNOWN): "known", id(batch_unit.PARKED_AMONG): "parked_among",
              id(batch_unit.LOAD): "load", id(batch_unit.INSERT_OUTCOMES): "insert_outcomes",
              id(batch_unit.BUMP_DUPLICATES): "bump_duplicates",
              id(batch_unit.INSERT_NEW): "insert_new",
              id(batch_unit.UPDATE_EXISTING): "update_existing",
              id(batch_unit.RECORD_OUTCOMES): "record_outcomes", id(batch_unit.PARK): "park",
              id(batch_unit.PARK_RESOURCES): "park_resources",
              id(batch_unit.INSERT_OUTBOX): "insert_outbox"}

Row = tuple[UUID, str, dict[str, str], str, int, datetime, datetime, UUID, datetime | None]
"""A row of the ``LOAD`` query, as psycopg returns it."""


class _Cursor:
    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


@dataclass
class RecordingConnection:
    """Answers the read round trip from ``known`` (each recorded id's resource and type),
    ``parked`` and ``rows``; records the write's statements as ``(name, scalars, [binary
    array parameters])``."""

    known: dict[UUID, tuple[UUID, str]]
    parked: set[UUID]
    rows: dict[UUID, Row]
    statements: list[tuple[str, list[Any], list[bytes]]] = field(default_factory=list)
    closed: bool = False

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        yield

    def commit(self) -> None:
        return None

    def rollback(self) -> None:
        return None

    def execute(self, query: str, params: Sequence[Any] = ()) -> _Cursor:
        name = STATEMENTS.get(id(query), "notify" if "pg_notify" in query else query)
        scalars = [p for p in params if not isinstance(p, arrays._TypedArray)]
        typed = [arrays.encode(p) for p in params if isinstance(p, arrays._TypedArray)]
        self.statements.append((name, scalars if name != "notify" else [], typed))
        ids = list(params[0]) if params and isinstance(params[0], arrays.UuidArray) else []
        if name == "known":
            return _Cursor([(i, *self.known[i]) for i in ids if i in self.known], 0)
        if name == "parked_among":
            return _Cursor([(i,) for i in ids if i in self.parked], 0)
        if name == "load":
            return _Cursor([self.rows[i] for i in ids if i in self.rows], 0)
        first: Sequence[Any] = next(
            (p for p in params if isinstance(p, arrays._TypedArray)), [])
        return _Cursor([], len(first))


class _Pool:
    def __init__(self, conn: RecordingConnection) -> None:
        self.conn = conn

    def getconn(self, timeout: float | None = None) -> RecordingConnection:
        return self.conn

    def putconn(self, conn: RecordingConnection) -> None:
        return None


def report_view(report: BatchReport) -> dict[str, Any]:
    return {"applied": report.applied, "rejected": report.rejected,
            "unchanged": report.unchanged, "duplicates": report.duplicates,
            "parked": report.parked, "events": report.events,
            "duplicate_ids": [str(i) for i in report.duplicate_ids],
            "parked_ids": [str(i) for i in report.parked_ids], "codes": dict(report.codes)}


@dataclass
class Reference:
    statements: list[tuple[str, list[Any], list[bytes]]]
    report: dict[str, Any]


def write_reference(incoming: Sequence[Incoming], conn: RecordingConnection, now: datetime, *,
                    oldest: datetime | None, failed: Mapping[UUID, str] | None,
                    events: EventCodec) -> Reference:
    unit = PostgresBatchUnit(_Pool(conn),  # type: ignore[arg-type]
                             OutboxFormat(events, EVENTS_TOPIC, REJECTIONS_TOPIC))
    report = apply_batch(unit, incoming, now, oldest=oldest, failed=failed)
    return Reference(conn.statements, report_view(report))


def outcome_view(incoming: Sequence[Incoming], states: Mapping[UUID, Any], now: datetime, *,
                 parked: Iterable[UUID], failed: Mapping[UUID, str] | None,
                 oldest: datetime | None) -> list[tuple[Any, ...]]:
    """``fold``'s outcomes as ``Written.outcomes`` shows them (without record indices)."""
    outcomes, _ = fold(states, incoming, now, parked=frozenset(parked), failed=failed,
                       oldest=oldest)
    out: list[tuple[Any, ...]] = []
    for _, o in outcomes:
        if isinstance(o, Applied):
            out.append(("applied", None, None, o.state.version,
                        None if o.event is None else o.event.type_name))
        elif isinstance(o, Rejected):
            out.append(("rejected", o.code.value, o.message, None, None))
        else:
            assert isinstance(o, Parked)
            out.append(("parked", o.code.value, o.error, None, None))
    return out


def states_of(rows: Iterable[Row]) -> dict[UUID, Any]:
    """What ``PostgresBatchUnit.load`` makes of the rows."""
    return {row[0]: _row_to_resource(row) for row in rows}


def cloudevents_reference(row: tuple[Any, ...], source: str) -> list[tuple[str, Any]]:
    """The relay's headers for an outbox row as ``Written.outbox`` lists it (the row read
    back by the relay's session in UTC)."""
    rid, aggregateid, type_name, _, _, occurred_at, traceparent = row
    return CloudEventHeaders(source).headers(
        event_id=str(UUID(bytes=rid)), event_type=type_name, subject=aggregateid.encode(),
        time=EPOCH + timedelta(microseconds=occurred_at), traceparent=traceparent)
