"""The worker's transaction: every statement is set-based (``unnest`` of arrays), parameters
travel in binary (``%b``: no text escaping of arrays and payloads), and the statements of a
phase are pipelined, so a batch costs two round trips plus the commit: one reads (which ids
are known, the resources, the parked ones), one writes.

A command is claimed by inserting its ``processed_commands`` row *with its outcome*, in the
write round trip (``docs/decisions/0011-claim-with-the-outcome.md``): the primary key decides,
and a row a concurrent claimer inserted first makes :meth:`PostgresBatchUnit.write` raise
:class:`ConcurrentModification` (the batch is redone and then sees the id as known). Each
command costs one row version, not a pending row and its update.

Outbox rows are inserted in the same transaction as the state they announce, and a
``NOTIFY phoenix_outbox`` wakes the relay when that transaction commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg_pool import ConnectionPool

from phoenix_resources.adapters.postgres import NOTIFY_CHANNEL
from phoenix_resources.adapters.postgres.arrays import (
    ByteaArray,
    Int4Array,
    Int8Array,
    JsonbArray,
    TextArray,
    TimestamptzArray,
    UuidArray,
    columns,
)
from phoenix_resources.adapters.postgres.errors import translated
from phoenix_resources.domain.decide import Applied, Rejected
from phoenix_resources.domain.events import CommandRejected, rejection_id_for
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.errors import ConcurrentModification
from phoenix_resources.services.ports import (
    Claim,
    Incoming,
    Outcome,
    Parked,
    ParkedCommand,
    Snapshot,
    StateChange,
)
from phoenix_resources.wire.commands import command_from_record, command_to_json
from phoenix_resources.wire.events import EventCodec

AGGREGATE = "resource"

KNOWN = """
SELECT command_id FROM processed_commands WHERE command_id = ANY(%b::uuid[])
"""

INSERT_OUTCOMES = """
INSERT INTO processed_commands
    (command_id, resource_id, command_type, outcome, error_code, error_message,
     resulting_version, duplicate_deliveries, correlation_id, source_partition, source_offset,
     issued_at, processed_at)
SELECT *, %b FROM unnest(%b::uuid[], %b::uuid[], %b::text[], %b::text[], %b::text[],
                         %b::text[], %b::int8[], %b::int4[], %b::text[], %b::int4[],
                         %b::int8[], %b::timestamptz[])
ON CONFLICT (command_id) DO NOTHING
"""
# DO NOTHING + the row count: a claimer that got there first is seen, never overwritten.

BUMP_DUPLICATES = """
UPDATE processed_commands AS p SET duplicate_deliveries = p.duplicate_deliveries + u.n
FROM unnest(%b::uuid[], %b::int4[]) AS u(command_id, n) WHERE p.command_id = u.command_id
"""

LOAD = """
SELECT id, name, config, status, version, created_at, updated_at, last_command_id, deleted_at
FROM resources WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE
"""

PARKED_AMONG = """
SELECT resource_id FROM parked_resources WHERE resource_id = ANY(%b::uuid[])
ORDER BY resource_id FOR KEY SHARE
"""
# KEY SHARE: conflicts with a replay's FOR UPDATE of the same row, so parking behind a
# resource's queue and emptying that queue never interleave.

PARK = """
INSERT INTO parked_commands (command_id, resource_id, command_type, payload, traceparent,
                             source_partition, source_offset, reason, error)
SELECT * FROM unnest(%b::uuid[], %b::uuid[], %b::text[], %b::bytea[], %b::text[], %b::int4[],
                     %b::int8[], %b::text[], %b::text[])
"""

PARK_RESOURCES = """
INSERT INTO parked_resources (resource_id) SELECT DISTINCT unnest(%b::uuid[])
ON CONFLICT (resource_id) DO NOTHING
"""

INSERT_NEW = """
INSERT INTO resources
    (id, name, config, status, version, created_at, updated_at, last_command_id, deleted_at)
SELECT * FROM unnest(%b::uuid[], %b::text[], %b::jsonb[], %b::text[], %b::int8[],
                     %b::timestamptz[], %b::timestamptz[], %b::uuid[], %b::timestamptz[])
ON CONFLICT (id) DO NOTHING
"""

UPDATE_EXISTING = """
UPDATE resources AS r SET name = u.name, config = u.config, status = u.status,
    version = u.version, updated_at = u.updated_at, last_command_id = u.last_command_id,
    deleted_at = u.deleted_at
FROM unnest(%b::uuid[], %b::text[], %b::jsonb[], %b::text[], %b::int8[], %b::timestamptz[],
            %b::uuid[], %b::timestamptz[], %b::int8[])
    AS u(id, name, config, status, version, updated_at, last_command_id, deleted_at, prior)
