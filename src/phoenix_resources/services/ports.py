"""The interfaces the use cases need from the outside world, and the values that cross them.

Adapters implement these (``adapters/postgres/batch_unit.py``); ``tests/fakes.py`` holds an
in-memory implementation, and ``tests/contract/`` runs one set of tests against both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import NamedTuple, Protocol
from uuid import UUID

from phoenix_resources.domain.commands import AnyCommand
from phoenix_resources.domain.decide import Applied, Rejected
from phoenix_resources.domain.events import CommandRejected, ResourceChanged
from phoenix_resources.domain.model import Resource
from phoenix_resources.domain.rules import Misplaced, ParkCode


@dataclass(frozen=True, slots=True)
class Incoming:
    """A decoded command and where it came from."""

    command: AnyCommand
    partition: int
    offset: int
    traceparent: str | None = None
    key_matches: bool = True
    """The record's key is the command's ``resource_id`` (else it is refused, CMD-009)."""
    misplaced: Misplaced | None = None
    """The record is not in its key's partition (refused, CMD-011; the worker leaves this
    None when ``PHOENIX_PARTITION_CHECK=warn``)."""


@dataclass(frozen=True, slots=True)
class Claim:
    incoming: Incoming
    repeats: int
    """Further deliveries of the same command (id, resource, type) inside this batch."""
    reused: tuple[Incoming, ...] = ()
    """Deliveries of the id for another resource or type (CMD-012), in batch order."""


class Recorded(NamedTuple):
    """Whose a recorded ``command_id`` is: the resource and type it was recorded for."""

    resource_id: UUID
    command_type: str


@dataclass(frozen=True, slots=True)
class Parked:
    """Not applied: the command waits in the parking lot until replayed or discarded."""

    command: AnyCommand
    code: ParkCode
    error: str


Outcome = Applied | Rejected | Parked
"""What became of one fresh command in a batch."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What :meth:`BatchUnit.load` sees: committed rows (tombstones included), locked until
    commit, and which of the resources have commands in the parking lot."""

    states: dict[UUID, Resource]
    parked: frozenset[UUID]


@dataclass(frozen=True, slots=True)
class StateChange:
    """A resource's net change over one batch: as loaded, and after the last decision."""

    before: Resource | None
    after: Resource


class EventEncoder(Protocol):
    """What the outbox announces, as the bytes its topics carry (the wire format is not the
    use cases' business: ``EventCodec`` implements this)."""

    def encode_event(self, event: ResourceChanged) -> bytes: ...

    def encode_rejection(self, rejection: CommandRejected) -> bytes: ...


@dataclass(frozen=True, slots=True)
class OutboxFormat:
    """How the outbox rows of a batch are made: payloads by ``encoder``; an applied change's
    event goes to ``events_topic``, a refusal's announcement to ``rejections_topic``."""

    encoder: EventEncoder
    events_topic: str
    rejections_topic: str


class OutcomeRow(NamedTuple):
    """A command's ``processed_commands`` row: its one recorded outcome.

    The two rows made per command (this and :class:`OutboxEntry`) are named tuples, not
    frozen dataclasses: as immutable and typed, built for a quarter of the cost (12 fields
    set through ``object.__setattr__``: ~19k instructions, a named tuple's ~4k, of the
    worker's ~375k per command), and turned into column arrays in one ``zip``."""

    command_id: UUID
    resource_id: UUID
    command_type: str
    outcome: str
    """``applied``, ``rejected`` or ``parked``."""
    error_code: str | None
    error_message: str | None
    resulting_version: int | None
    duplicate_deliveries: int
    """Further deliveries seen so far (in the claiming batch)."""
    correlation_id: str | None
    source_partition: int
    source_offset: int
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class ParkingEntry:
    """A command joining the parking lot, behind its resource's earlier parked commands."""

    incoming: Incoming
    reason: str
    """The park code (``PRK-…``)."""
    error: str


class OutboxEntry(NamedTuple):
    """An outbox row: what the relay publishes, as it will publish it (a named tuple, like
    :class:`OutcomeRow`)."""

    event_id: UUID
    aggregate_id: str
    """The record key: the resource id as text."""
    type: str
    topic: str
    payload: bytes
    occurred_at: datetime
    traceparent: str | None


