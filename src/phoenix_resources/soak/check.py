"""The invariants a run must keep, checked against PostgreSQL and the topics.

Each check compares what the deployment did with the reference (:mod:`.workload`):

* **lost** — a command with no final outcome (no ``processed_commands`` row, or ``pending``);
* **applied twice** — an applied command whose resulting version is not the model's (a second
  application bumps it), or a resource whose state is not the model's;
* **wrong outcome** — applied where the model rejects, or another rejection code;
* **events** — per resource, the versions announced (repeats of the same event dropped, as a
  subscriber does) are exactly the model's 1..n in order; every (resource, version) carries
  the model's ``event_id`` and only it;
* **rejections** — every rejected command announced once at least, nothing else announced;
* **dead letters** — the DLQ holds the poison records and no good command;
* **nothing parked** — no command in the parking lot and no outbox row parked: every fault
  of a run is the environment's, never a command's (the service parks only with proof);
* **outbox drained** — no outbox row left, none parked.

Reading the topics goes to their high watermarks as of the check (no idle guess).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from phoenix_resources.adapters import codecs
from phoenix_resources.config import Settings
from phoenix_resources.errors import BrokerUnavailable
from phoenix_resources.soak.workload import Workload

SAMPLE = 5


@dataclass(frozen=True)
class Check:
    name: str
    checked: int
    violations: int
    examples: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.violations == 0


def read_to_end(common: dict[str, Any], topic: str, timeout: float = 60.0) -> list[Message]:
    """Every record of ``topic`` up to the high watermarks as of now, in partition order."""
    consumer = Consumer({**common, "group.id": f"soak-reader-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "enable.partition.eof": False})
    try:
        meta = consumer.list_topics(topic, timeout=timeout)
        if topic not in meta.topics or meta.topics[topic].error is not None:
            raise BrokerUnavailable(f"topic {topic} cannot be read")
        ends: dict[int, int] = {}
        for p in meta.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                       timeout=timeout)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[Message] = []
        positions = dict.fromkeys(ends, 0)
        while any(positions[p] < ends[p] for p in ends):
            batch = consumer.consume(1000, timeout=min(1.0, timeout))
            if not batch:
                timeout -= 1.0
                if timeout <= 0:
                    raise BrokerUnavailable(f"reading {topic} to its end timed out")
            for m in batch:
                if m.error():
                    raise BrokerUnavailable(str(KafkaException(m.error())))
                p = m.partition() or 0
                positions[p] = (m.offset() or 0) + 1
                if positions[p] <= ends[p]:
                    out.append(m)
        return out
    finally:
        consumer.close()


@dataclass(frozen=True)
class Observed:
    """Everything the checks read, once."""

    outcomes: dict[UUID, tuple[str, str | None, int | None]]
    resources: dict[UUID, tuple[str, str, int, bool]]
    outbox_rows: int
    events: list[tuple[UUID, int, UUID]]
    """(resource id, version, event id) in the order of each resource's partition."""
    rejections: list[UUID]
    dead_letter_keys: list[bytes | None]
    parked_commands: tuple[str, ...] = ()
    """Parked commands (``command_id reason: error``), in parking order."""
    parked_events: tuple[str, ...] = ()
    """Parked outbox rows (``event_id reason``), in ``seq`` order."""


def observe(settings: Settings, database_url: str | None = None) -> Observed:
    url = database_url or settings.database_url
    with psycopg.connect(url, autocommit=True) as conn:
        outcomes = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
            "SELECT command_id, outcome, error_code, resulting_version FROM processed_commands")}
        resources = {r[0]: (r[1], r[2], r[3], r[4]) for r in conn.execute(
            "SELECT id, name, status, version, deleted_at IS NOT NULL FROM resources")}
        row = conn.execute("SELECT count(*) FROM outbox").fetchone()
        parked_commands = tuple(f"{r[0]} {r[1]}: {r[2][:200]}" for r in conn.execute(
            "SELECT command_id, reason, error FROM parked_commands ORDER BY seq"))
        parked_events = tuple(f"{r[0]} {r[1]}" for r in conn.execute(
            "SELECT id, parked_reason FROM outbox WHERE parked_at IS NOT NULL ORDER BY seq"))
    common = settings.kafka_common()
    codec = codecs.event_codec(settings)
    events = []
    for m in read_to_end(common, settings.events_topic):
        e = codec.decode_event(m.value() or b"")
        events.append((e.resource_id, e.version, e.event_id))
    rejections = [codec.decode_rejection(m.value() or b"").rejection_id
                  for m in read_to_end(common, settings.rejections_topic)]
    dead = [m.key() for m in read_to_end(common, settings.dlq_topic)]
    return Observed(outcomes, resources, int(row[0]) if row else 0, events, rejections, dead,
                    parked_commands, parked_events)


