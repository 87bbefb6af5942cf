"""A deterministic workload: commands, duplicate deliveries and poison, plus the reference result.

* ``n`` messages in total, generated from ``seed`` (same seed and day → same bytes);
* about 20 % creates, 3 % deletes, the rest updates; updates pick their resource with a
  Zipf-like skew (rank = ⌊size^u⌋, i.e. Zipf with s≈1: a handful of hot resources get most
  of the updates), deletes pick from the cold tail; 2 % of updates carry a stale
  ``expected_version`` and 1 % target a deleted resource (both rejected by the rules);
* ~5 % duplicate deliveries: the very same bytes (same ``command_id``) re-sent later, on the
  same key, so after the original;
* a few poison messages (garbage bytes), which must land in the DLQ.

The reference final state is computed with the domain's own ``decide`` (applied once per
``command_id``, in offset order per resource), so the effectively-once check is exact.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from confluent_kafka import Producer

from phoenix_resources.domain.commands import (
    AnyCommand,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.decide import Applied, decide
from phoenix_resources.domain.events import ResourceChanged
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.framing import Framing


def base_time() -> datetime:
    """Today's midnight (UTC): commands must be issued within the worker's dedupe retention
    (older ones are refused, CMD-008), and a whole day keeps the bytes the same per seed."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(slots=True)
class Message:
    key: bytes | None
    value: bytes
    kind: str  # "cmd" | "dup" | "poison"
    command_id: UUID | None = None


@dataclass
class Workload:
    n: int
    seed: int
    messages: list[Message]
    final: dict[UUID, Resource]
    """Reference state per resource id after every command (tombstones included)."""
    event_ids: set[UUID]
    applied: int = 0
    rejected: int = 0
    noop: int = 0
    duplicates: int = 0
    poison: int = 0
    creates: int = 0
    updates: int = 0
    deletes: int = 0
    outcomes: list[tuple[UUID, UUID, str, str, str | None, int | None]] = field(
        default_factory=list)
    """Per command: (command_id, resource_id, type, outcome, error code, resulting version)."""
    events_list: list[ResourceChanged] = field(default_factory=list)
    rows: list[tuple[UUID, Resource | None]] = field(default_factory=list)
    """The row stream a plain upsert sink gets for the same messages: per delivery that
    changed something, the row after it (``None`` = delete tombstone); duplicate deliveries
    re-send their original's row, exactly as a re-delivered record would be."""

    @property
    def commands(self) -> int:
        return self.n - self.duplicates - self.poison

    @property
    def events(self) -> int:
        return len(self.event_ids)

    def summary(self) -> str:
        return (f"{self.n:,} messages: {self.creates:,} creates, {self.updates:,} updates, "
                f"{self.deletes:,} deletes, {self.duplicates:,} duplicate deliveries, "
                f"{self.poison} poison; reference: {self.applied:,} applied "
                f"({self.noop} no-op), {self.rejected:,} rejected, {self.events:,} events, "
                f"{len(self.final):,} resources")


def _name(rng: random.Random) -> str:
    return f"res-{rng.randrange(10**9):09d}"


def _config(rng: random.Random) -> dict[str, str]:
    return {f"k{j}": f"v{rng.randrange(10**6)}" for j in range(rng.randrange(1, 5))}


