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
from phoenix_resources.domain.rules import ParkCode


@dataclass(frozen=True, slots=True)
class Incoming:
    """A decoded command and where it came from."""

    command: AnyCommand
    partition: int
    offset: int
    traceparent: str | None = None
    key_matches: bool = True
    """The record's key is the command's ``resource_id`` (else it is refused, CMD-009)."""


@dataclass(frozen=True, slots=True)
class Claim:
    incoming: Incoming
    repeats: int
    """Further deliveries of the same command_id inside this batch."""


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
    frozen dataclasses: as immutable and as typed, built for a quarter of the cost (a frozen
    dataclass sets each field through ``object.__setattr__``: 12 fields cost ~19k
    instructions, a named tuple ~4k, the worker's whole path ~375k per command), and the
    adapter turns a batch of them into its column arrays in one ``zip``."""

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

    * :meth:`claim` returns only ids never claimed before, in any committed unit, and a
      rolled-back unit's claims are forgotten;
    * :meth:`load` returns committed rows (tombstones included) and the resources with parked
      commands; a concurrent replay of a resource's parked commands either finishes before
      (the resource is no longer parked) or waits for this unit (and then replays what this
      unit parked behind it);
    * :meth:`write` stores exactly the rows it is given, and raises
      :class:`~phoenix_resources.errors.ConcurrentModification` when a claimed command is
      recorded already, a created row exists, or a changed row is not at the version it was
      loaded at (another writer got there first);
    * state, outcomes, outbox rows and parked commands become visible together, at
      :meth:`commit`.
    """

    def __enter__(self) -> BatchUnit: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def claim(self, claims: Sequence[Claim]) -> set[UUID]:
        """The claims' command ids no committed unit recorded (:meth:`write` records them
        with their outcome, as ``claimed`` rows)."""
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
    a worker that would park a command behind it waits, and then sees what the replay left.
    """

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
