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

The unit stores the rows the use case made (:class:`~phoenix_resources.services.ports.
BatchRows`) and decides nothing about them: each field maps to a column. What it owns is
storage: the statements, the order of rows that keeps concurrent writers from deadlocking,
the row counts that reveal a concurrent writer, and the parked command's stored form (the
JSON wire format, which :meth:`PostgresBatchUnit.lock_queue` reads back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from operator import attrgetter
from types import TracebackType
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg_pool import ConnectionPool

from phoenix_resources.adapters.postgres import NOTIFY_CHANNEL
from phoenix_resources.adapters.postgres.arrays import (
    ENCODED,
    Int4Array,
    UuidArray,
    columns,
)
from phoenix_resources.adapters.postgres.batch_sql import (
    AGGREGATE,
    BUMP_DUPLICATES,
    CHECK_WRITABLE,
    INSERT_NEW,
    INSERT_OUTBOX,
    INSERT_OUTCOMES,
    KNOWN,
    LOAD,
    LOCK_QUEUE,
    NEW_COLUMNS,
    NOTE_ATTEMPT,
    OUTBOX_COLUMNS,
    OUTCOME_COLUMNS,
    PARK,
    PARK_COLUMNS,
    PARK_RESOURCES,
    PARKED_AMONG,
    QUEUE,
    RECORD_COLUMNS,
    RECORD_OUTCOMES,
    UNPARK,
    UPDATE_COLUMNS,
    UPDATE_EXISTING,
)
from phoenix_resources.adapters.postgres.errors import poisons_connection, translated
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.errors import ConcurrentModification, DatabaseReadOnly, DatabaseRefused
from phoenix_resources.services.ports import (
    BatchRows,
    Claim,
    Incoming,
    OutboxEntry,
    OutboxFormat,
    OutcomeRow,
    ParkedCommand,
    ParkingEntry,
    Recorded,
    Snapshot,
    StateChange,
)
from phoenix_resources.services.ports_encoded import EncodedRead, EncodedWrite
from phoenix_resources.wire.commands import command_from_record, command_to_json


def _as_int(value: UUID) -> int:
    return value.int


_by_command_id = attrgetter("command_id.int")


def _parked_columns(entry: ParkingEntry) -> tuple[Any, ...]:
    i, command = entry.incoming, entry.incoming.command
    return (command.command_id, command.resource_id, command.type.value,
            command_to_json(command), i.traceparent, i.partition, i.offset, entry.reason,
            entry.error)


_STATUS_OF: dict[str, Status] = {s.value: s for s in Status}  # Status(text) is ~10x slower


def _row_to_resource(row: tuple[Any, ...]) -> Resource:
    return Resource(id=row[0], name=row[1], config=row[2], status=_STATUS_OF[row[3]],
                    version=row[4], created_at=row[5], updated_at=row[6],
                    last_command_id=row[7], deleted_at=row[8])


_ENCODED_UUIDS = ENCODED[UuidArray]
_ENCODED_STATEMENTS: dict[str, tuple[str, tuple[type[Any], ...]]] = {
    "insert_outcomes": (INSERT_OUTCOMES, OUTCOME_COLUMNS),
    "bump_duplicates": (BUMP_DUPLICATES, (UuidArray, Int4Array)),
    "insert_new": (INSERT_NEW, NEW_COLUMNS),
    "update_existing": (UPDATE_EXISTING, UPDATE_COLUMNS),
    "park": (PARK, PARK_COLUMNS),
    "park_resources": (PARK_RESOURCES, (UuidArray,)),
    "insert_outbox": (INSERT_OUTBOX, OUTBOX_COLUMNS),
}
"""The compiled fold's statement names (``Written.statements()``), their SQL and the
element type of each array parameter."""
_COUNTED = ("insert_outcomes", "insert_new", "update_existing")


def _encoded_params(name: str, arrays: list[bytes], processed_at: datetime) -> list[Any]:
    kinds = _ENCODED_STATEMENTS[name][1]
    values: list[Any] = [ENCODED[k](a) for k, a in zip(kinds, arrays, strict=True)]
    if name == "insert_outcomes":
        return [processed_at, *values]
    if name == "insert_outbox":
        return [AGGREGATE, *values]
    return values


