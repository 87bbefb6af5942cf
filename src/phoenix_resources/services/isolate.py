"""Apply a batch so that no single command can stop the others — and so that the environment
is never charged to a command: the parking lot's entry.

A batch is applied in one transaction. When that fails in a way no rule foresaw (PostgreSQL
refuses a row for its content — ``RowRefused`` —, or a bug raises), the failing command is
narrowed down by halving the batch: each half is applied in its own transaction, in order,
until a command that fails alone is found. Failures of the environment never get here: they
are :class:`~phoenix_resources.errors.TransientError` (an outage, a read-only node, a missing
privilege, an SQLSTATE nobody classified: ``adapters/postgres/errors.py``) and pause the
worker.

A command that fails alone is **held**, with every later command of its resource, until the
failure is proved to be the command's own:

* **proof by the batch's other commands**: another part of the batch commits (the same work
  succeeds for other commands on the same database) — then the held command is parked
  (PRK-001) and its resource's later commands behind it (PRK-002), in this batch and in every
  later one, until a replay or discard;
* **proof by the health check**, when there is nothing to compare with (every command of
  the batch belongs to the one resource that failed): the database is a writable primary
  with the privileges the batch needs (:meth:`BatchUnit.check_writable`);
* **no proof**: commands of two or more resources fail alone and nothing of the batch
  commits — the cause is common to them, not any command's. The whole remainder is put back
  and :class:`~phoenix_resources.errors.DatabaseRefused` is raised: the worker pauses and
  retries with backoff, as for an outage. Nothing is parked.

Guarantees:

* order per resource is kept: the halves run in offset order, a held command keeps its
  resource's later commands behind it, and a parked resource's later commands are parked,
  never applied around it;
* progress survives transient faults: a :class:`~phoenix_resources.errors.TransientError`
  propagates with the work still to do kept in :class:`Isolation`, and running it again
  resumes there (what already committed is not redone);
* a command that cannot even be parked (the parking itself fails for a reason of the
  command's own, once proved as above) is handed back in :attr:`Isolation.unparkable`, for
  the caller to dead-letter; its resource's later commands are applied as usual. If the
  parking fails for a transient reason, nothing is handed back: the worker pauses.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar
from uuid import UUID

from phoenix_resources.errors import DatabaseRefused, TransientError
from phoenix_resources.services.apply_batch import BatchReport, apply_batch
from phoenix_resources.services.ports import BatchUnit
from phoenix_resources.services.ports_encoded import BatchItem

ERROR_TEXT_MAX = 2000


def describe(error: BaseException) -> str:
    """A one-line account of an unexpected failure, fit for storing with the parked command."""
    text = f"{type(error).__module__}.{type(error).__qualname__}: {error}"
    cause = error.__cause__
    if cause is not None:
        text += f" (from {type(cause).__qualname__}: {cause})"
    text = " ".join(text.replace("\x00", "").split())
    return text[:ERROR_TEXT_MAX]


SYSTEMIC_AFTER = 8
"""Held failures of this many resources, with nothing of the batch committed, are taken for
a common cause without trying the rest of the batch (the halving would cost two
transactions per command)."""


Item = TypeVar("Item", bound=BatchItem)


class Apply(Protocol):
    """How one part of the batch is applied in one transaction:
    :func:`~phoenix_resources.services.apply_batch.apply_batch` (the reference), or the
    compiled hot path's :func:`~phoenix_resources.services.apply_encoded.apply_encoded`."""

    def __call__(self, unit: BatchUnit, batch: Sequence[BatchItem], now: datetime, *,
                 oldest: datetime | None = ...,
                 failed: Mapping[UUID, str] | None = ...) -> BatchReport: ...


@dataclass
class _Held(Generic[Item]):
    """A command that failed alone, waiting for proof, and its resource's later commands."""

    first: Item
    error: str
    behind: list[Item] = field(default_factory=list)

    @property
    def commands(self) -> list[Item]:
        return [self.first, *self.behind]


