"""A seeded command stream with every hazard the service promises to absorb, and the outcome
the pure domain model gives it.

Per resource, a script in order: a create; updates (some with a stale ``expected_version``,
some changing nothing); sometimes a delete; after a delete sometimes a re-create (refused:
deleted ids are never reused) and a late update (refused). Scripts are interleaved across
resources keeping each resource's order. Then, anywhere after their original: duplicate
deliveries (the very same bytes, same key — a publisher's retry). And poison: bytes that are
no command, keyed ``poison-<n>``, which belong in the DLQ and nowhere else.

The reference folds :func:`~phoenix_resources.domain.decide.decide` over each resource's
commands in order, applying each ``command_id`` once — exactly what the service must do.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from phoenix_resources.domain.commands import (
    AnyCommand,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.decide import Applied, decide
from phoenix_resources.domain.events import rejection_id_for
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.framing import Framing

POISON_KEY_PREFIX = "poison-"


@dataclass(frozen=True, slots=True)
class Record:
    """One record to publish to the commands topic."""

    key: bytes
    value: bytes
    content_type: str
    kind: str
    """``command``, ``duplicate`` or ``poison``."""
    command_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class Expected:
    """What the model says about one command."""

    outcome: str
    """``applied`` or ``rejected``."""
    code: str | None
    version: int | None
    """The resource's version after an applied command."""


@dataclass
class Workload:
    seed: int
    records: list[Record]
    commands: dict[UUID, AnyCommand]
    expected: dict[UUID, Expected]
    final: dict[UUID, Resource]
    events: dict[tuple[UUID, int], UUID]
    """(resource id, version) → the event id announcing it."""
    rejections: set[UUID]
    """Rejection ids (one per rejected command) expected on the rejections topic."""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def poison_keys(self) -> set[bytes]:
        return {r.key for r in self.records if r.kind == "poison"}

    def summary(self) -> str:
        c = self.counts
        return (f"{len(self.records):,} records: {c.get('create', 0):,} creates, "
                f"{c.get('update', 0):,} updates ({c.get('stale', 0):,} stale), "
                f"{c.get('delete', 0):,} deletes, {c.get('recreate', 0):,} re-creates, "
                f"{c.get('duplicate', 0):,} duplicates, {c.get('poison', 0):,} poison")


def _script(rng: random.Random, rid: UUID, length: int, at: datetime,
            counts: dict[str, int]) -> list[AnyCommand]:
    """One resource's commands in order; stale expectations are written against a guess of
    the version, the reference decides what they really are."""

    def cid() -> UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    out: list[AnyCommand] = [CreateResource(
        command_id=cid(), resource_id=rid, issued_at=at, name=f"r-{rid.hex[:8]}",
        config={"seed": str(rng.randrange(1000))}, status=Status.PENDING)]
    counts["create"] = counts.get("create", 0) + 1
    version = 1
    for _ in range(length):
        roll = rng.random()
        if roll < 0.06:
            out.append(DeleteResource(command_id=cid(), resource_id=rid, issued_at=at))
            counts["delete"] = counts.get("delete", 0) + 1
            if rng.random() < 0.5:
                out.append(CreateResource(command_id=cid(), resource_id=rid, issued_at=at,
                                          name="again", config={}))
                counts["recreate"] = counts.get("recreate", 0) + 1
            out.append(UpdateResource(command_id=cid(), resource_id=rid, issued_at=at,
                                      name="late"))
            counts["update"] = counts.get("update", 0) + 1
            return out
        expected: int | None = None
        if roll < 0.16:
            expected = max(1, version - rng.randrange(1, 3))  # stale (or lucky)
            counts["stale"] = counts.get("stale", 0) + 1
        elif roll < 0.3:
            expected = version
        kw: dict[str, object] = {}
        if rng.random() < 0.7:
            kw["name"] = f"n{rng.randrange(50)}"
        if rng.random() < 0.3:
            kw["config"] = {"k": str(rng.randrange(5))}
        if rng.random() < 0.2:
            kw["status"] = rng.choice((Status.ACTIVE, Status.INACTIVE))
        out.append(UpdateResource(command_id=cid(), resource_id=rid, issued_at=at,
                                  expected_version=expected, **kw))  # type: ignore[arg-type]
        counts["update"] = counts.get("update", 0) + 1
        version += 1
    return out


def generate(seed: int, *, resources: int, commands_each: int, duplicate_rate: float = 0.05,
             poison: int = 5, wire_format: str = "json") -> Workload:
    """The stream for ``seed``: about ``resources * (commands_each + 1)`` commands."""
    rng = random.Random(seed)
    at = datetime.now(UTC)
    counts: dict[str, int] = {}
    scripts = [_script(rng, uuid.UUID(int=rng.getrandbits(128), version=4),
                       rng.randrange(max(1, commands_each // 2), commands_each * 3 // 2 + 2),
                       at, counts) for _ in range(resources)]
    order: list[AnyCommand] = []
    cursors = [0] * len(scripts)
    live = list(range(len(scripts)))
    while live:
        i = rng.randrange(len(live))
        s = live[i]
        order.append(scripts[s][cursors[s]])
        cursors[s] += 1
        if cursors[s] == len(scripts[s]):
            live[i] = live[-1]
            live.pop()

    codec = CommandCodec(Framing())
    placed: list[tuple[float, Record]] = []
    for i, command in enumerate(order):
        value, content_type = codec.encode(command, wire_format)
        placed.append((float(i), Record(str(command.resource_id).encode(), value,
                                        content_type, "command", command.command_id)))
    originals = [r for _, r in placed]
    for _ in range(int(len(order) * duplicate_rate)):
        src = rng.randrange(len(originals))
        orig = originals[src]
        placed.append((rng.uniform(src + 0.001, len(originals)),
                       Record(orig.key, orig.value, orig.content_type, "duplicate",
                              orig.command_id)))
    for n in range(poison):
        placed.append((rng.uniform(0, len(originals)), Record(
            f"{POISON_KEY_PREFIX}{seed}-{n}".encode(),
            b"{not json " + rng.randbytes(8).hex().encode(), "application/json", "poison")))
    placed.sort(key=lambda p: p[0])
    counts["duplicate"] = int(len(order) * duplicate_rate)
    counts["poison"] = poison
    return _with_reference(seed, [r for _, r in placed], order, counts)


def _with_reference(seed: int, records: list[Record], order: list[AnyCommand],
                    counts: dict[str, int]) -> Workload:
    state: dict[UUID, Resource] = {}
    expected: dict[UUID, Expected] = {}
    events: dict[tuple[UUID, int], UUID] = {}
    rejections: set[UUID] = set()
    now = datetime.now(UTC)
    for c in order:
        d = decide(state.get(c.resource_id), c, now)
        if isinstance(d, Applied):
            state[c.resource_id] = d.state
            expected[c.command_id] = Expected("applied", None, d.state.version)
            if d.event is not None:
                events[(c.resource_id, d.event.version)] = d.event.event_id
        else:
            expected[c.command_id] = Expected("rejected", d.code.value, None)
            rejections.add(rejection_id_for(c.command_id))
    return Workload(seed, records, {c.command_id: c for c in order}, expected, state, events,
                    rejections, counts)
