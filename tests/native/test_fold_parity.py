"""A batch folded natively gives the transaction exactly what the Python reference gives it:
the read round trip's parameters, every write statement with byte-identical binary array
parameters (claims with outcomes, duplicate counters, new and updated resources, parked
commands with their JSON payload, outbox rows with their Avro events and rejections), the
outcomes with codes and messages, and the batch report. Scenarios mix resources that are
absent, live or deleted, parked resources, known and repeated commands, ids reused for another
resource or type (recorded, or taken earlier in the batch), failures to park, stale and
mismatched-key commands, every rule's refusal and unchanged updates."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_resources.domain.commands import (
    AnyCommand,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.events import reuse_rejection_id_for
from phoenix_resources.domain.model import Status
from phoenix_resources.wire.partitioner import partition_for
from tests.native.reference import (
    EVENT_SCHEMA,
    EVENTS_TOPIC,
    REJECTION_SCHEMA,
    REJECTIONS_TOPIC,
    CommandCodec,
    EventCodec,
    Framing,
    InProcessRegistry,
    Record,
    RecordingConnection,
    Row,
    cloudevents_reference,
    decode_natively,
    incoming_reference,
    load_schema,
    outcome_view,
    split_repeats,
    states_of,
    write_reference,
)
from tests.native.strategies import PARITY, TRACE

pytestmark = pytest.mark.unit

CODEC = CommandCodec(Framing())
TEXTS = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                max_size=12)
NAMES = st.one_of(st.sampled_from(["a", "b", " ", "", "\u3000\x1c", "x" * 256, "é" * 255,
                                   "q'\"\\"]), TEXTS)
CONFIGS = st.one_of(
    st.sampled_from([{}, {"a": "1"}, {"a": "1", "b": "2"}, {"b": "2", "a": "1"}, {"": "x"},
                     {"k" * 256: "v"}, {"é'\"\n\t": "v" * 4097},
                     {f"k{i}": "v" for i in range(257)},
                     {"a": "é\u2028\x7f\"\\/\x01", "\U0001f600": ""}]),
    st.dictionaries(TEXTS, TEXTS, max_size=3))
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                         timezone(timedelta(hours=-8))])


@dataclass
class Scenario:
    records: list[Record]
    rows: dict[UUID, Row]
    parked: set[UUID]
    known: dict[UUID, tuple[UUID, str]]
    """Recorded ids, with the resource and type each was recorded for (its own, or another
    command's: this batch reuses the id)."""
    failed: dict[UUID, str] | None
    now: datetime
    oldest: datetime | None
    select: list[int] | None
    registry: bool
    partitions: int | None = None
    """The commands topic's partition count when the partition check refuses (CMD-011)."""


@st.composite
def rows(draw: st.DrawFn, rid: UUID, now: datetime) -> Row | None:
    kind = draw(st.sampled_from(["absent", "absent", "live", "live", "live", "deleted"]))
    if kind == "absent":
        return None
    created = now - timedelta(microseconds=draw(st.integers(1, 10**12)))
    updated = created + timedelta(microseconds=draw(st.integers(0, 10**6)))
    return (rid, draw(NAMES), draw(CONFIGS), draw(st.sampled_from([s.value for s in Status])),
            draw(st.integers(1, 5) | st.sampled_from([127, 128, 2**31, 2**62])), created,
            updated, uuid.uuid4(),
            updated if kind == "deleted" else None)


@st.composite
def commands(draw: st.DrawFn, pool: list[UUID], now: datetime,
             command_id: UUID | None = None) -> AnyCommand:
    kind = draw(st.sampled_from([CreateResource, CreateResource, UpdateResource,
                                 UpdateResource, UpdateResource, DeleteResource]))
    common: dict[str, Any] = {
        "command_id": command_id or uuid.uuid4(), "resource_id": draw(st.sampled_from(pool)),
        "issued_at": (now - timedelta(seconds=draw(st.integers(0, 4000)))).astimezone(UTC),
        "expected_version": draw(st.none() | st.none() | st.none() | st.integers(0, 4)),
        "correlation_id": draw(st.none() | TEXTS), "issued_by": draw(st.none() | TEXTS)}
    status = st.sampled_from(list(Status))
    if kind is CreateResource:
        return CreateResource(**common, name=draw(NAMES), config=draw(CONFIGS),
                              status=draw(status))
    if kind is UpdateResource:
        return UpdateResource(**common, name=draw(st.none() | st.none() | NAMES),
                              config=draw(st.none() | st.none() | CONFIGS),
                              status=draw(st.none() | status))
    return DeleteResource(**common)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    now = draw(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                            timezones=ZONES))
    pool = [uuid.uuid4() for _ in range(draw(st.integers(1, 4)))]
    loaded = {rid: row for rid in pool if (row := draw(rows(rid, now))) is not None}
    records: list[Record] = []
    ids: list[UUID] = []
    commands_of: list[AnyCommand] = []
    for offset in range(draw(st.integers(1, 10))):
        if records and draw(st.integers(0, 5)) == 0:  # a repeat delivery of an earlier one
            at = draw(st.integers(0, len(records) - 1))
            records.append(records[at])
            ids.append(ids[at])
            commands_of.append(commands_of[at])
            continue
        # Now and then another command with an earlier one's id: the same resource and type
        # (the same command, as far as the id goes) or not (a reuse, CMD-012).
        reused = records and draw(st.integers(0, 4)) == 0
        command = draw(commands(pool, now, draw(st.sampled_from(ids)) if reused else None))
        json = draw(st.integers(0, 4)) == 0
        value, content_type = CODEC.encode(command, "json" if json else "avro")
        headers: list[tuple[str, Any]] = [("content-type", content_type.encode())]
        if draw(st.booleans()):
            headers.append(("traceparent", TRACE.encode()))
        key = str(command.resource_id).encode()
        if draw(st.integers(0, 19)) == 0:
            key = key.upper()
        partition = draw(st.integers(0, 5))
        if draw(st.booleans()):  # where the Java client's partitioner puts it, mostly
            partition = partition_for(key, 6)
        records.append(Record(value, key, headers, partition, offset))
        ids.append(command.command_id)
        commands_of.append(command)
    known = {}
    for i in draw(st.lists(st.integers(0, len(ids) - 1), max_size=3)):
        mine = (commands_of[i].resource_id, commands_of[i].type.value)
        known[ids[i]] = draw(st.sampled_from([
            mine, mine, (uuid.uuid4(), mine[1]), (mine[0], "DELETE"), (mine[0], "CREATE"),
            (draw(st.sampled_from(pool)), "UPDATE")]))
    failed: dict[UUID, str] | None = {
        i: f"psycopg.errors.Boom: {i} \u2028'x'"
        for i in draw(st.lists(st.sampled_from(ids), max_size=1))}
    if draw(st.integers(0, 3)):
        failed = draw(st.sampled_from([None, {}]))
    oldest = draw(st.none() | st.just(now - timedelta(hours=1)).map(
        lambda t: t.astimezone(draw(ZONES))))
    select = draw(st.none() | st.lists(st.integers(0, len(records) - 1), max_size=len(records),
                                       unique=True).map(sorted))
    parked = set(draw(st.lists(st.sampled_from(pool), max_size=1))) if draw(
        st.integers(0, 3)) == 0 else set()
    return Scenario(records, loaded, parked, known, failed, now, oldest, select,
                    draw(st.booleans()), draw(st.sampled_from([None, 6, 6, 1, 3])))


