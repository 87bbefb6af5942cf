"""Apply a batch so that no single command can stop the others: the parking lot's entry.

A batch is applied in one transaction. When that fails in a way no rule foresaw (PostgreSQL
refuses a row, a bug raises), the failing command is narrowed down by halving the batch: each
half is applied in its own transaction, in order, until the one command that fails alone is
found. That command is parked (PRK-001); every later command of its resource is parked behind
it (PRK-002), in this batch and in every later one, until a replay or discard. Other resources
keep flowing.

Guarantees:

* order per resource is kept: the halves run in offset order, and a parked resource's later
  commands are parked, never applied around it;
* progress survives transient faults: a :class:`~phoenix_resources.errors.TransientError`
  propagates with the work still to do kept in :class:`Isolation`, and running it again
  resumes there (what already committed is not redone);
* a command that cannot even be parked (the parking itself fails for a non-transient reason)
  is handed back in :attr:`Isolation.unparkable`, for the caller to dead-letter.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime

from phoenix_resources.errors import TransientError
from phoenix_resources.services.apply_batch import BatchReport, apply_batch
from phoenix_resources.services.ports import BatchUnit, Incoming

ERROR_TEXT_MAX = 2000


def describe(error: BaseException) -> str:
    """A one-line account of an unexpected failure, fit for storing with the parked command."""
    text = f"{type(error).__module__}.{type(error).__qualname__}: {error}"
    cause = error.__cause__
    if cause is not None:
        text += f" (from {type(cause).__qualname__}: {cause})"
    text = " ".join(text.replace("\x00", "").split())
    return text[:ERROR_TEXT_MAX]


class Isolation:
    """The work of applying one batch; :meth:`run` may be called again after a transient
    fault and continues where it stopped."""

    def __init__(self, batch: Sequence[Incoming], *, oldest: datetime | None = None) -> None:
        self._pending: deque[list[Incoming]] = deque([list(batch)] if batch else [])
        self._oldest = oldest
        self.report = BatchReport()
        self.unparkable: list[tuple[Incoming, str]] = []
        self.splits = 0
        """How many times a failing batch was halved (0 when nothing failed)."""

    @property
    def done(self) -> bool:
        return not self._pending

    def drop_partitions(self, partitions: set[int]) -> None:
        """Abandon the pending commands of ``partitions`` (revoked: their next owner
        redelivers them from the last committed offset)."""
        kept = ([i for i in chunk if i.partition not in partitions] for chunk in self._pending)
        self._pending = deque(chunk for chunk in kept if chunk)

    def run(self, new_unit: Callable[[], BatchUnit], now: datetime) -> BatchReport:
        while self._pending:
            chunk = self._pending[0]
            try:
                self.report.add(apply_batch(new_unit(), chunk, now, oldest=self._oldest))
            except TransientError:
                raise
            except Exception as error:
                self._isolate(new_unit, chunk, error, now)
            else:
                self._pending.popleft()
        return self.report

    def _isolate(self, new_unit: Callable[[], BatchUnit], chunk: list[Incoming],
                 error: Exception, now: datetime) -> None:
        if len(chunk) > 1:
            middle = len(chunk) // 2
            self._pending.popleft()
            self._pending.extendleft([chunk[middle:], chunk[:middle]])
            self.splits += 1
            return
        item = chunk[0]
        failed = {item.command.command_id: describe(error)}
        try:
            self.report.add(apply_batch(new_unit(), chunk, now, oldest=self._oldest,
                                        failed=failed))
        except TransientError:
            raise
        except Exception as park_error:
            self.unparkable.append((item, describe(park_error)))
        self._pending.popleft()