class PostgresBatchUnit:
    """Implements :class:`~phoenix_resources.services.ports.ReplayUnit`: stores the rows it
    is given, in one transaction."""

    def __init__(self, pool: ConnectionPool, outbox_format: OutboxFormat, *,
                 connect_timeout: float = 5.0) -> None:
        self._pool = pool
        self.outbox_format = outbox_format
        self._timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._done = False
        self._loaded: tuple[set[UUID], Snapshot] | None = None
        """What the claim's round trip loaded: the ids asked for, and what came back."""

    def __enter__(self) -> PostgresBatchUnit:
        with translated():
            self._conn = self._pool.getconn(timeout=self._timeout)
        self._done = False
        self._loaded = None
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if exc is not None and poisons_connection(exc):
                # Its server went away, cannot write (a failover moved the primary) or refuses
                # for reasons of its own: the pool replaces a closed connection, and the new
                # one finds the primary (target_session_attrs=read-write).
                conn.close()
            elif not self._done and not conn.closed:
                conn.rollback()
        except psycopg.Error:
            pass  # the connection is broken; the pool discards it on return
        finally:
            self._pool.putconn(conn)

    def check_writable(self) -> None:
        with translated():
            recovering, read_only, allowed = self.conn.execute(CHECK_WRITABLE).fetchall()[0]
            self.conn.rollback()
        if recovering or read_only == "on":
            raise DatabaseReadOnly("the database cannot write now "
                                   f"(in recovery: {recovering}, read-only: {read_only})")
        if not allowed:
            raise DatabaseRefused("the database role lacks a privilege on the batch tables")

    @property
    def conn(self) -> psycopg.Connection[Any]:
        assert self._conn is not None, "use the unit as a context manager"
        return self._conn

    def claim(self, claims: Sequence[Claim]) -> dict[UUID, Recorded]:
        # The load of every claimed resource travels in the same round trip (FOR UPDATE:
        # a concurrent writer of these resources waits for us, or we for it).
        resource_ids = {c.incoming.command.resource_id for c in claims}
        with translated(), self.conn.pipeline():
            known_cur = self.conn.execute(KNOWN, (UuidArray(c.incoming.command.command_id
                                                             for c in claims),))
            loading = self._send_load(resource_ids)
        with translated():
            known = {cid: Recorded(rid, kind) for cid, rid, kind in known_cur.fetchall()}
            self._loaded = (resource_ids, self._snapshot(*loading))
        return known

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

    def write(self, rows: BatchRows) -> None:
        with translated(), self.conn.pipeline():
            claiming = self._insert_outcomes(rows.claimed, rows.processed_at)
            self._bump_duplicates(rows.repeated)
            inserting = self._insert_new(rows.created)
            updating = self._update_existing(rows.changed)
            self._record_outcomes(rows.recorded, rows.processed_at)
            self._park(rows.parked)
            if rows.outbox:
                self._insert_outbox(rows.outbox)
                self.conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
        # Row counts are known only once the pipeline has synced.
        self._check_counts(
            tuple(c.rowcount if c else 0 for c in (claiming, inserting, updating)),
            (len(rows.claimed), len(rows.created), len(rows.changed)))

    @staticmethod
    def _check_counts(got: tuple[int, ...], want: tuple[int, ...]) -> None:
        if got != want:
            raise ConcurrentModification(
                f"expected {want[0]} claims, {want[1]} inserts and {want[2]} updates, got "
                f"{got[0]}, {got[1]} and {got[2]}: another writer claimed these commands or "
                "touched these resources")

    def commit(self) -> None:
        with translated():
            self.conn.commit()
        self._done = True

    # --- the compiled hot path: the same round trips, parameters already encoded -----------

    def read_encoded(self, claim_ids: bytes, resource_ids: bytes) -> EncodedRead:
        """:meth:`claim` and :meth:`load` in one round trip, for the compiled fold."""
        ids = (_ENCODED_UUIDS(resource_ids),)
        with translated(), self.conn.pipeline():
            known = self.conn.execute(KNOWN, (_ENCODED_UUIDS(claim_ids),))
            parked = self.conn.execute(PARKED_AMONG, ids)
            rows = self.conn.execute(LOAD, ids)
        with translated():
            return EncodedRead(known.fetchall(),
                               [r[0] for r in parked.fetchall()], rows.fetchall())

    def write_encoded(self, written: EncodedWrite, processed_at: datetime) -> None:
        """:meth:`write` of the statements the compiled fold made, with the same row-count
        check."""
        params = written.params()
        with translated(), self.conn.pipeline():
            cursors = {name: self.conn.execute(_ENCODED_STATEMENTS[name][0],
                                               _encoded_params(name, params[name], processed_at))
                       for name in written.statements()}
            if written.notify:
                self.conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
        counts = {name: c.rowcount for name, c in cursors.items()}
        self._check_counts(tuple(counts.get(n, 0) for n in _COUNTED),
                           written.expected_rowcounts)

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

    def _insert_outcomes(self, claimed: Sequence[OutcomeRow],
                         now: datetime) -> psycopg.Cursor[Any] | None:
        if not claimed:
            return None
        # A fixed order (by id) keeps two overlapping claimers from deadlocking.
        rows = sorted(claimed, key=_by_command_id)
        return self.conn.execute(INSERT_OUTCOMES, [now, *columns(rows, OUTCOME_COLUMNS)])

    def _bump_duplicates(self, repeated: Mapping[UUID, int]) -> None:
        if repeated:
            ids = sorted(repeated, key=_as_int)
            self.conn.execute(BUMP_DUPLICATES, (UuidArray(ids),
                                                Int4Array(repeated[i] for i in ids)))

    def _record_outcomes(self, recorded: Sequence[OutcomeRow], now: datetime) -> None:
        if not recorded:
            return
        rows = [(r.command_id, r.outcome, r.error_code, r.error_message, r.resulting_version)
                for r in recorded]
        self.conn.execute(RECORD_OUTCOMES, [now, *columns(rows, RECORD_COLUMNS)])

    def _park(self, parked: Sequence[ParkingEntry]) -> None:
        """Parked commands keep their order by ``seq`` (inserted in the order given); the
        payload is the command in the JSON wire format, which a replay decodes like any
        record."""
        if not parked:
            return
        self.conn.execute(PARK, columns(map(_parked_columns, parked), PARK_COLUMNS))
        self.conn.execute(PARK_RESOURCES,
                          (UuidArray(p.incoming.command.resource_id for p in parked),))

    def _insert_outbox(self, entries: Sequence[OutboxEntry]) -> None:
        self.conn.execute(INSERT_OUTBOX, [AGGREGATE, *columns(entries, OUTBOX_COLUMNS)])