def run(native: ModuleType, s: Scenario) -> None:
    framing = Framing(InProcessRegistry()) if s.registry else Framing()
    events = EventCodec(framing)
    batch, _ = decode_natively(native, CODEC, s.records)
    assert batch.dead_letters() == []
    incoming = [incoming_reference(CODEC, r, s.partitions) for r in s.records]
    if s.partitions is not None:
        assert batch.misplaced(s.partitions) == [i for i, item in enumerate(incoming)
                                                 if item.misplaced is not None]
    chosen = incoming if s.select is None else [incoming[i] for i in s.select]
    conn = RecordingConnection(dict(s.known), set(s.parked), dict(s.rows))
    ref = write_reference(chosen, conn, s.now, oldest=s.oldest, failed=s.failed, events=events)

    plan = batch.plan(s.select)
    at = {id(item): i for i, item in enumerate(incoming)}
    assert plan.claims() == [(at[id(c.incoming)], c.repeats, [at[id(r)] for r in c.reused])
                             for c in split_repeats(chosen)]
    (known_q, _, known_p), (parked_q, _, parked_p), (load_q, _, load_p) = ref.statements[:3]
    assert (known_q, parked_q, load_q) == ("known", "parked_among", "load")
    assert known_p == [plan.claim_ids]
    assert parked_p == load_p == [plan.resource_ids]
    claimed = [incoming[i].command.command_id for i, _, _ in plan.claims()]
    requested = {incoming[i].command.resource_id for i, _, _ in plan.claims()}
    answer_rows = [s.rows[r] for r in sorted(requested, key=lambda u: u.int) if r in s.rows]
    written = plan.fold([(c, *s.known[c]) for c in claimed if c in s.known],
                        [r for r in requested if r in s.parked], answer_rows, s.now,
                        oldest=s.oldest, failed=s.failed, events_topic=EVENTS_TOPIC,
                        rejections_topic=REJECTIONS_TOPIC,
                        event_prefix=framing.prefix(load_schema(EVENT_SCHEMA)),
                        rejection_prefix=framing.prefix(load_schema(REJECTION_SCHEMA)),
                        partitions=s.partitions)

    write = [(name, scalars, params) for name, scalars, params in ref.statements[3:]
             if name != "notify"]
    params = written.params()
    assert [(name, params[name]) for name in written.statements()] == [
        (name, p) for name, _, p in write]
    for name, scalars, _ in write:
        assert scalars == {"insert_outcomes": [s.now], "insert_outbox": ["resource"]}.get(
            name, [])
    assert written.notify == any(name == "notify" for name, _, _ in ref.statements)
    assert written.report() == ref.report
    assert written.expected_rowcounts == tuple(
        _length(params[name][0]) if name in params else 0
        for name in ("insert_outcomes", "insert_new", "update_existing"))

    fresh = [(i, incoming[i]) for i, _, _ in plan.claims()
             if incoming[i].command.command_id not in s.known]
    expected = outcome_view([item for _, item in fresh], states_of(answer_rows), s.now,
                            parked=s.parked, failed=s.failed, oldest=s.oldest)
    assert written.outcomes() == [(i, *o) for (i, _), o in zip(fresh, expected, strict=True)]
    source = "//phoenix-resources/test"
    assert written.cloudevents(source.encode()) == [cloudevents_reference(row, source)
                                                    for row in written.outbox()]


