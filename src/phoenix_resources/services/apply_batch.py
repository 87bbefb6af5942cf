"""Apply a batch of commands in one transaction, effectively once.

Ordering inside the transaction, and why:

1. **claim**: find which ``command_id`` s are recorded already, and for which resource and
   type: a repeat delivery of a recorded command is a duplicate (only its
   ``duplicate_deliveries`` counter moves); a delivery that reuses a recorded id — or one
   taken earlier in the batch — for another resource or type is refused (CMD-012: announced,
   never recorded, the id's row stays its first command's);
2. **load** the current state of the batch's resources, locked (``FOR UPDATE``) — a writer
   of the same resources in another transaction waits for us, or we for it, and then we see
   its committed effects;
3. **decide** in memory, folding each resource's commands in offset order;
4. **write** each new command's ``processed_commands`` row *with its outcome* — the primary
   key is the dedupe: a row a concurrent claimer inserted first raises
   ``ConcurrentModification``, the batch is redone and sees the id as known — then state,
   outbox rows and parked commands, and commit. (``docs/decisions/0011-…``) Every row is
   made here (:func:`stored_rows`): the unit stores what it is given.

The caller stores Kafka offsets only after :func:`apply_batch` returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from uuid import UUID

from phoenix_resources.domain.commands import AnyCommand
from phoenix_resources.domain.decide import (
    Applied,
    Decision,
    Rejected,
    decide,
    rejection_event,
)
from phoenix_resources.domain.model import Resource
from phoenix_resources.domain.rules import (
    ParkCode,
    RuleViolation,
    check_admission,
    check_same_command,
)
from phoenix_resources.services.ports import (
    BatchRows,
    BatchUnit,
    Claim,
    Incoming,
    OutboxEntry,
    OutboxFormat,
    Outcome,
    OutcomeRow,
    Parked,
    ParkingEntry,
    Recorded,
    StateChange,
)


@dataclass
class BatchReport:
    applied: int = 0
    rejected: int = 0
    unchanged: int = 0
    duplicates: int = 0
    parked: int = 0
    events: int = 0
    duplicate_ids: list[UUID] = field(default_factory=list)
    parked_ids: list[UUID] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    """Rejected and parked commands by code (``CMD-…``, ``PRK-…``)."""

    def add(self, other: BatchReport) -> None:
        for name in ("applied", "rejected", "unchanged", "duplicates", "parked", "events"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.duplicate_ids += other.duplicate_ids
        self.parked_ids += other.parked_ids
        for code, n in other.codes.items():
            self.codes[code] = self.codes.get(code, 0) + n


def split_repeats(batch: Sequence[Incoming]) -> list[Claim]:
    """First delivery of each command_id wins; later ones of the same command (the same
    resource and type) are its repeats, and the others are kept apart (``Claim.reused``)."""
    first: dict[UUID, Incoming] = {}
    repeats: dict[UUID, int] = {}
    reused: dict[UUID, list[Incoming]] = {}
    for item in batch:
        cid = item.command.command_id
        head = first.get(cid)
        if head is None:
            first[cid] = item
        elif _same_command(head.command, item.command):
            repeats[cid] = repeats.get(cid, 0) + 1
        else:
            reused.setdefault(cid, []).append(item)
    return [Claim(item, repeats.get(cid, 0), tuple(reused.get(cid, ())))
            for cid, item in first.items()]


def _same_command(a: AnyCommand, b: AnyCommand) -> bool:
    return a.resource_id == b.resource_id and a.type is b.type


def _reuse(item: Incoming, owner: Recorded) -> Rejected | None:
    """The refusal of ``item`` when its id belongs to ``owner``'s command (CMD-012)."""
    command = item.command
    try:
        check_same_command(command.command_id, command.resource_id, command.type.value,
                           owner=owner)
    except RuleViolation as v:
        return Rejected(command, v.code, v.message)
    return None


@dataclass
class Sorted:
    """The claims of a unit once it knows which ids are recorded, and whose."""

    fresh: list[Claim] = field(default_factory=list)
    repeated: dict[UUID, int] = field(default_factory=dict)
    """Deliveries to add to the counters of recorded commands."""
    refused: list[tuple[Incoming, Rejected]] = field(default_factory=list)
    """Deliveries that reuse an id taken by another command (CMD-012)."""