WHERE r.id = u.id AND r.version = u.prior
"""

RECORD_OUTCOMES = """
UPDATE processed_commands AS p SET outcome = u.outcome, error_code = u.code,
    error_message = u.message, resulting_version = u.version, processed_at = %b
FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::int8[])
    AS u(command_id, outcome, code, message, version)
WHERE p.command_id = u.command_id
"""

INSERT_OUTBOX = """
INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload, occurred_at,
                    traceparent)
SELECT id, %b, aggregateid, type, topic, payload, occurred_at, traceparent
FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::bytea[], %b::timestamptz[],
            %b::text[]) AS u(id, aggregateid, type, topic, payload, occurred_at, traceparent)
"""


LOCK_QUEUE = """
SELECT 1 FROM parked_resources WHERE resource_id = %s FOR UPDATE
"""

QUEUE = """
SELECT seq, payload, traceparent, source_partition, source_offset, reason, error, attempts
FROM parked_commands WHERE resource_id = %s ORDER BY seq
"""

UNPARK = """
WITH gone AS (DELETE FROM parked_commands WHERE command_id = ANY(%s::uuid[]))
DELETE FROM parked_resources r WHERE r.resource_id = %s AND NOT EXISTS (
    SELECT 1 FROM parked_commands c WHERE c.resource_id = r.resource_id
      AND c.command_id <> ALL(%s::uuid[]))