def check(workload: Workload, seen: Observed) -> list[Check]:
    return [_lost(workload, seen), _applied_twice(workload, seen), _outcomes(workload, seen),
            _state(workload, seen), _events(workload, seen), _rejections(workload, seen),
            _dead_letters(workload, seen), _parked(workload, seen),
            Check("outbox drained", 1, seen.outbox_rows,
                  (f"{seen.outbox_rows} rows left",) if seen.outbox_rows else ())]


def _lost(w: Workload, seen: Observed) -> Check:
    bad = [str(cid) for cid in w.commands
           if cid not in seen.outcomes or seen.outcomes[cid][0] == "pending"]
    return Check("nothing lost", len(w.commands), len(bad), tuple(bad[:SAMPLE]))


def _applied_twice(w: Workload, seen: Observed) -> Check:
    bad = []
    for cid, exp in w.expected.items():
        got = seen.outcomes.get(cid)
        if exp.outcome == "applied" and got is not None and got[0] == "applied" \
                and got[2] != exp.version:
            bad.append(f"{cid}: version {got[2]}, model {exp.version}")
    unknown = [str(c) for c in seen.outcomes if c not in w.commands]
    return Check("nothing applied twice", len(w.expected), len(bad) + len(unknown),
                 tuple((bad + [f"unknown command {u}" for u in unknown])[:SAMPLE]))


def _outcomes(w: Workload, seen: Observed) -> Check:
    bad = []
    for cid, exp in w.expected.items():
        got = seen.outcomes.get(cid)
        if got is not None and got[0] != "pending" and (got[0], got[1]) != (exp.outcome,
                                                                               exp.code):
            bad.append(f"{cid}: {got[0]} {got[1] or ''}, model {exp.outcome} {exp.code or ''}")
    return Check("outcomes as the model", len(w.expected), len(bad), tuple(bad[:SAMPLE]))


def _state(w: Workload, seen: Observed) -> Check:
    bad = []
    for rid, r in w.final.items():
        got = seen.resources.get(rid)
        want = (r.name, r.status.value, r.version, r.deleted)
        if got != want:
            bad.append(f"{rid}: {got}, model {want}")
    extra = [str(rid) for rid in seen.resources if rid not in w.final]
    return Check("state as the model", len(w.final), len(bad) + len(extra),
                 tuple((bad + [f"unexpected resource {e}" for e in extra])[:SAMPLE]))


def _events(w: Workload, seen: Observed) -> Check:
    bad = []
    ids: dict[tuple[UUID, int], set[UUID]] = defaultdict(set)
    versions: dict[UUID, list[int]] = defaultdict(list)
    for rid, version, eid in seen.events:
        ids[(rid, version)].add(eid)
        kept = versions[rid]
        if not kept or version > kept[-1]:
            kept.append(version)
    for key, found in ids.items():
        want = w.events.get(key)
        if found != {want}:
            bad.append(f"{key[0]} v{key[1]}: event ids {sorted(map(str, found))}, "
                       f"model {want}")
    expected_versions: dict[UUID, list[int]] = defaultdict(list)
    for rid, version in sorted(w.events, key=lambda k: (str(k[0]), k[1])):
        expected_versions[rid].append(version)
    for rid, want_versions in expected_versions.items():
        if versions.get(rid, []) != want_versions:
            got = versions.get(rid, [])
            bad.append(f"{rid}: versions {got[:12]}, model {want_versions[:12]}")
    return Check("events contiguous, stable ids", len(w.events), len(bad), tuple(bad[:SAMPLE]))


def _rejections(w: Workload, seen: Observed) -> Check:
    got = set(seen.rejections)
    missing = w.rejections - got
    extra = got - w.rejections
    return Check("rejections announced", len(w.rejections), len(missing) + len(extra),
                 tuple([f"missing {m}" for m in list(missing)[:SAMPLE]]
                       + [f"unexpected {e}" for e in list(extra)[:SAMPLE]]))


def _parked(w: Workload, seen: Observed) -> Check:
    parked = seen.parked_commands + seen.parked_events
    return Check("nothing parked", len(w.commands), len(parked),
                 tuple([f"command parked: {p}" for p in seen.parked_commands[:SAMPLE]]
                       + [f"event parked: {p}" for p in seen.parked_events[:SAMPLE]]))


def _dead_letters(w: Workload, seen: Observed) -> Check:
    poison = w.poison_keys
    got = set(seen.dead_letter_keys)
    good = [k for k in seen.dead_letter_keys if k not in poison]
    missing = poison - got
    return Check("DLQ: all poison, no good command", len(poison), len(good) + len(missing),
                 tuple([f"good command dead-lettered: {k!r}" for k in good[:SAMPLE]]
                       + [f"poison missing: {k!r}" for k in list(missing)[:SAMPLE]]))