@dataclass(frozen=True, slots=True)
class BatchRows:
    """Every row one :meth:`BatchUnit.write` stores, made by the use case; the unit maps
    each field to its columns and decides nothing.

    ``claimed`` rows are inserted (each is the claim of a command :meth:`BatchUnit.claim`
    found new); ``recorded`` rows replace the outcome of a command recorded earlier (a parked
    command replayed or discarded): only ``outcome``, ``error_code``, ``error_message``,
    ``resulting_version`` and ``processed_at`` change. ``repeated`` adds deliveries to the
    counter of commands recorded earlier. ``created`` rows are inserted, ``changed`` rows
    updated where the row is still at ``before.version``. ``parked`` and ``outbox`` are kept
    in the order given (per resource, that is the order of decisions)."""

    processed_at: datetime
    claimed: Sequence[OutcomeRow] = ()
    recorded: Sequence[OutcomeRow] = ()
    repeated: Mapping[UUID, int] = field(default_factory=dict)
    created: Sequence[Resource] = ()
    changed: Sequence[StateChange] = ()
    parked: Sequence[ParkingEntry] = ()
    outbox: Sequence[OutboxEntry] = ()


class BatchUnit(Protocol):
    """One database transaction over the batch tables. Used as a context manager: leaving
    it without :meth:`commit` rolls back, and nothing of the batch is visible to anyone.

    Guarantees an implementation must keep (``tests/contract/test_batch_unit.py``):

    * :meth:`claim` finds every id some committed unit claimed, with the resource and type
      it was claimed for, and no other (a rolled-back unit's claims are forgotten);
    * :meth:`load` returns committed rows (tombstones included) and the resources with parked
      commands; a concurrent replay of a resource's parked commands either finishes before
      (the resource is no longer parked) or waits for this unit (and then replays what this
      unit parked behind it);
    * :meth:`write` stores exactly the rows it is given, and raises
      :class:`~phoenix_resources.errors.ConcurrentModification` when a claimed command is
      recorded already, a created row exists, or a changed row is not at the version it was
      loaded at (another writer got there first);
    * state, outcomes, outbox rows and parked commands become visible together, at
      :meth:`commit`."""

    def __enter__(self) -> BatchUnit: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def claim(self, claims: Sequence[Claim]) -> dict[UUID, Recorded]:
        """The claims' command ids a committed unit recorded, with whose each is; the others
        are new (:meth:`write` records them with their outcome, as ``claimed`` rows)."""
        ...

    def load(self, resource_ids: set[UUID]) -> Snapshot:
        """Current rows and parked resources, locked until commit."""
        ...

    @property
    def outbox_format(self) -> OutboxFormat:
        """How the use case makes this unit's outbox rows. It travels with the unit so that
        every use case on a deployment's units makes the same rows; the unit never reads it."""
        ...

    def write(self, rows: BatchRows) -> None:
        """Store ``rows`` (state changes, outcomes, parked commands, outbox rows) as given."""
        ...

    def commit(self) -> None: ...

    def check_writable(self) -> None:
        """Raise a :class:`~phoenix_resources.errors.TransientError` unless this unit's
        database can do a batch's work now: a primary, not read-only, with the privileges
        the batch tables need. The isolation asks before parking a command that nothing else
        of its batch could be compared with (``services/isolate.py``)."""
        ...


@dataclass(frozen=True, slots=True)
class ParkedCommand:
    """A command in the parking lot, as a replay sees it."""

    seq: int
    incoming: Incoming
    code: str
    error: str
    attempts: int


class ReplayUnit(BatchUnit, Protocol):
    """The batch unit's transaction, plus the parking lot's queue of one resource.

    :meth:`lock_queue` locks the resource's queue against concurrent parking until commit:
    a worker that would park a command behind it waits, and then sees what the replay left."""

    def __enter__(self) -> ReplayUnit: ...

    def lock_queue(self, resource_id: UUID) -> list[ParkedCommand]:
        """The resource's parked commands in parking order (empty when none)."""
        ...

    def unpark(self, resource_id: UUID, command_ids: Sequence[UUID]) -> None:
        """Remove these commands from the lot; the resource leaves it when none are left."""
        ...

    def note_attempt(self, command_id: UUID, error: str) -> None:
        """Record a failed replay attempt (count, time, error) on the parked command."""
        ...


# --- the relay: outbox rows out to the broker ----------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A committed outbox row, as the relay reads it."""

    seq: int
    """Its place in commit-safe order: per resource, ``seq`` order is version order."""
    id: str
    """The event id as text (it is only ever written into a header)."""
    aggregateid: str
    """The resource id: the record's key."""
    type: str
    """The event's type name (``ResourceCreated`` …)."""
    topic: str
    payload: bytes
    """The encoded event: the record's value."""
    occurred_at: datetime
    traceparent: str | None
    """The W3C trace context of the command that caused it, if it had one."""


