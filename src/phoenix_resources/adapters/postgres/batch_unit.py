"""The worker's transaction: every statement is set-based (``unnest`` of arrays), parameters
travel in binary (``%b``: no text escaping of arrays and payloads), and the statements of a
phase are pipelined, so a batch costs two round trips plus the commit.

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

from phoenix_resources.adapters.codec import EventCodec
from phoenix_resources.adapters.postgres import NOTIFY_CHANNEL
from phoenix_resources.adapters.postgres.errors import translated
from phoenix_resources.domain.decide import Applied, Decision, Rejected
from phoenix_resources.domain.events import CommandRejected, rejection_id_for
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.errors import ConcurrentModification
from phoenix_resources.services.ports import Claim, Incoming, StateChange

AGGREGATE = "resource"

CLAIM = """
INSERT INTO processed_commands AS p
    (command_id, resource_id, command_type, outcome, duplicate_deliveries, correlation_id,
     source_partition, source_offset)
SELECT * FROM unnest(%b::uuid[], %b::uuid[], %b::text[], %b::text[], %b::int4[], %b::text[],
                     %b::int4[], %b::int8[])
ON CONFLICT (command_id) DO UPDATE
    SET duplicate_deliveries = p.duplicate_deliveries + EXCLUDED.duplicate_deliveries + 1
RETURNING command_id, (xmax = 0) AS inserted
"""
# (xmax = 0) is true only for rows this statement inserted, not for the ones it updated.

LOAD = """
SELECT id, name, config, status, version, created_at, updated_at, last_command_id, deleted_at
FROM resources WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE
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


def _as_int(value: UUID) -> int:
    return value.int


def _row_to_resource(row: tuple[Any, ...]) -> Resource:
    return Resource(id=row[0], name=row[1], config=row[2], status=Status(row[3]),
                    version=row[4], created_at=row[5], updated_at=row[6],
                    last_command_id=row[7], deleted_at=row[8])


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Transpose rows into one list per column (the arrays ``unnest`` takes)."""
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


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

    def __enter__(self) -> PostgresBatchUnit:
        with translated():
            self._conn = self._pool.getconn(timeout=self._timeout)
        self._done = False
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
        # A fixed lock order (by id) keeps two overlapping claimers from deadlocking.
        ordered = sorted(claims, key=lambda c: c.incoming.command.command_id.int)
        cols = _columns([(c.incoming.command.command_id, c.incoming.command.resource_id,
                          c.incoming.command.type.value, "pending", c.repeats,
                          c.incoming.command.correlation_id, c.incoming.partition,
                          c.incoming.offset) for c in ordered], 8)
        with translated():
            rows = self.conn.execute(CLAIM, cols).fetchall()
        return {cid for cid, inserted in rows if inserted}

    def load(self, resource_ids: set[UUID]) -> dict[UUID, Resource]:
        with translated():
            rows = self.conn.execute(LOAD, (sorted(resource_ids, key=_as_int),)).fetchall()
        return {row[0]: _row_to_resource(row) for row in rows}

    def write(self, decisions: Sequence[tuple[Incoming, Decision]],
              changes: Mapping[UUID, StateChange], now: datetime) -> None:
        new = [c.after for c in changes.values() if c.before is None]
        existing = [c for c in changes.values() if c.before is not None]
        with translated(), self.conn.pipeline():
            inserting = self._insert_new(new)
            updating = self._update_existing(existing)
            self._record_outcomes(decisions, now)
            if self._insert_outbox(decisions, now):
                self.conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
        # Row counts are known only once the pipeline has synced.
        inserted = inserting.rowcount if inserting else 0
        updated = updating.rowcount if updating else 0
        if (inserted, updated) != (len(new), len(existing)):
            raise ConcurrentModification(
                f"expected {len(new)} inserts and {len(existing)} updates, "
                f"got {inserted} and {updated}: another writer touched these resources")

    def commit(self) -> None:
        with translated():
            self.conn.commit()
        self._done = True

    def _insert_new(self, rows: Sequence[Resource]) -> psycopg.Cursor[Any] | None:
        if not rows:
            return None
        return self.conn.execute(INSERT_NEW, _columns(
            [(r.id, r.name, orjson.dumps(dict(r.config)).decode(), r.status.value, r.version,
              r.created_at, r.updated_at, r.last_command_id, r.deleted_at) for r in rows], 9))

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
        return self.conn.execute(UPDATE_EXISTING, _columns(rows, 9))

    def _record_outcomes(self, decisions: Sequence[tuple[Incoming, Decision]],
                         now: datetime) -> None:
        if not decisions:
            return
        rows: list[tuple[Any, ...]] = []
        for item, d in decisions:
            if isinstance(d, Applied):
                rows.append((item.command.command_id, "applied", None, None, d.state.version))
            else:
                rows.append((item.command.command_id, "rejected", d.code.value, d.message,
                             None))
        self.conn.execute(RECORD_OUTCOMES, [now, *_columns(rows, 5)])

    def _insert_outbox(self, decisions: Sequence[tuple[Incoming, Decision]],
                       now: datetime) -> int:
        rows: list[tuple[Any, ...]] = []
        for item, d in decisions:
            if isinstance(d, Applied):
                if d.event is not None:
                    rows.append((d.event.event_id, str(d.event.resource_id),
                                 d.event.type_name, self._events_topic,
                                 self._codec.encode_event(d.event), d.event.occurred_at,
                                 item.traceparent))
            else:
                rows.append(self._rejection_row(item, d, now))
        if rows:
            self.conn.execute(INSERT_OUTBOX, [AGGREGATE, *_columns(rows, 7)])
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
