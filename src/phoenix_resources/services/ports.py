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
from phoenix_resources.domain.decide import Decision
from phoenix_resources.domain.model import Resource


@dataclass(frozen=True, slots=True)
class Incoming:
    """A decoded command and where it came from."""

    command: AnyCommand
    partition: int
    offset: int
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    incoming: Incoming
    repeats: int
    """Further deliveries of the same command_id inside this batch."""


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
    * :meth:`load` returns committed rows (tombstones included);
    * :meth:`write` raises :class:`~phoenix_resources.errors.ConcurrentModification` when a
      row is not at the version it was loaded at (another writer got there first);
    * state, outcomes and outbox rows become visible together, at :meth:`commit`.
    """

    def __enter__(self) -> BatchUnit: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def claim(self, claims: Sequence[Claim]) -> set[UUID]:
        """Insert the claims; return the command ids that were new."""
        ...

    def load(self, resource_ids: set[UUID]) -> dict[UUID, Resource]:
        """Current rows (tombstones included), locked until commit."""
        ...

    def write(self, decisions: Sequence[tuple[Incoming, Decision]],
              changes: Mapping[UUID, StateChange], now: datetime) -> None:
        """Persist state changes, outcomes and outbox rows."""
        ...

    def commit(self) -> None: ...