"""
# One statement: the CTE's delete is not visible to the outer NOT EXISTS, hence the <> ALL.

NOTE_ATTEMPT = """
UPDATE parked_commands SET attempts = attempts + 1, last_error = %s, last_attempt_at = now()
WHERE command_id = %s
"""


_OUTCOME: dict[type, str] = {Applied: "applied", Rejected: "rejected", Parked: "parked"}


def _outcome_fields(d: Outcome) -> tuple[str | None, str | None, int | None]:
    """(error_code, error_message, resulting_version) of an outcome."""
    if isinstance(d, Applied):
        return None, None, d.state.version
    if isinstance(d, Rejected):
        return d.code.value, d.message, None
    return d.code.value, d.error, None


def _as_int(value: UUID) -> int:
    return value.int


_STATUS_OF: dict[str, Status] = {s.value: s for s in Status}  # Status(text) is ~10x slower


def _row_to_resource(row: tuple[Any, ...]) -> Resource:
    return Resource(id=row[0], name=row[1], config=row[2], status=_STATUS_OF[row[3]],
                    version=row[4], created_at=row[5], updated_at=row[6],
                    last_command_id=row[7], deleted_at=row[8])


# The element type of each statement's arrays, in parameter order (adapters/postgres/arrays).
OUTCOME_COLUMNS = (UuidArray, UuidArray, TextArray, TextArray, TextArray, TextArray,
                   Int8Array, Int4Array, TextArray, Int4Array, Int8Array, TimestamptzArray)
RECORD_COLUMNS = (UuidArray, TextArray, TextArray, TextArray, Int8Array)
PARK_COLUMNS = (UuidArray, UuidArray, TextArray, ByteaArray, TextArray, Int4Array, Int8Array,
                TextArray, TextArray)
NEW_COLUMNS = (UuidArray, TextArray, JsonbArray, TextArray, Int8Array, TimestamptzArray,
               TimestamptzArray, UuidArray, TimestamptzArray)
UPDATE_COLUMNS = (UuidArray, TextArray, JsonbArray, TextArray, Int8Array, TimestamptzArray,
                  UuidArray, TimestamptzArray, Int8Array)
OUTBOX_COLUMNS = (UuidArray, TextArray, TextArray, TextArray, ByteaArray, TimestamptzArray,
                  TextArray)


class PostgresBatchUnit:
    """Implements :class:`~phoenix_resources.services.apply_batch.BatchUnit`."""

    def __init__(self, pool: ConnectionPool, codec: EventCodec, events_topic: str,
                 rejections_topic: str, *, connect_timeout: float = 5.0) -> None:
        self._pool = pool
        self._codec = codec
        self._events_topic = events_topic
        self._rejections_topic = rejections_topic
        self._timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._done = False
        self._loaded: tuple[set[UUID], Snapshot] | None = None
        """What the claim's round trip loaded: the ids asked for, and what came back."""
        self._fresh: dict[UUID, Claim] = {}
        """Commands this unit found new: :meth:`write` claims them by inserting their row."""
        self._known: dict[UUID, int] = {}
        """Known commands delivered again: the deliveries to add to their counter."""

    def __enter__(self) -> PostgresBatchUnit:
        with translated():
            self._conn = self._pool.getconn(timeout=self._timeout)
        self._done = False
        self._loaded = None
        self._fresh, self._known = {}, {}
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if not self._done and not conn.closed:
                conn.rollback()
        except psycopg.Error:
            pass  # the connection is broken; the pool discards it on return
        finally:
            self._pool.putconn(conn)

    @property
    def conn(self) -> psycopg.Connection[Any]:
        assert self._conn is not None, "use the unit as a context manager"
        return self._conn

    def claim(self, claims: Sequence[Claim]) -> set[UUID]:
        # The load of every claimed resource travels in the same round trip (FOR UPDATE:
        # a concurrent writer of these resources waits for us, or we for it).
        resource_ids = {c.incoming.command.resource_id for c in claims}
        with translated(), self.conn.pipeline():
            known_cur = self.conn.execute(KNOWN, (UuidArray(c.incoming.command.command_id
                                                             for c in claims),))
            loading = self._send_load(resource_ids)
        with translated():
            known = {row[0] for row in known_cur.fetchall()}
            self._loaded = (resource_ids, self._snapshot(*loading))
        fresh: dict[UUID, Claim] = {}
        for c in claims:
            cid = c.incoming.command.command_id
            if cid in known:
                self._known[cid] = self._known.get(cid, 0) + c.repeats + 1
            else:
                fresh[cid] = c
        self._fresh.update(fresh)
        return set(fresh)

    def load(self, resource_ids: set[UUID]) -> Snapshot:
        if self._loaded is not None and resource_ids <= self._loaded[0]:
            snapshot = self._loaded[1]
            return Snapshot({i: r for i, r in snapshot.states.items() if i in resource_ids},
                            snapshot.parked & resource_ids)
        with translated(), self.conn.pipeline():
            loading = self._send_load(resource_ids)
        with translated():
            return self._snapshot(*loading)

    def _send_load(self, resource_ids: set[UUID]) -> tuple[psycopg.Cursor[Any], ...]:
        ids = (UuidArray(sorted(resource_ids, key=_as_int)),)
        return self.conn.execute(PARKED_AMONG, ids), self.conn.execute(LOAD, ids)

    @staticmethod
    def _snapshot(parked_cur: psycopg.Cursor[Any], rows_cur: psycopg.Cursor[Any]) -> Snapshot:
        parked = frozenset(r[0] for r in parked_cur.fetchall())
        return Snapshot({row[0]: _row_to_resource(row) for row in rows_cur.fetchall()}, parked)

    def write(self, outcomes: Sequence[tuple[Incoming, Outcome]],
              changes: Mapping[UUID, StateChange], now: datetime) -> None:
        new = [c.after for c in changes.values() if c.before is None]
        existing = [c for c in changes.values() if c.before is not None]
        claimed = [(i, o) for i, o in outcomes if i.command.command_id in self._fresh]
        recorded = [(i, o) for i, o in outcomes if i.command.command_id not in self._fresh]
        with translated(), self.conn.pipeline():
            claiming = self._insert_outcomes(claimed, now)
            self._bump_duplicates()
            inserting = self._insert_new(new)
            updating = self._update_existing(existing)
            self._record_outcomes(recorded, now)
            self._park([(i, o) for i, o in outcomes if isinstance(o, Parked)])
            if self._insert_outbox(outcomes, now):
                self.conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
        # Row counts are known only once the pipeline has synced.
        got = tuple(c.rowcount if c else 0 for c in (claiming, inserting, updating))
        if got != (len(claimed), len(new), len(existing)):
            raise ConcurrentModification(
                f"expected {len(claimed)} claims, {len(new)} inserts and {len(existing)} "
                f"updates, got {got[0]}, {got[1]} and {got[2]}: another writer claimed these "
                "commands or touched these resources")

    def commit(self) -> None:
        with translated():
            self.conn.commit()
        self._done = True

    # --- the parking lot's queue (replay and discard) ------------------------------------

    def lock_queue(self, resource_id: UUID) -> list[ParkedCommand]:
        with translated():
            self.conn.execute(LOCK_QUEUE, (resource_id,))
            rows = self.conn.execute(QUEUE, (resource_id,)).fetchall()
        # The payload is the command as this service wrote it (JSON wire format).
        return [ParkedCommand(seq, Incoming(command_from_record(orjson.loads(payload)),
                                            partition or 0, offset or 0, traceparent),
                              reason, error, attempts)
                for seq, payload, traceparent, partition, offset, reason, error, attempts
                in rows]

    def unpark(self, resource_id: UUID, command_ids: Sequence[UUID]) -> None:
        ids = list(command_ids)
        with translated():
            self.conn.execute(UNPARK, (ids, resource_id, ids))

    def note_attempt(self, command_id: UUID, error: str) -> None:
        with translated():
            self.conn.execute(NOTE_ATTEMPT, (error.replace("\x00", ""), command_id))

    def _insert_new(self, rows: Sequence[Resource]) -> psycopg.Cursor[Any] | None:
        if not rows:
            return None
        return self.conn.execute(INSERT_NEW, columns(
            [(r.id, r.name, orjson.dumps(dict(r.config)).decode(), r.status.value, r.version,
              r.created_at, r.updated_at, r.last_command_id, r.deleted_at) for r in rows],
            NEW_COLUMNS))

    def _update_existing(self, changes: Sequence[StateChange]) -> psycopg.Cursor[Any] | None:
        if not changes:
            return None
        rows: list[tuple[Any, ...]] = []
        for c in changes:
            a = c.after
            assert c.before is not None
            rows.append((a.id, a.name, orjson.dumps(dict(a.config)).decode(), a.status.value,
                         a.version, a.updated_at, a.last_command_id, a.deleted_at,
                         c.before.version))
        return self.conn.execute(UPDATE_EXISTING, columns(rows, UPDATE_COLUMNS))

    def _insert_outcomes(self, claimed: Sequence[tuple[Incoming, Outcome]],
                         now: datetime) -> psycopg.Cursor[Any] | None:
        if not claimed:
            return None
        rows: list[tuple[Any, ...]] = []
        for item, d in claimed:
            cmd = item.command
            code, message, version = _outcome_fields(d)
            rows.append((cmd.command_id, cmd.resource_id, cmd.type.value, _OUTCOME[type(d)],
                         code, message, version, self._fresh[cmd.command_id].repeats,
                         cmd.correlation_id, item.partition, item.offset, cmd.issued_at))
        # A fixed order (by id) keeps two overlapping claimers from deadlocking.
        rows.sort(key=lambda r: r[0].int)
        return self.conn.execute(INSERT_OUTCOMES, [now, *columns(rows, OUTCOME_COLUMNS)])

    def _bump_duplicates(self) -> None:
        if self._known:
            ids = sorted(self._known, key=_as_int)
            self.conn.execute(BUMP_DUPLICATES, (UuidArray(ids),
                                                Int4Array(self._known[i] for i in ids)))
            self._known = {}

    def _record_outcomes(self, outcomes: Sequence[tuple[Incoming, Outcome]],
                         now: datetime) -> None:
        if not outcomes:
            return
        rows = [(item.command.command_id, _OUTCOME[type(d)], *_outcome_fields(d))
                for item, d in outcomes]
        self.conn.execute(RECORD_OUTCOMES, [now, *columns(rows, RECORD_COLUMNS)])

    def _park(self, parked: Sequence[tuple[Incoming, Parked]]) -> None:
        """Parked commands keep their order by ``seq`` (inserted in offset order); the payload
        is the command in the JSON wire format, which a replay decodes like any record."""
        if not parked:
            return
        rows = [(i.command.command_id, i.command.resource_id, i.command.type.value,
                 command_to_json(i.command), i.traceparent, i.partition, i.offset,
                 p.code.value, p.error) for i, p in parked]
        self.conn.execute(PARK, columns(rows, PARK_COLUMNS))
        self.conn.execute(PARK_RESOURCES, (UuidArray(i.command.resource_id for i, _ in parked),))

    def _insert_outbox(self, outcomes: Sequence[tuple[Incoming, Outcome]],
                       now: datetime) -> int:
        rows: list[tuple[Any, ...]] = []
        for item, d in outcomes:
            if isinstance(d, Applied):
                if d.event is not None:
                    rows.append((d.event.event_id, str(d.event.resource_id),
                                 d.event.type_name, self._events_topic,
                                 self._codec.encode_event(d.event), d.event.occurred_at,
                                 item.traceparent))
            elif isinstance(d, Rejected):
                rows.append(self._rejection_row(item, d, now))
        if rows:
            self.conn.execute(INSERT_OUTBOX, [AGGREGATE, *columns(rows, OUTBOX_COLUMNS)])
        return len(rows)

    def _rejection_row(self, item: Incoming, d: Rejected, now: datetime) -> tuple[Any, ...]:
        cmd = item.command
        rejection = CommandRejected(rejection_id=rejection_id_for(cmd.command_id),
                                    command_id=cmd.command_id, command_type=cmd.type,
                                    resource_id=cmd.resource_id, code=d.code.value,
                                    message=d.message, rejected_at=now,
                                    correlation_id=cmd.correlation_id)
        return (rejection.rejection_id, str(cmd.resource_id), rejection.type_name,
                self._rejections_topic, self._codec.encode_rejection(rejection), now,
                item.traceparent)
