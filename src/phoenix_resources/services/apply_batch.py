"""Apply a batch of commands in one transaction, effectively once.

Ordering inside the transaction, and why:

1. **claim** every distinct ``command_id`` by inserting its ``processed_commands`` row; the
   primary key decides what is new (a concurrent claimer waits for our commit, then sees a
   conflict). Known ids only get their ``duplicate_deliveries`` counter bumped.
2. **load** the current state of the batch's resources, locked, *after* the claim — so a
   batch that waited on another's claim sees that batch's committed effects.
3. **decide** in memory, folding each resource's commands in offset order.
4. **write** state, outcomes and outbox rows with set-based statements and commit.

The caller stores Kafka offsets only after :func:`apply_batch` returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from phoenix_resources.domain.decide import Applied, Decision, decide
from phoenix_resources.domain.model import Resource
from phoenix_resources.services.ports import BatchUnit, Claim, Incoming, StateChange


@dataclass
class BatchReport:
    applied: int = 0
    rejected: int = 0
    unchanged: int = 0
    duplicates: int = 0
    events: int = 0
    duplicate_ids: list[UUID] = field(default_factory=list)


def split_repeats(batch: Sequence[Incoming]) -> list[Claim]:
    """First delivery of each command_id wins; later ones in the batch are repeats."""
    first: dict[UUID, Incoming] = {}
    repeats: dict[UUID, int] = {}
    for item in batch:
        cid = item.command.command_id
        if cid in first:
            repeats[cid] = repeats.get(cid, 0) + 1
        else:
            first[cid] = item
    return [Claim(item, repeats.get(cid, 0)) for cid, item in first.items()]


def fold(states: Mapping[UUID, Resource], fresh: Sequence[Incoming], now: datetime,
         ) -> tuple[list[tuple[Incoming, Decision]], dict[UUID, StateChange]]:
    """Decide every fresh command in order; return decisions and net state changes."""
    current: dict[UUID, Resource | None] = dict(states)
    changes: dict[UUID, StateChange] = {}
    decisions: list[tuple[Incoming, Decision]] = []
    for item in fresh:
        rid = item.command.resource_id
        before = current.get(rid)
        decision = decide(before, item.command, now)
        decisions.append((item, decision))
        if isinstance(decision, Applied) and decision.state is not before:
            current[rid] = decision.state
            original = changes[rid].before if rid in changes else states.get(rid)
            changes[rid] = StateChange(original, decision.state)
    return decisions, changes


def apply_batch(unit: BatchUnit, batch: Sequence[Incoming], now: datetime) -> BatchReport:
    claims = split_repeats(batch)
    report = BatchReport(duplicates=sum(c.repeats for c in claims))
    with unit:
        new_ids = unit.claim(claims)
        fresh = [c.incoming for c in claims if c.incoming.command.command_id in new_ids]
        for c in claims:
            if c.incoming.command.command_id not in new_ids:
                report.duplicates += 1
                report.duplicate_ids.append(c.incoming.command.command_id)
        states = unit.load({i.command.resource_id for i in fresh}) if fresh else {}
        decisions, changes = fold(states, fresh, now)
        unit.write(decisions, changes, now)
        unit.commit()
    for _, d in decisions:
        if not isinstance(d, Applied):
            report.rejected += 1
        elif d.event is None:
            report.unchanged += 1
        else:
            report.applied += 1
            report.events += 1
    return report