class Isolation(Generic[Item]):
    """The work of applying one batch; :meth:`run` may be called again after a transient
    fault and continues where it stopped. ``apply`` applies one part of the batch in one
    transaction (:class:`Apply`; the rules here are the same whichever it is)."""

    def __init__(self, batch: Sequence[Item], *, oldest: datetime | None = None,
                 apply: Apply | None = None) -> None:
        self._apply: Apply = apply or apply_batch  # type: ignore[assignment]
        self._pending: deque[list[Item]] = deque([list(batch)] if batch else [])
        self._held: list[_Held[Item]] = []
        self._proved = False
        """Some part of this batch committed: the database accepts the work."""
        self._oldest = oldest
        self.report = BatchReport()
        self.unparkable: list[tuple[Item, str]] = []
        self.splits = 0
        """How many times a failing batch was halved (0 when nothing failed)."""

    @property
    def done(self) -> bool:
        return not self._pending and not self._held

    def drop_partitions(self, partitions: set[int]) -> None:
        """Abandon the pending and held commands of ``partitions`` (revoked: their next owner
        redelivers them from the last committed offset)."""
        kept = ([i for i in chunk if i.partition not in partitions] for chunk in self._pending)
        self._pending = deque(chunk for chunk in kept if chunk)
        # A resource lives in one partition: a held command and its followers go together.
        self._held = [h for h in self._held if h.first.partition not in partitions]

    def run(self, new_unit: Callable[[], BatchUnit], now: datetime) -> BatchReport:
        while self._pending or self._held:
            while self._pending:
                chunk = self._pending[0]
                try:
                    self.report.add(self._apply(new_unit(), chunk, now, oldest=self._oldest))
                except TransientError:
                    raise
                except Exception as error:
                    self._isolate(chunk, error)
                    if not self._proved and len(self._held) >= SYSTEMIC_AFTER:
                        break
                else:
                    self._pending.popleft()
                    self._proved = True
            self._settle(new_unit, now)
        return self.report

    def _isolate(self, chunk: list[Item], error: Exception) -> None:
        self._pending.popleft()
        if len(chunk) > 1:
            middle = len(chunk) // 2
            self._pending.extendleft([chunk[middle:], chunk[:middle]])
            self.splits += 1
            return
        self._hold(chunk[0], describe(error))

    def _hold(self, item: Item, error: str) -> None:
        """Set ``item`` aside with its resource's later commands (order per resource)."""
        rid = item.command.resource_id
        held = _Held(item, error)
        rest: deque[list[Item]] = deque()
        for chunk in self._pending:
            held.behind += [i for i in chunk if i.command.resource_id == rid]
            others = [i for i in chunk if i.command.resource_id != rid]
            if others:
                rest.append(others)
        self._pending = rest
        self._held.append(held)

    def _settle(self, new_unit: Callable[[], BatchUnit], now: datetime) -> None:
        """Park what the batch proved to be the commands' own; else put it all back and
        pause (see the module's docstring)."""
        if not self._held:
            return
        if not self._proved:
            if len(self._held) > 1:
                message = (f"commands of {len(self._held)} resources failed alone and nothing "
                           f"of the batch committed: a common cause, not any command's "
                           f"(first: {self._held[0].error})")
                self._put_back()
                raise DatabaseRefused(message)
            with new_unit() as unit:
                unit.check_writable()
        while self._held:
            held = self._held[0]
            failed = {held.first.command.command_id: held.error}
            try:
                self.report.add(self._apply(new_unit(), held.commands, now,
                                            oldest=self._oldest, failed=failed))
            except TransientError:
                raise
            except Exception as park_error:
                self.unparkable.append((held.first, describe(park_error)))
                if held.behind:
                    self._pending.append(held.behind)
            self._held.pop(0)

    def _put_back(self) -> None:
        """Everything not committed goes back to be tried afresh (held commands first: they
        came first in the batch), in order per resource."""
        held = [i for h in self._held for i in h.commands]
        pending = [i for chunk in self._pending for i in chunk]
        self._pending = deque([held + pending])
        self._held = []
