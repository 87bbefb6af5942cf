"""The interfaces the use cases need from the outside world, and the values that cross them.

Adapters implement these (``adapters/postgres/batch_unit.py``); ``tests/fakes.py`` holds an
in-memory implementation, and ``tests/contract/`` runs one set of tests against both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol
from uuid import UUID

from phoenix_resources.domain.commands import AnyCommand
from phoenix_resources.domain.decide import Applied, Rejected
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
    * :meth:`write` raises :class:`~phoenix_resources.errors.ConcurrentModification` when a
      row is not at the version it was loaded at (another writer got there first);
    * state, outcomes, outbox rows and parked commands become visible together, at
      :meth:`commit`.
    """

    def __enter__(self) -> BatchUnit: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def claim(self, claims: Sequence[Claim]) -> set[UUID]:
        """Insert the claims; return the command ids that were new."""
        ...

    def load(self, resource_ids: set[UUID]) -> Snapshot:
        """Current rows and parked resources, locked until commit."""
        ...

    def write(self, outcomes: Sequence[tuple[Incoming, Outcome]],
              changes: Mapping[UUID, StateChange], now: datetime) -> None:
        """Persist state changes, outcomes, outbox rows and parked commands."""
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