class OutboxReader(Protocol):
    """The relay's own database session: the leadership lock and the outbox.

    Guarantees an implementation must keep (``tests/contract/test_outbox_reader.py``):

    * **Leadership is exclusive.** At most one reader of a database holds the lead at a time.
      :meth:`try_lead` takes it when free (and keeps it when already held); the lead is held
      until :meth:`close` or until the session ends, whichever comes first — then any reader
      may take it. :meth:`holds_lead` says, on the reader's own session, whether it holds the
      lead now. A reader whose session ended while leading never goes on as if it led: every
      call raises :class:`~phoenix_resources.errors.TransientError` until :meth:`close`.
    * **Fetch order.** :meth:`fetch` returns up to ``limit`` committed rows in ascending
      ``seq``, skipping every parked row and every later row of a parked row's resource (a
      resource's rows never overtake each other); rows of other resources are not held back.
    * :meth:`delete` removes rows by ``seq``; :meth:`settle` deletes the delivered rows and
      parks the refused ones with their reason in one transaction: both or neither.
      A parked row stays parked for every reader until an operator retries or discards it.
    * :meth:`backlog` counts ``(rows waiting to be published, rows parked)`` now; rows held
      behind a parked row count as waiting.
    * :meth:`wait_for_commit` returns at the first commit of new outbox rows after the lead
      was taken, or after ``timeout`` seconds.
    * :meth:`prune_processed` deletes recorded command outcomes older than the window (by
      both the time they were processed and the time they were issued), never a parked
      command's, and returns how many it deleted.

    Failures of the database are raised as
    :class:`~phoenix_resources.errors.DatabaseUnavailable`."""

    def try_lead(self) -> bool:
        """Take the lead if it is free; True when this reader holds it now."""
        ...

    def holds_lead(self) -> bool:
        """Whether this reader holds the lead now (asked on its own session)."""
        ...

    def close(self) -> None:
        """End the session, and with it the lead. The next call starts a new session."""
        ...

    def fetch(self, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` publishable rows in ``seq`` order (see the class docstring)."""
        ...

    def delete(self, seqs: Sequence[int]) -> None:
        """Delete these rows (those already gone are ignored)."""
        ...

    def settle(self, delivered: Sequence[int], parked: Sequence[tuple[int, str]]) -> None:
        """In one transaction: delete ``delivered``, park each ``(seq, reason)`` of
        ``parked``."""
        ...

    def backlog(self) -> tuple[int, int]:
        """``(waiting, parked)`` row counts now."""
        ...

    def wait_for_commit(self, timeout: float) -> None:
        """Return on a worker's commit of outbox rows, or after ``timeout`` seconds."""
        ...

    def prune_processed(self, older_than_s: float) -> int:
        """Delete command outcomes older than ``older_than_s``; return how many."""
        ...


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A row the broker refused for good: sending the same bytes again cannot succeed."""

    row: OutboxRow
    reason: str
    """The broker's answer, ``CODE: text``."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of the rows given to :meth:`EventPublisher.publish`, each in exactly one
    of the three, in the order they were given."""

    delivered: Sequence[OutboxRow]
    """Acknowledged by the broker."""
    refused: Sequence[RefusedRow] = ()
    held: Sequence[OutboxRow] = ()
    """Not sent: an earlier row of the call with the same topic and key was refused."""

    @property
    def complete(self) -> bool:
        """Every row was delivered."""
        return not self.refused and not self.held


class EventPublisher(Protocol):
    """Publishes outbox rows as events (CloudEvents binary mode: the payload is the data,
    keyed by the row's resource id, to the row's topic).

    Guarantees an implementation must keep:

    * :meth:`publish` returns only once every row it sent has a final delivery report;
    * within one call, the rows of one topic and key reach the broker in the given order,
      and no row is sent after an earlier row with the same topic and key was refused (it
      is *held*); rows sent before the refusal was known may have been delivered;
    * a failure that waiting could cure (broker down, timeouts, no leader …) raises
      :class:`~phoenix_resources.errors.TransientError` for the whole call, even when other
      rows were refused: nothing is reported refused while part of the call could still
      succeed. Calling again with the same rows can only repeat, never reorder, a
      partition's records (the event ids stay the same);
    * an unusable producer raises :class:`~phoenix_resources.errors.BrokerFatal`."""

    def publish(self, rows: Sequence[OutboxRow],
                traceparents: Sequence[str | None] | None = None) -> Delivery:
        """Send ``rows``; ``traceparents`` (one per row, when given) replace the rows' own
        trace context (the publishing span's)."""
        ...

    def close(self) -> None:
        """Wait a bounded time for anything still in flight; the publisher is not used
        afterwards."""
        ...
