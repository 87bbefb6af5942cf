"""In-memory stand-ins for the I/O the worker and the relay do, so their rules can be tested
in milliseconds. Each fake keeps the guarantees listed in its docstring and nothing more;
where it departs from the real thing, the docstring says how.

* :class:`FakeStore` — the committed "database" (resources, processed_commands, outbox, the
  relay's advisory lock), shared by the units and outbox sessions built on it.
* :class:`FakeBatchUnit` — implements :class:`~phoenix_resources.services.ports.BatchUnit`;
  ``tests/contract/test_batch_unit.py`` runs the same tests against it and PostgreSQL.
* :class:`FakeOutboxReader` — implements :class:`~phoenix_resources.services.ports.OutboxReader`
  over the store; ``tests/contract/test_outbox_reader.py`` runs the same tests against it and
  PostgreSQL.
* :class:`FakeConsumer` / :class:`FakeProducer` — the subset of ``confluent_kafka`` the
  worker and relay use, handing out real :class:`confluent_kafka.Message` objects;
  ``tests/contract/test_kafka_fakes.py`` runs the same tests against them and the broker.
* :class:`FakeClock` — a monotonic clock that only moves when a fake waits.

Nothing here sleeps, blocks or starts a thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any
from uuid import UUID

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin._metadata import ClusterMetadata, PartitionMetadata, TopicMetadata

from phoenix_resources.adapters.dlq import RECORD_BATCH_OVERHEAD
from phoenix_resources.adapters.records import header_pairs, wire_size
from phoenix_resources.domain.model import Resource
from phoenix_resources.errors import ConcurrentModification, DatabaseReadOnly, DatabaseUnavailable
from phoenix_resources.services.ports import (
    BatchRows,
    Claim,
    OutboxFormat,
    OutboxRow,
    ParkedCommand,
    Recorded,
    Snapshot,
)
from phoenix_resources.services.ports_encoded import EncodedRead, EncodedWrite
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import Framing
from tests.support import encoded

TP = tuple[str, int]
"""(topic, partition)"""


class FakeClock:
    """A monotonic clock (seconds) that moves only when told to; the fake consumer advances
    it by the timeout of every wait that returns nothing (pass it as ``Worker(monotonic=)``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


# --- the database --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredOutboxRow:
    """An outbox row as the table keeps it: ``id`` is a uuid (the relay reads it as text,
    :meth:`fetched`)."""

    seq: int
    id: UUID
    aggregateid: str
    type: str
    topic: str
    payload: bytes
    occurred_at: datetime
    traceparent: str | None

    def fetched(self) -> OutboxRow:
        return OutboxRow(self.seq, str(self.id), self.aggregateid, self.type, self.topic,
                         self.payload, self.occurred_at, self.traceparent)


@dataclass(frozen=True, slots=True)
class ProcessedCommand:
    """A ``processed_commands`` row."""

    command_id: UUID
    resource_id: UUID
    command_type: str
    outcome: str
    error_code: str | None
    error_message: str | None
    resulting_version: int | None
    duplicate_deliveries: int
    correlation_id: str | None
    source_partition: int
    source_offset: int
    processed_at: datetime
    issued_at: datetime | None = None


class FakeStore:
    """What PostgreSQL has committed. Units and sessions read and change it; tests read its
    attributes directly (they are the committed state, never a unit's pending one).

    ``commits`` and ``rollbacks`` count unit endings."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock
        self.resources: dict[UUID, Resource] = {}
        self.processed: dict[UUID, ProcessedCommand] = {}
        self.outbox: list[StoredOutboxRow] = []
        self.outbox_parked: dict[int, str] = {}
        """Outbox rows the broker refused for good: ``seq`` → the broker's reason."""
        self.parked: dict[UUID, ParkedCommand] = {}
        """The parking lot, in parking order (``seq``)."""
        self.parked_resources: set[UUID] = set()
        self.parked_errors: dict[UUID, str] = {}
        """The last failed replay attempt's error per parked command."""
        self.commits = 0
        self.rollbacks = 0
        self.relay_lock: object | None = None
        """The session holding the relay's advisory lock, if any."""
        self.writable = True
        """False: the database answers like a standby or a read-only node."""
        self._next_seq = 1
        self._mutex = threading.Lock()

    def unit(self, codec: EventCodec | None = None, events_topic: str = "events",
             rejections_topic: str = "rejections") -> FakeBatchUnit:
        """A unit whose outbox rows are encoded by ``codec`` (the real :class:`EventCodec`
        by default) for these topics."""
        return FakeBatchUnit(self, OutboxFormat(codec or _default_codec(), events_topic,
                                                rejections_topic))

    def unit_factory(self, codec: EventCodec | None = None, events_topic: str = "events",
                     rejections_topic: str = "rejections") -> Callable[[], FakeBatchUnit]:
        """What ``Worker(unit_factory=...)`` takes."""
        return lambda: self.unit(codec, events_topic, rejections_topic)


_DEFAULT_CODEC: EventCodec | None = None


def _default_codec() -> EventCodec:
    global _DEFAULT_CODEC  # noqa: PLW0603 - built once: loading the schemas is the slow part
    if _DEFAULT_CODEC is None:
        _DEFAULT_CODEC = EventCodec(Framing())
    return _DEFAULT_CODEC


class FakeBatchUnit:
    """:class:`~phoenix_resources.services.ports.BatchUnit` over a :class:`FakeStore`.

    Guarantees, as ``PostgresBatchUnit`` (checked by ``tests/contract``):

    * :meth:`claim` returns the ids a committed unit recorded, with their resource and type;
    * :meth:`load` returns committed rows, tombstones included (plus this unit's own writes);
    * :meth:`write` stores the rows it is given, as they are: ``claimed`` outcome rows are
      inserted, ``recorded`` ones replace the outcome of a recorded command, ``repeated``
      bumps ``duplicate_deliveries`` (all at commit); a created row is inserted unless one
      exists, a changed row updated only if it is at the version it was loaded at, and
      :class:`ConcurrentModification` is raised when a row count differs from the rows given;
    * everything becomes visible at :meth:`commit`, at once; leaving the ``with`` block
      without it (or with an exception) forgets everything, claims included.

    Where it differs: PostgreSQL makes a second *open* unit wait on the first one's row
    locks and inserted claims; the fake does not block, it checks again at :meth:`commit` and raises
    :class:`ConcurrentModification` if another unit committed a claim or a row it relies on
    first. A retried batch ends in the same state either way. Outbox ``seq`` is assigned at
    commit (in PostgreSQL at insert; per resource both give version order).
    """

    def __init__(self, store: FakeStore, outbox_format: OutboxFormat | None = None) -> None:
        self.store = store
        self.outbox_format = outbox_format or OutboxFormat(_default_codec(), "events",
                                                           "rejections")
        self._open = False
        self._reset()

    def _reset(self) -> None:
        self._claimed: dict[UUID, ProcessedCommand] = {}
        """Rows this unit inserts at commit: the claimed commands' outcomes."""
        self._bumps: dict[UUID, int] = {}
        self._outcomes: dict[UUID, dict[str, Any]] = {}
        self._rows: dict[UUID, Resource] = {}
        self._expected: dict[UUID, int | None] = {}
        """Per written row: the committed version this unit relies on (None: no row)."""
        self._outbox: list[StoredOutboxRow] = []
        self._parked: list[ParkedCommand] = []
        self._unparked: set[UUID] = set()
        self._released: set[UUID] = set()
        self._attempts: dict[UUID, str] = {}
        self._done = False

    def __enter__(self) -> FakeBatchUnit:
        self._reset()
        self._open = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._done:
            self.store.rollbacks += 1
        self._reset()
        self._open = False

    def _check_open(self) -> None:
        assert self._open, "use the unit as a context manager"
        assert not self._done, "the unit has committed"

    def _row(self, rid: UUID) -> Resource | None:
        return self._rows.get(rid, self.store.resources.get(rid))

    def _check_writable_now(self) -> None:
        """Locking reads and writes fail on a read-only database, as PostgreSQL's do."""
        if not self.store.writable:
            raise DatabaseReadOnly("cannot execute in a read-only transaction (fake)")

    def claim(self, claims: Sequence[Claim]) -> dict[UUID, Recorded]:
        self._check_open()
        self._check_writable_now()
        ids = [c.incoming.command.command_id for c in claims]
        if len(set(ids)) != len(ids):
            raise ValueError("a command_id appears twice in one claim; use split_repeats")
        return {cid: self._recorded(cid) for cid in ids if cid in self.store.processed}

    def _recorded(self, command_id: UUID) -> Recorded:
        row = self.store.processed[command_id]
        return Recorded(row.resource_id, row.command_type)

    def load(self, resource_ids: set[UUID]) -> Snapshot:
        self._check_open()
        found = {rid: self._row(rid) for rid in resource_ids}
        parked = {p.incoming.command.resource_id for p in self._parked}
        parked |= self.store.parked_resources - self._released
        return Snapshot({rid: row for rid, row in found.items() if row is not None},
                        frozenset(resource_ids & parked))

    def write(self, rows: BatchRows) -> None:
        self._check_open()
        self._check_writable_now()
        inserted = updated = 0
        for row in rows.created:  # INSERT ... ON CONFLICT (id) DO NOTHING
            if self._row(row.id) is None:
                self._expected.setdefault(row.id, None)
                self._rows[row.id] = row
                inserted += 1
        for change in rows.changed:  # UPDATE ... WHERE version = <version loaded>
            assert change.before is not None
            current = self._row(change.after.id)
            if current is not None and current.version == change.before.version:
                self._expected.setdefault(change.after.id, change.before.version)
                self._rows[change.after.id] = change.after
                updated += 1
        for r in rows.claimed:  # INSERT ... ON CONFLICT DO NOTHING, checked at commit
            self._claimed[r.command_id] = ProcessedCommand(
                command_id=r.command_id, resource_id=r.resource_id,
                command_type=r.command_type, outcome=r.outcome, error_code=r.error_code,
                error_message=r.error_message, resulting_version=r.resulting_version,
                duplicate_deliveries=r.duplicate_deliveries, correlation_id=r.correlation_id,
                source_partition=r.source_partition, source_offset=r.source_offset,
                issued_at=r.issued_at, processed_at=rows.processed_at)
        for r in rows.recorded:  # UPDATE processed_commands ... WHERE command_id
            if r.command_id in self.store.processed:
                self._outcomes[r.command_id] = {
                    "outcome": r.outcome, "error_code": r.error_code,
                    "error_message": r.error_message, "resulting_version": r.resulting_version,
                    "processed_at": rows.processed_at}
        for cid, n in rows.repeated.items():
            self._bumps[cid] = self._bumps.get(cid, 0) + n
        self._parked += [ParkedCommand(0, p.incoming, p.reason, p.error, 0) for p in rows.parked]
        # Event ids as PostgreSQL hands them back to the relay: text.
        self._outbox += [StoredOutboxRow(0, e.event_id, e.aggregate_id, e.type, e.topic,
                                         e.payload, e.occurred_at, e.traceparent)
                         for e in rows.outbox]
        if (inserted, updated) != (len(rows.created), len(rows.changed)):
            raise ConcurrentModification(
                f"expected {len(rows.created)} inserts and {len(rows.changed)} updates, "
                f"got {inserted} and {updated}: another writer touched these resources")

    # --- the compiled hot path (EncodedUnit): the same, from binary parameters ------------

    def read_encoded(self, claim_ids: bytes, resource_ids: bytes) -> EncodedRead:
        self._check_open()
        self._check_writable_now()
        ids = encoded.decode_array(claim_ids)
        if len(set(ids)) != len(ids):
            raise ValueError("a command_id appears twice in one claim")
        rids = encoded.decode_array(resource_ids)
        snapshot = self.load(set(rids))
        return EncodedRead([(i, *self._recorded(i)) for i in ids if i in self.store.processed],
                           [r for r in rids if r in snapshot.parked],
                           [encoded.resource_row(snapshot.states[r]) for r in rids
                            if r in snapshot.states])

    def write_encoded(self, written: EncodedWrite, processed_at: datetime) -> None:
        self._check_open()
        self.write(encoded.rows_of(written, processed_at, self._row))

    # --- the parking lot's queue (ReplayUnit) ---------------------------------------------

    def lock_queue(self, resource_id: UUID) -> list[ParkedCommand]:
        """The resource's committed parked commands in order (the fake needs no lock: units
        of one store run one at a time in the tests that replay)."""
        self._check_open()
        return [p for p in self.store.parked.values()
                if p.incoming.command.resource_id == resource_id
                and p.incoming.command.command_id not in self._unparked]

    def unpark(self, resource_id: UUID, command_ids: Sequence[UUID]) -> None:
        self._check_open()
        self._unparked |= set(command_ids)
        self._released.add(resource_id)

    def note_attempt(self, command_id: UUID, error: str) -> None:
        self._check_open()
        self._attempts[command_id] = error

    def check_writable(self) -> None:
        self._check_open()
        self._check_writable_now()

    def commit(self) -> None:
        self._check_open()
        store = self.store
        with store._mutex:
            for cid in self._claimed:
                if cid in store.processed:
                    raise ConcurrentModification(
                        f"command {cid} was claimed by another unit meanwhile")
            for rid, version in self._expected.items():
                current = store.resources.get(rid)
                if (None if current is None else current.version) != version:
                    raise ConcurrentModification(
                        f"resource {rid} was changed by another unit meanwhile")
            store.processed.update(self._claimed)
            for cid, bump in self._bumps.items():  # UPDATE ... WHERE command_id
                if cid in store.processed:
                    row = store.processed[cid]
                    store.processed[cid] = replace(
                        row, duplicate_deliveries=row.duplicate_deliveries + bump)
            for cid, values in self._outcomes.items():
                store.processed[cid] = replace(store.processed[cid], **values)
            store.resources.update(self._rows)
            for outbox_row in self._outbox:
                store.outbox.append(replace(outbox_row, seq=store._next_seq))
                store._next_seq += 1
            for cid in self._unparked:
                store.parked.pop(cid, None)
            for entry in self._parked:
                store.parked[entry.incoming.command.command_id] = replace(
                    entry, seq=store._next_seq)
                store._next_seq += 1
                store.parked_resources.add(entry.incoming.command.resource_id)
            for cid, error in self._attempts.items():
                if cid in store.parked:
                    entry = store.parked[cid]
                    store.parked[cid] = replace(entry, attempts=entry.attempts + 1,
                                                error=entry.error)
                    store.parked_errors[cid] = error
            store.parked_resources -= {
                rid for rid in self._released
                if not any(p.incoming.command.resource_id == rid
                           for p in store.parked.values())}
            store.commits += 1
        self._done = True


class FakeOutboxReader:
    """:class:`~phoenix_resources.services.ports.OutboxReader` over a :class:`FakeStore`.

    Guarantees, as ``PostgresOutboxReader`` (checked by ``tests/contract``):

    * the store has one relay lock: :meth:`try_lead` takes it when free (or keeps it),
      :meth:`holds_lead` says whether it is this reader's, :meth:`close` releases it — as
      PostgreSQL releases an advisory lock when its session ends;
    * :meth:`end_session` (a test control) ends the reader's session under it: the lock is
      released, the next call raises :class:`DatabaseUnavailable`, and a reader that was
      leading keeps raising until :meth:`close` (it never leads on a new session unknowingly);
    * :meth:`fetch` returns committed outbox rows in ``seq`` order, skipping parked rows and
      every later row of a parked row's aggregate, each with its event id as text;
      :meth:`delete` removes rows by ``seq``; :meth:`settle` deletes the delivered and parks
      the refused at once (parked rows are the store's ``outbox_parked``, seen by every
      reader); :meth:`backlog` counts rows waiting and parked;
    * :meth:`prune_processed` drops recorded outcomes processed and issued before the window
      (by the store's clock), never a parked command's.

    Where it differs: :meth:`wait_for_commit` returns at once (nothing here blocks).

    ``calls`` lists the methods called, in order, and ``deleted`` every ``seq`` deleted.
    ``on_call(name)`` runs at the start of each call: a test stops the relay there, or
    raises to simulate an outage. :meth:`fail_parking` makes the next :meth:`settle` fail
    after its delete, before its park (as a database failing mid-transaction).
    """

    def __init__(self, store: FakeStore,
                 on_call: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.on_call = on_call
        self.calls: list[str] = []
        self.deleted: list[int] = []
        self._leading = False
        self._ended = False
        self._fail_parking = False

    # --- test controls ---------------------------------------------------------------------

    def end_session(self) -> None:
        """The session ends (killed, timed out, cut off): its lock goes with it."""
        self._ended = True
        self._release()

    def fail_parking(self) -> None:
        self._fail_parking = True

    # --- OutboxReader ----------------------------------------------------------------------

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self.on_call is not None:
            self.on_call(name)
        if self._ended:
            # The first call finds the session gone; a leader's reader refuses to go on
            # until closed, a standby's opens a new session on the next call.
            self._ended = self._leading
            raise DatabaseUnavailable("the leader's session ended; its lock went with it"
                                      if self._leading else "the session ended")

    def _release(self) -> None:
        with self.store._mutex:
            if self.store.relay_lock is self:
                self.store.relay_lock = None

    def try_lead(self) -> bool:
        self._enter("try_lead")
        with self.store._mutex:
            if self.store.relay_lock is None:
                self.store.relay_lock = self
            self._leading = self._leading or self.store.relay_lock is self
            return self.store.relay_lock is self

    def holds_lead(self) -> bool:
        self._enter("holds_lead")
        return self.store.relay_lock is self

    def fetch(self, limit: int) -> list[OutboxRow]:
        self._enter("fetch")
        with self.store._mutex:
            rows = sorted(self.store.outbox, key=lambda r: r.seq)
            parked = self.store.outbox_parked
        first_parked: dict[str, int] = {}
        for r in rows:
            if r.seq in parked:
                first_parked.setdefault(r.aggregateid, r.seq)
        fetched = [r for r in rows if r.seq < first_parked.get(r.aggregateid, r.seq + 1)]
        return [r.fetched() for r in fetched[:limit]]

    def delete(self, seqs: Sequence[int]) -> None:
        self._enter("delete")
        self._delete(seqs)

    def _delete(self, seqs: Sequence[int]) -> None:
        gone = set(seqs)
        with self.store._mutex:
            self.store.outbox = [r for r in self.store.outbox if r.seq not in gone]
            for seq in gone:
                self.store.outbox_parked.pop(seq, None)
        self.deleted.extend(seqs)

    def settle(self, delivered: Sequence[int], parked: Sequence[tuple[int, str]]) -> None:
        self._enter("settle")
        if self._fail_parking:  # the transaction's delete is rolled back with it
            self._fail_parking = False
            raise DatabaseUnavailable("the session failed before the park")
        self._delete(delivered)
        with self.store._mutex:
            present = {r.seq for r in self.store.outbox}
            self.store.outbox_parked.update((s, why) for s, why in parked if s in present)

    def backlog(self) -> tuple[int, int]:
        self._enter("backlog")
        with self.store._mutex:
            parked = sum(1 for r in self.store.outbox if r.seq in self.store.outbox_parked)
            return len(self.store.outbox) - parked, parked

    def wait_for_commit(self, timeout: float) -> None:
        self._enter("wait_for_commit")

    def prune_processed(self, older_than_s: float) -> int:
        self._enter("prune_processed")
        cutoff = self.store.clock() - timedelta(seconds=older_than_s)
        with self.store._mutex:
            old = [cid for cid, row in self.store.processed.items()
                   if row.processed_at < cutoff and row.outcome != "parked"
                   and (row.issued_at is None or row.issued_at < cutoff)]
            for cid in old:
                del self.store.processed[cid]
        return len(old)

    def close(self) -> None:
        self.calls.append("close")
        if self.on_call is not None:
            self.on_call("close")
        self._release()
        self._leading = False
        self._ended = False


# --- Kafka ---------------------------------------------------------------------------------


def _error(code: int) -> KafkaException:
    return KafkaException(KafkaError(code))


class FakeConsumer:
    """The subset of ``confluent_kafka.Consumer`` the worker uses, configured as
    ``adapters.kafka.new_consumer`` configures the real one (manual offset storage,
    auto-commit of stored offsets, ``auto.offset.reset=earliest``).

    Tests fill partition logs with :meth:`append` and move the group with
    :meth:`schedule_assign` / :meth:`schedule_revoke` / :meth:`schedule_lost`. As with
    librdkafka, rebalance callbacks run only inside :meth:`consume`, :meth:`poll` and
    :meth:`close`, on the caller's thread:

    * :meth:`subscribe` schedules the assignment of every partition of the topics (or of
      ``initial_assignment``);
    * an assigned partition is fetched from its committed offset (0 if none); stored offsets
      of a partition are forgotten when it leaves the assignment;
    * on revoke, ``on_revoke`` runs while the partitions are still assigned, then (with
      ``auto_commit``) their stored offsets are committed, as librdkafka does on unassign;
    * on lost, ``on_lost`` (else ``on_revoke``) runs; :meth:`commit` raises
      ``_ASSIGNMENT_LOST`` meanwhile, and nothing of the lost partitions is committed;
    * :meth:`store_offsets` stores offsets of assigned partitions only; when it can store
      none of the given ones it raises the last one's error, as librdkafka does:
      ``_UNKNOWN_PARTITION`` for a partition of a topic not subscribed, ``_STATE`` for one
      not assigned;
    * :meth:`commit` without offsets commits stored offsets newer than the committed ones,
      and raises ``_NO_OFFSET`` when there are none;
    * paused partitions yield nothing (unless :meth:`slip_through_pause`); a pause outlives
      the assignment, as librdkafka's does: a paused partition revoked or lost, then assigned
      again, is still paused until :meth:`resume`;
    * :meth:`unsubscribe` revokes the whole assignment (at the next call that serves
      rebalances);
    * only assigned partitions can be paused: inside ``on_assign`` the new partitions are
      assigned when the callback returns, unless it assigns them itself with
      :meth:`incremental_assign` — a pause made before that is lost, as with librdkafka
      (``tests/contract/test_kafka_fakes.py``);
    * :meth:`close` revokes the whole assignment (committing stored offsets with
      ``auto_commit``); afterwards every other method raises ``RuntimeError`` like the real
      one, and :meth:`close` does nothing.

    Records carry the headers they were appended with (``None`` when none, as the real
    client hands them out). :meth:`new_member` makes another consumer of the same group.

    Not modelled: the periodic auto-commit timer (stored offsets are committed only by
    :meth:`commit`, revoke and close), partition EOF and error events (but for
    :meth:`emit_error`), record timestamps
    (none: the broker would stamp each with its create time), timeouts (a call that finds
    nothing returns at once, advancing :attr:`clock` by its timeout).

    Recorded for assertions: ``stored`` (current), ``committed`` (the group's offsets),
    ``store_calls`` (every :meth:`store_offsets` request, as asked), ``commits`` (each
    successful commit), ``seeks``, ``paused``. ``on_call(name)`` runs at the start of every
    :meth:`consume` / :meth:`poll`; ``on_idle()`` when :meth:`consume` finds nothing.
    """

    def __init__(self, partitions: Mapping[str, int], *, auto_commit: bool = True,
                 initial_assignment: Iterable[TP] | None = None,
                 clock: FakeClock | None = None) -> None:
        self.logs: dict[TP, list[Message]] = {
            (t, p): [] for t, n in partitions.items() for p in range(n)}
        self.initial_assignment = None if initial_assignment is None else list(
            initial_assignment)
        self.auto_commit = auto_commit
        self.clock = clock or FakeClock()
        self.assigned: set[TP] = set()
        self.paused: set[TP] = set()
        self._topics: set[str] = set()
        self.positions: dict[TP, int] = {}
        self.stored: dict[TP, int] = {}
        self.committed: dict[TP, int] = {}
        self.store_calls: list[dict[TP, int]] = []
        self.commits: list[dict[TP, int]] = []
        self.seeks: list[tuple[TP, int]] = []
        self.closed = False
        self.on_call: Callable[[str], None] | None = None
        self.on_idle: Callable[[], None] | None = None
        self._events: deque[tuple[str, list[TP]]] = deque()
        self._callbacks: dict[str, Callable[[Any, list[TopicPartition]], None] | None] = {}
        self._lost = False
        self._slip = 0
        self._errors: deque[int] = deque()

    # --- test controls ---------------------------------------------------------------------

    def add_topic(self, topic: str, partitions: int) -> None:
        """A topic created after this consumer (its logs start empty)."""
        for p in range(partitions):
            self.logs.setdefault((topic, p), [])

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        """The topics' partitions, as the broker's metadata lists them."""
        meta = ClusterMetadata()
        for name in sorted({t for t, _ in self.logs} if topic is None else {topic}):
            found = TopicMetadata()
            found.topic = name
            found.partitions = {p: PartitionMetadata() for t, p in self.logs if t == name}
            meta.topics[name] = found
        return meta

    def new_member(self) -> FakeConsumer:
        """Another consumer of this one's group (the next process, a replacement): it reads
        the same partition logs and shares the group's committed offsets."""
        other = FakeConsumer({}, auto_commit=self.auto_commit, clock=self.clock)
        other.logs, other.committed = self.logs, self.committed
        return other

    def append(self, topic: str, partition: int, value: bytes | None, key: bytes | None = None,
               headers: Sequence[tuple[str, bytes]] | None = None) -> Message:
        log = self.logs[(topic, partition)]
        message = Message(topic=topic, partition=partition, offset=len(log), key=key,
                          value=value, headers=list(headers) if headers else None)
        log.append(message)
        return message

    def schedule_assign(self, *tps: TP) -> None:
        self._events.append(("assign", list(tps)))

    def schedule_revoke(self, *tps: TP) -> None:
        self._events.append(("revoke", list(tps)))

    def schedule_lost(self, *tps: TP) -> None:
        self._events.append(("lost", list(tps)))

    def emit_error(self, code: int) -> None:
        """The next :meth:`consume` / :meth:`poll` returns an error event with ``code`` (as
        librdkafka hands it out: ``fatal()`` is False even for ``_FATAL``), before any
        record."""
        self._errors.append(code)

    def slip_through_pause(self, count: int = 1) -> None:
        """Let the next ``count`` fetched messages come from paused partitions too (messages
        prefetched before a pause can still be returned)."""
        self._slip += count

    # --- the Consumer API ------------------------------------------------------------------

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None,
                  on_lost: Any = None) -> None:
        self._check_open()
        self._callbacks = {"assign": on_assign, "revoke": on_revoke,
                           "lost": on_lost or on_revoke}
        self._topics = set(topics)
        initial = self.initial_assignment
        if initial is None:
            initial = [tp for tp in self.logs if tp[0] in topics]
        self.schedule_assign(*sorted(initial))

    def unsubscribe(self) -> None:
        self._check_open()
        self._topics = set()
        self.schedule_revoke(*sorted(self.assigned))

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        self._check_open()
        if self.on_call is not None:
            self.on_call("consume")
        self._serve_events()
        if self._errors:
            return [self._error_event()]
        messages = self._fetch(num_messages)
        if not messages:
            self.clock.advance(timeout)
            if self.on_idle is not None:
                self.on_idle()
        return messages

    def poll(self, timeout: float | None = None) -> Message | None:
        self._check_open()
        if self.on_call is not None:
            self.on_call("poll")
        self._serve_events()
        if self._errors:
            return self._error_event()
        messages = self._fetch(1)
        if not messages:
            self.clock.advance(timeout or 0.0)
            return None
        return messages[0]

    def store_offsets(self, message: Message | None = None,
                      offsets: list[TopicPartition] | None = None) -> None:
        self._check_open()
        if message is not None:
            asked = {(message.topic() or "", message.partition() or 0):
                     (message.offset() or 0) + 1}
        else:
            asked = {(tp.topic, tp.partition): tp.offset for tp in offsets or []}
        self.store_calls.append(dict(asked))
        ok = {tp: off for tp, off in asked.items() if tp in self.assigned}
        if asked and not ok:
            last = list(asked)[-1]
            raise _error(KafkaError._STATE if last[0] in self._topics and last in self.logs
                         else KafkaError._UNKNOWN_PARTITION)
        self.stored.update(ok)

    def commit(self, message: Message | None = None,
               offsets: list[TopicPartition] | None = None,
               asynchronous: bool = True) -> list[TopicPartition] | None:
        self._check_open()
        if self._lost:
            raise _error(KafkaError._ASSIGNMENT_LOST)
        if message is not None or offsets is not None:
            raise NotImplementedError("the fake commits stored offsets only")
        done = self._commit_stored(self.assigned)
        if not done:
            raise _error(KafkaError._NO_OFFSET)
        return None if asynchronous else [TopicPartition(t, p, o) for (t, p), o in done.items()]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._check_open()
        asked = {(tp.topic, tp.partition) for tp in partitions}
        self.paused |= asked & self.assigned

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        """Add to the assignment now (inside ``on_assign``: instead of when it returns)."""
        self._check_open()
        for tp in partitions:
            self._add((tp.topic, tp.partition))

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._check_open()
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        self._check_open()
        return 0, len(self.logs[(partition.topic, partition.partition)])

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        self._check_open()
        return [TopicPartition(tp.topic, tp.partition,
                               self.positions.get((tp.topic, tp.partition), -1001))
                for tp in partitions]

    def seek(self, partition: TopicPartition) -> None:
        self._check_open()
        tp = (partition.topic, partition.partition)
        if tp not in self.assigned:
            raise _error(KafkaError._UNKNOWN_PARTITION)
        self.positions[tp] = partition.offset
        self.seeks.append((tp, partition.offset))

    def close(self) -> None:
        if self.closed:
            return
        if self.assigned:
            self._revoke(sorted(self.assigned))
        self.closed = True

    # --- inside ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("Consumer closed")

    def _error_event(self) -> Message:
        return Message(error=KafkaError(self._errors.popleft()))

    def _serve_events(self) -> None:
        while self._events:
            kind, tps = self._events.popleft()
            if kind == "assign":
                self._assign(tps)
            elif kind == "revoke":
                self._revoke(tps)
            else:
                self._lose(tps)

    def _callback(self, kind: str, tps: Iterable[TP]) -> None:
        cb = self._callbacks.get(kind)
        if cb is not None:
            cb(self, [TopicPartition(t, p) for t, p in tps])

    def _assign(self, tps: list[TP]) -> None:
        self._callback("assign", tps)
        for tp in tps:
            self._add(tp)

    def _add(self, tp: TP) -> None:
        if tp not in self.assigned:
            self.assigned.add(tp)
            self.positions[tp] = self.committed.get(tp, 0)

    def _revoke(self, tps: list[TP]) -> None:
        tps = [tp for tp in tps if tp in self.assigned]
        self._callback("revoke", tps)
        if self.auto_commit:
            self._commit_stored(set(tps))
        self._unassign(tps)

    def _lose(self, tps: list[TP]) -> None:
        tps = [tp for tp in tps if tp in self.assigned]
        self._lost = True
        try:
            self._callback("lost", tps)
        finally:
            self._lost = False
        self._unassign(tps)

    def _unassign(self, tps: list[TP]) -> None:
        for tp in tps:
            self.assigned.discard(tp)
            self.positions.pop(tp, None)
            self.stored.pop(tp, None)

    def _commit_stored(self, tps: set[TP]) -> dict[TP, int]:
        done = {tp: off for tp, off in self.stored.items()
                if tp in tps and off > self.committed.get(tp, -1)}
        if done:
            self.committed.update(done)
            self.commits.append(dict(done))
        return done

    def _fetch(self, limit: int) -> list[Message]:
        """Round-robin over fetchable partitions, in (topic, partition) order."""
        out: list[Message] = []
        progress = True
        while len(out) < limit and progress:
            progress = False
            for tp in sorted(self.assigned):
                if len(out) >= limit:
                    break
                slipping = tp in self.paused
                if slipping and self._slip <= 0:
                    continue
                position = self.positions[tp]
                log = self.logs[tp]
                if position < len(log):
                    out.append(log[position])
                    self.positions[tp] = position + 1
                    self._slip -= slipping
                    progress = True
        return out


class FakeProducer:
    """The subset of ``confluent_kafka.Producer`` that ``publish_all`` and the worker use.

    :meth:`produce` queues; :meth:`poll` and :meth:`flush` deliver what is queued, calling
    each record's ``on_delivery(err, msg)`` with a real :class:`Message`. Each delivery gets
    the next verdict: ``"ack"`` (delivered: ``err`` is ``None``, the message has an offset),
    ``"fail"`` (``err`` is ``_MSG_TIMED_OUT``), ``"refuse:<code>"`` (a permanent refusal with
    that code, see :meth:`refuse_next` / :meth:`refuse_larger_than`) or ``"withhold"`` (no
    report: the record stays queued, and :meth:`flush` counts it as not delivered, until
    :meth:`release_withheld`).
    Verdicts come from :meth:`fail_next` / :meth:`withhold_next`, then ``default_verdict``.

    Topics exist unless named in ``absent_topics``: a record to an absent one is reported
    ``UNKNOWN_TOPIC_OR_PART``, and :meth:`list_topics` shows such a topic with that error (as
    a broker that does not create topics on demand answers).

    ``topic_limits`` is each topic's ``max.message.bytes``, as a broker applies it: the
    records one :meth:`poll` or :meth:`flush` serves to one partition form a batch, and a
    batch larger than the limit — its 61-byte header plus each record's
    :func:`~phoenix_resources.adapters.records.wire_size` (key, value and headers; an upper
    bound of the real size) — is refused whole with ``MSG_SIZE_TOO_LARGE``. A test may change
    a limit between calls, as an operator alters a topic.

    Not modelled: partitioning by key (records go to ``partition`` or 0), a full local queue
    (``BufferError``), timeouts (nothing waits).

    Recorded: ``produced`` (every record, in produce order), ``acknowledged``, ``failed``.
    """

    def __init__(self) -> None:
        self.default_verdict = "ack"
        self.absent_topics: set[str] = set()
        self.produced: list[Message] = []
        self.acknowledged: list[Message] = []
        self.failed: list[Message] = []
        self._verdicts: deque[str] = deque()
        self._queue: deque[tuple[Message, Callable[..., None] | None]] = deque()
        self._withheld: list[tuple[Message, Callable[..., None] | None]] = []
        self._offsets: dict[TP, int] = {}
        self._size_limit: tuple[int, int] | None = None
        self.topic_limits: dict[str, int] = {}

    def fail_next(self, count: int = 1) -> None:
        self._verdicts.extend(["fail"] * count)

    def withhold_next(self, count: int = 1) -> None:
        self._verdicts.extend(["withhold"] * count)

    def refuse_next(self, code: int, count: int = 1) -> None:
        """The broker refuses the next records with ``code`` (e.g. MSG_SIZE_TOO_LARGE)."""
        self._verdicts.extend([f"refuse:{code}"] * count)

    def refuse_larger_than(self, max_bytes: int, code: int) -> None:
        """A record whose value is longer than ``max_bytes`` is refused with ``code``, and so
        is every record batched with it — served by the same :meth:`poll` or :meth:`flush`
        to the same partition — as a broker refuses a whole batch that is too large."""
        self._size_limit = (max_bytes, code)

    def release_withheld(self) -> None:
        """Withheld records are queued again: the next poll/flush reports them."""
        self._queue.extend(self._withheld)
        self._withheld.clear()

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, *,
                partition: int = -1, on_delivery: Callable[..., None] | None = None,
                callback: Callable[..., None] | None = None, timestamp: int = 0,
                headers: Sequence[tuple[str, Any]] | None = None) -> None:
        message = Message(topic=topic, partition=max(partition, 0), key=key, value=value,
                          headers=list(headers or []))
        self.produced.append(message)
        self._queue.append((message, on_delivery or callback))

    def poll(self, timeout: float | None = None) -> int:
        served = 0
        limit = self._size_limit
        oversize = set() if limit is None else {
            (m.topic(), m.partition()) for m, _ in self._queue
            if len(m.value() or b"") > limit[0]}
        oversize |= self._batches_over_topic_limits()
        while self._queue:
            message, callback = self._queue.popleft()
            verdict = self._verdicts.popleft() if self._verdicts else self.default_verdict
            if (message.topic(), message.partition()) in oversize:
                verdict = f"refuse:{limit[1] if limit else KafkaError.MSG_SIZE_TOO_LARGE}"
            if message.topic() in self.absent_topics:
                verdict = f"refuse:{KafkaError.UNKNOWN_TOPIC_OR_PART}"
            if verdict == "withhold":
                self._withheld.append((message, callback))
                continue
            if verdict == "ack":
                tp = (message.topic() or "", message.partition() or 0)
                offset = self._offsets.get(tp, 0)
                self._offsets[tp] = offset + 1
                message = Message(topic=tp[0], partition=tp[1], offset=offset,
                                  key=message.key(), value=message.value(),
                                  headers=message.headers())
                self.acknowledged.append(message)
                error = None
            else:
                code = int(verdict.split(":")[1]) if verdict.startswith("refuse:") \
                    else KafkaError._MSG_TIMED_OUT
                error = KafkaError(code)
                message = Message(topic=message.topic(), partition=message.partition(),
                                  key=message.key(), value=message.value(),
                                  headers=message.headers(), error=error)
                self.failed.append(message)
            if callback is not None:
                callback(error, message)
            served += 1
        return served

    def _batches_over_topic_limits(self) -> set[tuple[str | None, int | None]]:
        sizes: dict[tuple[str | None, int | None], int] = {}
        for m, _ in self._queue:
            if m.topic() in self.topic_limits:
                tp = (m.topic(), m.partition())
                sizes[tp] = sizes.get(tp, RECORD_BATCH_OVERHEAD) + wire_size(
                    m.key(), m.value(), header_pairs(m))
        return {tp for tp, size in sizes.items() if size > self.topic_limits[tp[0] or ""]}

    def flush(self, timeout: float | None = None) -> int:
        self.poll(0)
        return len(self)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        """``topic`` (or every topic produced to), one partition each; an absent topic is
        listed with the error ``UNKNOWN_TOPIC_OR_PART``."""
        names = [topic] if topic is not None else sorted({m.topic() or "" for m in self.produced})
        meta = ClusterMetadata()
        for name in names:
            found = TopicMetadata()
            found.topic = name
            if name in self.absent_topics:
                found.error = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
            else:
                found.partitions = {0: PartitionMetadata()}
            meta.topics[name] = found
        return meta

    def __len__(self) -> int:
        return len(self._queue) + len(self._withheld)


def header(message: Message, name: str) -> bytes | None:
    """The last value of header ``name`` (tests' shorthand)."""
    found: bytes | None = None
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for key, value in pairs:
        if key == name:
            found = value.encode() if isinstance(value, str) else value
    return found