def sort_claims(claims: Sequence[Claim], recorded: Mapping[UUID, Recorded],
                report: BatchReport) -> Sorted:
    """An id names the command it was recorded for, else its first delivery's: every
    delivery of that command is the command (new, a repeat or a duplicate), every other
    delivery of the id is refused (CMD-012) — announced, never recorded. Duplicates are
    counted in ``report``; refusals follow in claim order (each claim's own deliveries,
    then its ``reused`` ones in batch order)."""
    out = Sorted()
    for c in claims:
        command = c.incoming.command
        cid = command.command_id
        known = recorded.get(cid)
        if known is None:
            out.fresh.append(c)
            report.duplicates += c.repeats
        elif (refusal := _reuse(c.incoming, known)) is None:
            out.repeated[cid] = c.repeats + 1
            report.duplicates += c.repeats + 1
            report.duplicate_ids.append(cid)
        else:
            out.refused += [(c.incoming, refusal)] * (c.repeats + 1)
        owner = known if known is not None else Recorded(command.resource_id,
                                                         command.type.value)
        for item in c.reused:
            if (refusal := _reuse(item, owner)) is not None:
                out.refused.append((item, refusal))
                continue
            if cid not in out.repeated:  # the recorded command, after a reuse of its id
                report.duplicate_ids.append(cid)
            out.repeated[cid] = out.repeated.get(cid, 0) + 1
            report.duplicates += 1
    return out


def _decide(before: Resource | None, item: Incoming, now: datetime,
            oldest: datetime | None) -> Decision:
    command = item.command
    try:
        check_admission(command.command_id, command.issued_at, key_matches=item.key_matches,
                        oldest=oldest, misplaced=item.misplaced)
    except RuleViolation as v:
        return Rejected(command, v.code, v.message)
    return decide(before, command, now)


def fold(states: Mapping[UUID, Resource], fresh: Sequence[Incoming], now: datetime, *,
         parked: frozenset[UUID] = frozenset(), failed: Mapping[UUID, str] | None = None,
         oldest: datetime | None = None,
         ) -> tuple[list[tuple[Incoming, Outcome]], dict[UUID, StateChange]]:
    """Decide every fresh command in order; return outcomes and net state changes.

    A command of a resource in ``parked`` waits behind the parked ones (PRK-002); a command
    in ``failed`` (its id → what went wrong) is parked itself (PRK-001), and its resource's
    later commands follow it. Commands issued before ``oldest`` are refused (CMD-008).
    """
    current: dict[UUID, Resource | None] = dict(states)
    blocked = set(parked)
    changes: dict[UUID, StateChange] = {}
    outcomes: list[tuple[Incoming, Outcome]] = []
    for item in fresh:
        rid = item.command.resource_id
        error = failed.get(item.command.command_id) if failed else None
        if error is not None:
            outcomes.append((item, Parked(item.command, ParkCode.APPLY_FAILED, error)))
            blocked.add(rid)
            continue
        if rid in blocked:
            outcomes.append((item, Parked(item.command, ParkCode.BEHIND_PARKED,
                                          f"waits behind parked commands of resource {rid}")))
            continue
        before = current.get(rid)
        decision = _decide(before, item, now, oldest)
        outcomes.append((item, decision))
        if isinstance(decision, Applied) and decision.state is not before:
            current[rid] = decision.state
            original = changes[rid].before if rid in changes else states.get(rid)
            changes[rid] = StateChange(original, decision.state)
    return outcomes, changes


