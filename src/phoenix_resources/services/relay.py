"""The relay's rules: outbox rows → events, in commit-safe order, at least once.

:class:`OutboxRelay` drives an :class:`~phoenix_resources.services.ports.OutboxReader` and an
:class:`~phoenix_resources.services.ports.EventPublisher`; the process around it
(``entrypoints/relay.py``) retries it through transient faults and records what it reports
to a :class:`RelayObserver`. What it guarantees, and where each guarantee is kept:

* **One active relay.** Only the reader holding the lead publishes (the reader's exclusive
  lead; a standby tries again every ``poll_interval_s``). Right before each publish the
  leader confirms, on its own session, that it still holds the lead; when it does not, it
  steps down and publishes nothing. A reader whose session ended raises
  :class:`~phoenix_resources.errors.TransientError` instead of going on, and the process steps
  down on every transient fault (:meth:`OutboxRelay.step_down` closes the session, which
  releases the lead).
* **Delete only after delivery.** Rows are fetched in ``seq`` order and handed to the
  publisher as one batch; they are deleted only once :meth:`EventPublisher.publish` has
  returned, that is once every delivery report is in. A transient failure raises out of
  :meth:`OutboxRelay.publish_once` with nothing deleted, and the batch is fetched and
  published again (same event ids); a crash between delivery and delete repeats events too.
* **Park what the broker refuses for good.** A refused row is parked in the same
  transaction that deletes the batch's delivered rows (:meth:`OutboxReader.settle`); rows
  held behind it are left as they are. The reader's fetch skips parked rows and every later
  row of their resource, so that resource's events wait in order while every other
  resource's flow, until an operator retries or discards the parked row
  (``phoenix-resources outbox list|retry|discard``).
* **Order per resource.** ``seq`` order is version order per resource (the worker's
  transaction holds the resource's row lock when it inserts the outbox row); the publisher
  keeps a resource's rows in order within a batch, and holds those behind a refused one.
* **Woken by commits.** When a batch was not full the leader waits for a worker's commit,
  at most ``poll_interval_s``.
* **Housekeeping while leading.** Every :data:`BACKLOG_REFRESH_S` the leader counts the
  backlog (rows waiting, rows parked: :attr:`OutboxRelay.parked_rows`), and every
  ``prune_interval_s`` it prunes recorded command outcomes past the retention window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from phoenix_resources.services.ports import (
    Delivery,
    EventPublisher,
    OutboxReader,
    OutboxRow,
    RefusedRow,
)

BACKLOG_REFRESH_S = 5.0
"""How often the leader recounts the backlog (an operator's retry or discard changes it)."""


@dataclass(frozen=True, slots=True)
class RelayPolicy:
    batch_size: int
    """Rows fetched and published at once."""
    poll_interval_s: float
    """A standby's wait between attempts to lead; the leader's longest wait for a commit."""
    prune_interval_s: float
    processed_retention_s: float
    """Recorded command outcomes older than this are pruned."""


class RelayObserver(Protocol):
    """What the relay reports as it goes (metrics, logs, readiness live behind this)."""

    def took_lead(self) -> None: ...

    def stepped_down(self, was_leading: bool) -> None:
        """The lead is given up (``was_leading``: it was held until now)."""
        ...

    def fetched(self, rows: Sequence[OutboxRow]) -> None:
        """A fetch returned ``rows`` (empty: the outbox has nothing to publish)."""
        ...

    def published(self, rows: Sequence[OutboxRow]) -> None:
        """``rows`` were acknowledged by the broker and deleted."""
        ...

    def parked(self, refused: RefusedRow, published_behind: Sequence[int]) -> None:
        """A row was parked; ``published_behind`` are the ``seq`` of later rows of its
        resource that were already in flight, and delivered, when the refusal came."""
        ...

    def backlog(self, waiting: int, parked: int) -> None: ...

    def pruned(self, rows: int) -> None:
        """``rows`` recorded outcomes were pruned (called only when some were)."""
        ...


class Unobserved:
    """A :class:`RelayObserver` that records nothing."""

    def took_lead(self) -> None:
        pass

    def stepped_down(self, was_leading: bool) -> None:
        pass

    def fetched(self, rows: Sequence[OutboxRow]) -> None:
        pass

    def published(self, rows: Sequence[OutboxRow]) -> None:
        pass

    def parked(self, refused: RefusedRow, published_behind: Sequence[int]) -> None:
        pass

    def backlog(self, waiting: int, parked: int) -> None:
        pass

    def pruned(self, rows: int) -> None:
        pass


class OutboxRelay:
    """The relay's rules over its two ports (see the module's docstring). Not thread-safe:
    one thread drives it, calling :meth:`run_round` until told to stop and
    :meth:`step_down` after a fault and at the end."""

    def __init__(self, reader: OutboxReader, publisher: EventPublisher, policy: RelayPolicy,
                 *, observer: RelayObserver | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 pause: Callable[[float], object] = time.sleep) -> None:
        self.reader = reader
        self.publisher = publisher
        self.policy = policy
        self.observer: RelayObserver = observer or Unobserved()
        self._clock = clock
        self._pause = pause
        self.leading = False
        self.parked_rows = 0
        """Outbox rows parked after a permanent refusal, as of the last count."""
        self._next_backlog = 0.0
        self._next_prune = 0.0

    def run_round(self) -> None:
        """One turn: a standby tries to lead, and pauses ``poll_interval_s`` when it cannot;
        the leader publishes a batch, keeps house, and — when the batch was not full — waits
        for a worker's commit (at most ``poll_interval_s``)."""
        if not self.leading and not self.lead():
            self._pause(self.policy.poll_interval_s)
            return
        published = self.publish_once()
        if not self.leading:
            return
        self.housekeep()
        if published < self.policy.batch_size:
            self.reader.wait_for_commit(self.policy.poll_interval_s)

    def lead(self) -> bool:
        """Take the lead if it is free."""
        if not self.reader.try_lead():
            return False
        self.leading = True
        self.observer.took_lead()
        self._next_backlog = 0.0  # count at once: another leader's parking is news to us
        return True

    def step_down(self) -> None:
        """Give up the lead: closing the reader's session releases it."""
        was_leading, self.leading = self.leading, False
        self.observer.stepped_down(was_leading)
        self.reader.close()

    def publish_once(self) -> int:
        """Publish one batch; returns the number of rows fetched (0 also when the lead turned
        out to be gone). Delivered rows are deleted only after every delivery report is in;
        refused ones are parked in that same step."""
        rows = self.reader.fetch(self.policy.batch_size)
        self.observer.fetched(rows)
        if not rows:
            return 0
        if not self.reader.holds_lead():
            self.step_down()
            return 0
        delivery = self.publisher.publish(rows)
        if delivery.complete:
            self.reader.delete([r.seq for r in rows])
            self.observer.published(rows)
        else:
            self._settle(delivery)
        return len(rows)

    def _settle(self, delivery: Delivery) -> None:
        delivered = delivery.delivered
        # Held rows (behind a refused one of their resource) stay as they are: the next
        # fetch skips them, behind the parked row.
        self.reader.settle([r.seq for r in delivered],
                           [(p.row.seq, p.reason) for p in delivery.refused])
        self.observer.published(delivered)
        for refused in delivery.refused:
            row = refused.row
            # in flight before the refusal was known; cannot be taken back
            ahead = [r.seq for r in delivered
                     if r.aggregateid == row.aggregateid and r.seq > row.seq]
            self.observer.parked(refused, ahead)
        self.count_backlog()

    def count_backlog(self) -> None:
        waiting, self.parked_rows = self.reader.backlog()
        self.observer.backlog(waiting, self.parked_rows)
        self._next_backlog = self._clock() + BACKLOG_REFRESH_S

    def housekeep(self) -> None:
        """Count the backlog and prune, each when its interval has passed."""
        now = self._clock()
        if now >= self._next_backlog:
            self.count_backlog()
        if now < self._next_prune:
            return
        self._next_prune = now + self.policy.prune_interval_s
        pruned = self.reader.prune_processed(self.policy.processed_retention_s)
        if pruned:
            self.observer.pruned(pruned)
