"""Replaying and discarding parked commands.

Guarantees:

* a resource's parked commands are replayed in the order they were parked, one transaction
  each, through the same rules as live commands (``fold``); each gets its final outcome
  (``applied`` / ``rejected``), its event or rejection in the outbox, and leaves the lot;
* the replay of a resource stops at the first command that still fails: it and everything
  behind it stay parked (the attempt is recorded), so order is never broken;
* a worker parking a new command of the resource meanwhile waits for the replay's
  transaction (the queue is locked), so nothing is parked behind an emptied queue unseen;
* discarding records the outcome ``rejected`` with CMD-010 and announces it like any refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from phoenix_resources.domain.decide import Rejected
from phoenix_resources.domain.rules import RejectionCode
from phoenix_resources.errors import TransientError
from phoenix_resources.services.apply_batch import fold, stored_rows
from phoenix_resources.services.isolate import describe
from phoenix_resources.services.ports import Incoming, Outcome, ParkedCommand, ReplayUnit


@dataclass
class ReplayReport:
    resource_id: UUID
    applied: int = 0
    rejected: int = 0
    stopped_at: UUID | None = None
    """The command that failed again (it and the rest stay parked), or None."""
    error: str | None = None
    remaining: int = 0
    outcomes: list[tuple[UUID, str]] = field(default_factory=list)


def replay_resource(new_unit: Callable[[], ReplayUnit], resource_id: UUID,
                    now: Callable[[], datetime]) -> ReplayReport:
    """Replay the resource's parked commands in order until the lot is empty or one fails."""
    report = ReplayReport(resource_id)
    while True:
        head: ParkedCommand | None = None
        try:
            with new_unit() as unit:
                queue = unit.lock_queue(resource_id)
                if not queue:
                    unit.commit()
                    return report
                head = queue[0]
                outcome = _replay_one(unit, head, now())
                unit.commit()
        except TransientError:
            raise
        except Exception as error:
            if head is None:
                raise
            report.stopped_at = head.incoming.command.command_id
            report.error = describe(error)
            with new_unit() as unit:
                report.remaining = len(unit.lock_queue(resource_id))
                unit.note_attempt(head.incoming.command.command_id, report.error)
                unit.commit()
            return report
        report.outcomes.append((head.incoming.command.command_id,
                                "rejected" if isinstance(outcome, Rejected) else "applied"))
        if isinstance(outcome, Rejected):
            report.rejected += 1
        else:
            report.applied += 1


def _replay_one(unit: ReplayUnit, head: ParkedCommand, now: datetime) -> Outcome:
    rid = head.incoming.command.resource_id
    snapshot = unit.load({rid})
    # The resource is parked because of this very queue: decide as if it were not.
    outcomes, changes = fold(snapshot.states, [head.incoming], now)
    unit.write(stored_rows(outcomes, changes, now, unit.outbox_format))
    unit.unpark(rid, [head.incoming.command.command_id])
    return outcomes[0][1]


def discard(new_unit: Callable[[], ReplayUnit], resource_id: UUID,
            command_ids: set[UUID] | None, now: datetime, reason: str) -> list[UUID]:
    """Discard the resource's parked commands (all of them when ``command_ids`` is None);
    returns the ids discarded, in parking order."""
    with new_unit() as unit:
        queue = [p for p in unit.lock_queue(resource_id)
                 if command_ids is None or p.incoming.command.command_id in command_ids]
        outcomes: list[tuple[Incoming, Outcome]] = []
        for parked in queue:
            command = parked.incoming.command
            outcomes.append((parked.incoming, Rejected(
                command, RejectionCode.DISCARDED,
                f"discarded from the parking lot ({parked.code}): {reason}")))
        if queue:
            unit.write(stored_rows(outcomes, {}, now, unit.outbox_format))
            unit.unpark(resource_id, [p.incoming.command.command_id for p in queue])
        unit.commit()
    return [p.incoming.command.command_id for p in queue]