def stored_rows(decided: Sequence[tuple[Incoming, Outcome]],
                changes: Mapping[UUID, StateChange], now: datetime, outbox: OutboxFormat, *,
                claimed: Sequence[Claim] | None = None,
                repeated: Mapping[UUID, int] | None = None,
                refused: Sequence[tuple[Incoming, Rejected]] = ()) -> BatchRows:
    """Every row a transaction stores for ``decided`` (in decision order) and ``changes``.

    With ``claimed`` (the claims of the decided commands, in the same order) each outcome is
    a new ``processed_commands`` row, its counter starting at the claim's repeats; without,
    the commands were recorded before (parked) and their outcome is replaced. An applied
    change's event, and every refusal's announcement (made at ``now``), become outbox rows
    in decision order — so per resource in version order; a parked command joins the lot.
    ``repeated`` counts further deliveries of commands recorded before. ``refused`` (reused
    ids, CMD-012) are announced after the decisions, and have no outcome row: their id's
    row is another command's.
    """
    encoder = outbox.encoder
    rows: list[OutcomeRow] = []
    parked: list[ParkingEntry] = []
    entries: list[OutboxEntry] = []
    repeats: Iterable[int] = (repeat(0, len(decided)) if claimed is None
                              else (c.repeats for c in claimed))
    for (item, o), n in zip(decided, repeats, strict=True):
        command = item.command
        version: int | None = None
        code: str | None = None
        message: str | None = None
        if isinstance(o, Applied):
            outcome, version, event = "applied", o.state.version, o.event
            if event is not None:
                entries.append(OutboxEntry(
                    event.event_id, str(event.resource_id), event.type_name,
                    outbox.events_topic, encoder.encode_event(event), event.occurred_at,
                    item.traceparent))
        elif isinstance(o, Rejected):
            outcome, code, message = "rejected", o.code.value, o.message
            entries.append(_announced(item, o, now, outbox))
        else:
            outcome, code, message = "parked", o.code.value, o.error
            parked.append(ParkingEntry(item, o.code.value, o.error))
        rows.append(OutcomeRow(command.command_id, command.resource_id, command.type.value,
                               outcome, code, message, version, n, command.correlation_id,
                               item.partition, item.offset, command.issued_at))
    entries += [_announced(item, o, now, outbox) for item, o in refused]
    return BatchRows(
        processed_at=now,
        claimed=rows if claimed is not None else (),
        recorded=rows if claimed is None else (),
        repeated=repeated or {},
        created=[c.after for c in changes.values() if c.before is None],
        changed=[c for c in changes.values() if c.before is not None],
        parked=parked, outbox=entries)


def _announced(item: Incoming, rejected: Rejected, now: datetime,
               outbox: OutboxFormat) -> OutboxEntry:
    rejection = rejection_event(rejected, now)
    return OutboxEntry(rejection.rejection_id, str(item.command.resource_id),
                       rejection.type_name, outbox.rejections_topic,
                       outbox.encoder.encode_rejection(rejection), now, item.traceparent)


def apply_batch(unit: BatchUnit, batch: Sequence[Incoming], now: datetime, *,
                oldest: datetime | None = None, failed: Mapping[UUID, str] | None = None,
                ) -> BatchReport:
    """Claim, load, fold and write ``batch`` in one transaction (``unit``), then commit.

    ``failed`` names commands to park instead of applying (see :func:`fold`)."""
    claims = split_repeats(batch)
    report = BatchReport()
    with unit:
        claimed = sort_claims(claims, unit.claim(claims), report)
        fresh = claimed.fresh
        outcomes: list[tuple[Incoming, Outcome]] = []
        changes: dict[UUID, StateChange] = {}
        if fresh:
            snapshot = unit.load({c.incoming.command.resource_id for c in fresh})
            outcomes, changes = fold(snapshot.states, [c.incoming for c in fresh], now,
                                     parked=snapshot.parked, failed=failed, oldest=oldest)
        # Always written, even with nothing fresh: the write counts the repeat deliveries of
        # known commands.
        unit.write(stored_rows(outcomes, changes, now, unit.outbox_format, claimed=fresh,
                               repeated=claimed.repeated, refused=claimed.refused))
        unit.commit()
    _count(report, [*outcomes, *claimed.refused])
    return report


def _count(report: BatchReport, outcomes: Sequence[tuple[Incoming, Outcome]]) -> None:
    for _, o in outcomes:
        if isinstance(o, Parked):
            report.parked += 1
            report.parked_ids.append(o.command.command_id)
            report.codes[o.code] = report.codes.get(o.code, 0) + 1
        elif isinstance(o, Rejected):
            report.rejected += 1
            report.codes[o.code] = report.codes.get(o.code, 0) + 1
        elif o.event is None:
            report.unchanged += 1
        else:
            report.applied += 1
            report.events += 1