def _length(array: bytes) -> int:
    (ndim,) = struct.unpack(">i", array[:4])
    return 0 if ndim == 0 else struct.unpack(">i", array[12:16])[0]


@PARITY
@given(scenario=scenarios())
def test_a_folded_batch_writes_what_the_reference_writes(native: ModuleType,
                                                         scenario: Scenario) -> None:
    run(native, scenario)


# Every character CPython's str.strip() removes, and neighbours that it keeps.
SPACES = [chr(c) for c in range(0x110000) if chr(c).isspace()]
NOT_SPACES = ["\u180e", "\u200b", "\ufeff", "\x1b", "\x7f", "\xad", "a"]


@pytest.mark.parametrize("names", [SPACES, NOT_SPACES, ["".join(SPACES)]])
def test_blank_names_are_told_like_python(native: ModuleType, names: list[str]) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    records = []
    for offset, name in enumerate(names):
        rid = uuid.uuid4()
        command = CreateResource(command_id=uuid.uuid4(), resource_id=rid, issued_at=now,
                                 name=name, config={})
        records.append(Record(CODEC.encode(command)[0], str(rid).encode(), None, 0, offset))
    run(native, Scenario(records, {}, set(), {}, None, now, None, None, False))


def test_records_outside_their_keys_partition_are_refused_like_python(native: ModuleType
                                                                      ) -> None:
    """CMD-011 on both paths: a record produced to another partition than its key's."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    records = []
    for offset in range(6):
        rid = uuid.uuid4()
        command = CreateResource(command_id=uuid.uuid4(), resource_id=rid, issued_at=now,
                                 name="n", config={})
        key = str(rid).encode()
        home = partition_for(key, 6)
        records.append(Record(CODEC.encode(command)[0], key, None,
                              home if offset % 2 else (home + 1) % 6, offset))
    scenario = Scenario(records, {}, set(), {}, None, now, None, None, False, partitions=6)
    run(native, scenario)
    batch, _ = decode_natively(native, CODEC, records)
    assert batch.misplaced(6) == [0, 2, 4]
    written = batch.plan(None).fold([], [], [], now, events_topic=EVENTS_TOPIC,
                                    rejections_topic=REJECTIONS_TOPIC, partitions=6)
    assert written.report()["codes"] == {"CMD-011": 3}


def test_reused_ids_within_and_across_batches_are_refused_like_python(native: ModuleType
                                                                      ) -> None:
    """CMD-012 on both paths: an id recorded for another resource or type, or taken earlier
    in the batch, is refused and announced (not recorded); true repeats stay duplicates."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    recorded = CreateResource(command_id=uuid.uuid4(), resource_id=a, issued_at=now, name="n",
                              config={})
    taken = CreateResource(command_id=uuid.uuid4(), resource_id=b, issued_at=now, name="t",
                           config={})
    commands: list[AnyCommand] = [
        replace(recorded, resource_id=c),  # a recorded id, for another resource
        recorded,  # the recorded command again: a duplicate
        taken,
        UpdateResource(command_id=taken.command_id, resource_id=b, issued_at=now, name="u"),
        replace(taken, resource_id=c, name="elsewhere"),  # taken earlier in this batch
        replace(taken, name="renamed"),  # the same command (id, resource, type): a repeat
        DeleteResource(command_id=recorded.command_id, resource_id=a, issued_at=now),
    ]
    records = [Record(CODEC.encode(cmd, "json" if i % 2 else "avro")[0],
                      str(cmd.resource_id).encode(), None, 0, i)
               for i, cmd in enumerate(commands)]
    known = {recorded.command_id: (a, "CREATE")}
    run(native, Scenario(records, {}, set(), known, None, now, None, None, False))
    batch, _ = decode_natively(native, CODEC, records)
    written = batch.plan(None).fold([(recorded.command_id, a, "CREATE")], [], [], now,
                                    events_topic=EVENTS_TOPIC,
                                    rejections_topic=REJECTIONS_TOPIC)
    report = written.report()
    assert (report["applied"], report["rejected"], report["duplicates"]) == (1, 4, 2)
    assert report["codes"] == {"CMD-012": 4}
    assert report["duplicate_ids"] == [str(recorded.command_id)]
    refused = [commands[i] for i in (0, 6, 3, 4)]  # claim order, then batch order
    assert [(UUID(bytes=row[0]), row[1], row[3]) for row in written.outbox()[1:]] == [
        (reuse_rejection_id_for(cmd.command_id, cmd.resource_id, cmd.type.value),
         str(cmd.resource_id), REJECTIONS_TOPIC) for cmd in refused]