def generate(n: int, seed: int = 42, *, dup_rate: float = 0.05,  # noqa: PLR0915
             poison: int | None = None,
             create_rate: float = 0.20, delete_rate: float = 0.03,
             ) -> Workload:
    """Build the message list and the reference outcome (deterministic for ``seed``)."""
    rng = random.Random(seed)
    start = base_time()
    codec = CommandCodec(Framing())
    n_poison = poison if poison is not None else max(3, n // 5000)
    n_dup = int(n * dup_rate)
    n_cmd = n - n_dup - n_poison
    pool: list[UUID] = []  # live resources, hottest first
    dead: list[UUID] = []
    state: dict[UUID, Resource] = {}
    encoded: list[Message] = []
    event_ids: set[UUID] = set()
    row_of: dict[UUID, tuple[UUID, Resource | None]] = {}
    wl = Workload(n, seed, [], state, event_ids)

    def uid() -> UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    for i in range(n_cmd):
        at = start + timedelta(milliseconds=i)
        r = rng.random()
        cmd: AnyCommand
        if not pool or r < create_rate:
            rid = uid()
            pool.append(rid)
            cmd = CreateResource(command_id=uid(), resource_id=rid, issued_at=at,
                                 name=_name(rng), config=_config(rng),
                                 status=rng.choice((Status.PENDING, Status.ACTIVE)))
            wl.creates += 1
        elif r < create_rate + delete_rate and len(pool) > 10:
            # deletes hit the cold tail, so the hot resources live on
            j = rng.randrange(len(pool) // 10, len(pool))
            rid = pool[j]
            pool[j] = pool[-1]
            pool.pop()
            dead.append(rid)
            cmd = DeleteResource(command_id=uid(), resource_id=rid, issued_at=at)
            wl.deletes += 1
        else:
            if dead and rng.random() < 0.01:  # a late update of a deleted resource
                rid = dead[rng.randrange(len(dead))]
            else:
                rid = pool[int(len(pool) ** rng.random()) - 1]
            cur = state.get(rid)
            kw: dict[str, Any] = {}
            u = rng.random()
            if u < 0.5:
                kw["name"] = _name(rng)
            if rng.random() < 0.3:
                kw["config"] = _config(rng)
            if rng.random() < 0.3:
                kw["status"] = rng.choice((Status.ACTIVE, Status.INACTIVE))
            if not kw:
                kw["name"] = _name(rng)
            ev = rng.random()
            if cur is not None and ev < 0.02:
                kw["expected_version"] = max(1, cur.version - 1) if cur.version > 1 else 7
            elif cur is not None and ev < 0.12:
                kw["expected_version"] = cur.version
            cmd = UpdateResource(command_id=uid(), resource_id=rid, issued_at=at, **kw)
            wl.updates += 1
        decision = decide(state.get(rid), cmd, at)
        if isinstance(decision, Applied):
            wl.applied += 1
            state[rid] = decision.state
            wl.outcomes.append((cmd.command_id, rid, cmd.type.value, "applied", None,
                                decision.state.version))
            if decision.event is not None:
                event_ids.add(decision.event.event_id)
                wl.events_list.append(decision.event)
                row_of[cmd.command_id] = (rid, None if decision.state.deleted
                                          else decision.state)
            else:
                wl.noop += 1
        else:
            wl.rejected += 1
            wl.outcomes.append((cmd.command_id, rid, cmd.type.value, "rejected",
                                decision.code.value, None))
        value, _ = codec.encode(cmd)
        encoded.append(Message(str(rid).encode(), value, "cmd", cmd.command_id))

    # Duplicates: re-send an earlier message later in the stream (same key, so same partition
    # and a later offset). Poison: garbage that is neither Avro nor JSON.
    # (position, message): originals at their index, each duplicate strictly after its
    # original, poison anywhere; one stable sort gives the delivery order.
    placed: list[tuple[float, Message]] = [(float(i), m) for i, m in enumerate(encoded)]
    for _ in range(n_dup):
        src = rng.randrange(len(encoded))
        orig = encoded[src]
        placed.append((rng.uniform(src + 0.001, len(encoded)),
                       Message(orig.key, orig.value, "dup", orig.command_id)))
    for _ in range(n_poison):
        garbage = bytes([0x07]) + rng.randbytes(rng.randrange(8, 64))
        placed.append((rng.uniform(0, len(encoded)),
                       Message(str(uid()).encode(), garbage, "poison")))
    placed.sort(key=lambda pm: pm[0])
    messages = [m for _, m in placed]
    wl.messages = messages
    wl.duplicates = n_dup
    wl.poison = n_poison
    # the row stream in delivery order (duplicates re-send their original's row)
    wl.rows = [row_of[m.command_id] for m in messages
               if m.command_id is not None and m.command_id in row_of]
    return wl


def produce(bootstrap: str, topic: str, messages: list[Message],
            headers: Mapping[str, bytes] | None = None) -> float:
    """Fire every message, flush once; returns the seconds it took."""
    # The Java client's partitioner, as every publisher of commands must use (CMD-011).
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                  "linger.ms": 20, "batch.size": 1_000_000,
                  "queue.buffering.max.messages": 2_000_000,
                  "queue.buffering.max.kbytes": 2_000_000, "compression.type": "lz4",
                  "enable.idempotence": True, "acks": "all", "log_level": "0"})
    hdrs = [("content-type", b"application/avro"), *(headers or {}).items()]
    t = time.monotonic()
    for m in messages:
        while True:
            try:
                p.produce(topic, m.value, m.key,
                          headers=hdrs if m.kind != "poison" else None)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(120)
    if left:
        raise RuntimeError(f"{left} messages were not delivered to {topic}")
    return time.monotonic() - t
