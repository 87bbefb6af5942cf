"""The parking lot's rules on fakes: isolation by halving, parking behind, resuming after a
transient fault, replay in order, discard, and the worker's handling of all of it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import AnyCommand, CreateResource, UpdateResource
from phoenix_resources.domain.model import Status
from phoenix_resources.entrypoints.worker import Worker
from phoenix_resources.errors import (
    DatabaseReadOnly,
    DatabaseRefused,
    DatabaseUnavailable,
    RowRefused,
)
from phoenix_resources.observability import Metrics
from phoenix_resources.services.isolate import SYSTEMIC_AFTER, Isolation
from phoenix_resources.services.ports import BatchRows, Incoming
from phoenix_resources.services.replay import discard, replay_resource
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.framing import Framing
from tests.fakes import FakeBatchUnit, FakeConsumer, FakeProducer, FakeStore, header
from tests.support.encoded import hot_path

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POISON = "poison"


class Database:
    """What the fake database refuses: a resource named ``poison`` (like a CHECK or a trigger
    would) until ``fixed``; and, with ``refuse_parking``, the parking lot's rows too."""

    def __init__(self, *, refuse_parking: bool = False) -> None:
        self.fixed = False
        self.refuse_parking = refuse_parking
        self.refuse_all: Exception | None = None
        """Raised by every write (a cause common to every command, e.g. a trigger)."""
        self.parking_fails: Exception | None = None
        """Raised by a write that parks (once, then cleared)."""


class RefusingUnit(FakeBatchUnit):
    def __init__(self, store: FakeStore, db: Database) -> None:
        super().__init__(store)
        self.db = db
        self.refuse_parking = db.refuse_parking

    def write(self, rows: BatchRows) -> None:
        if self.db.refuse_all is not None:
            raise self.db.refuse_all
        if rows.parked and self.db.parking_fails is not None:
            error, self.db.parking_fails = self.db.parking_fails, None
            raise error
        written = [*rows.created, *(c.after for c in rows.changed)]
        if not self.db.fixed and any(r.name == POISON for r in written):
            raise ValueError("value refused by a CHECK constraint")
        if self.refuse_parking and rows.parked:
            raise ValueError("the parking lot refuses it too")
        super().write(rows)


def factory(store: FakeStore, *, down: Callable[[int], bool] = lambda n: False,
            refuse_parking: bool = False, db: Database | None = None,
            ) -> Callable[[], FakeBatchUnit]:
    """Units over ``store``; the ``n``-th finds the database down when ``down(n)``."""
    count = [0]
    database = db or Database(refuse_parking=refuse_parking)

    def make() -> FakeBatchUnit:
        count[0] += 1
        if down(count[0]):
            raise DatabaseUnavailable("down")
        return RefusingUnit(store, database)

    return make


def create(rid: UUID, name: str = "r") -> CreateResource:
    return CreateResource(command_id=uuid.uuid4(), resource_id=rid, issued_at=T0, name=name,
                          config={})


def update(rid: UUID, **kw: object) -> UpdateResource:
    return UpdateResource(command_id=uuid.uuid4(), resource_id=rid, issued_at=T0,
                          **kw)  # type: ignore[arg-type]


def batch(*commands: AnyCommand) -> list[Incoming]:
    return [Incoming(c, 0, i) for i, c in enumerate(commands)]


def outcome(store: FakeStore, command: AnyCommand) -> tuple[str, str | None]:
    row = store.processed[command.command_id]
    return row.outcome, row.error_code


def test_the_failing_command_is_parked_with_its_resource_and_the_rest_applies() -> None:
    store = FakeStore()
    a, p, b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    commands = [create(a), create(p, POISON), update(p, status=Status.ACTIVE), create(b),
                update(a, name="a2"), create(uuid.uuid4()), update(b, name="b2")]
    work = Isolation(batch(*commands))
    report = work.run(factory(store), T0)
    assert work.done
    assert work.splits >= 2
    assert (report.applied, report.parked) == (5, 2)
    assert outcome(store, commands[1]) == ("parked", "PRK-001")
    assert outcome(store, commands[2]) == ("parked", "PRK-002")
    assert "CHECK constraint" in (store.processed[commands[1].command_id].error_message or "")
    assert store.resources[a].name == "a2"
    assert store.resources[b].name == "b2"
    assert p not in store.resources
    assert [e.incoming.command.command_id for e in store.parked.values()] == [
        commands[1].command_id, commands[2].command_id]
    assert store.parked_resources == {p}


def test_later_batches_park_behind_a_parked_resource_until_it_is_replayed() -> None:
    store, db = FakeStore(), Database()
    p = uuid.uuid4()
    first, later = create(p, POISON), update(p, name="fixed")
    Isolation(batch(first)).run(factory(store, db=db), T0)
    Isolation(batch(later)).run(factory(store, db=db), T0)
    assert outcome(store, later) == ("parked", "PRK-002")

    stopped = replay_resource(factory(store, db=db), p, lambda: T0)  # still refused
    assert (stopped.applied, stopped.stopped_at, stopped.remaining) == (
        0, first.command_id, 2)
    assert store.parked[first.command_id].attempts == 1

    db.fixed = True  # the operator fixed the cause
    done = replay_resource(factory(store, db=db), p, lambda: T0 + timedelta(seconds=1))
    assert (done.applied, done.stopped_at) == (2, None)
    assert [cid for cid, _ in done.outcomes] == [first.command_id, later.command_id]
    assert store.resources[p].name == "fixed"
    assert store.resources[p].version == 2
    assert store.parked == {}
    assert store.parked_resources == set()
    assert outcome(store, first) == ("applied", None)

    after = update(p, status=Status.ACTIVE)
    Isolation(batch(after)).run(factory(store, db=db), T0)
    assert outcome(store, after) == ("applied", None)


def test_a_transient_fault_during_isolation_resumes_without_redoing_committed_work() -> None:
    store = FakeStore()
    a, p = uuid.uuid4(), uuid.uuid4()
    commands = [create(a), create(p, POISON), create(uuid.uuid4()), create(uuid.uuid4())]
    work = Isolation(batch(*commands))
    make = factory(store, down=lambda n: n == 3)  # the third unit finds the database down
    with pytest.raises(DatabaseUnavailable):
        work.run(make, T0)
    assert not work.done
    report = work.run(make, T0)
    assert work.done
    assert report.duplicates == 0
    assert (report.applied, report.parked) == (3, 1)


def test_a_command_that_cannot_even_be_parked_is_handed_back() -> None:
    store = FakeStore()
    good, bad = create(uuid.uuid4()), create(uuid.uuid4(), POISON)
    work = Isolation(batch(good, bad))
    work.run(factory(store, refuse_parking=True), T0)
    assert [i.command.command_id for i, _ in work.unparkable] == [bad.command_id]
    assert outcome(store, good) == ("applied", None)
    assert bad.command_id not in store.processed


def test_discard_refuses_every_parked_command_of_the_resource() -> None:
    store = FakeStore()
    p = uuid.uuid4()
    commands = [create(p, POISON), update(p, status=Status.ACTIVE)]
    Isolation(batch(*commands)).run(factory(store), T0)
    gone = discard(factory(store), p, None, T0, "not wanted")
    assert gone == [c.command_id for c in commands]
    assert {outcome(store, c) for c in commands} == {("rejected", "CMD-010")}
    assert store.parked == {}
    assert store.parked_resources == set()
    assert len([r for r in store.outbox if r.topic == "rejections"]) == 2


def test_the_worker_parks_stores_offsets_past_everything_and_dead_letters_the_unparkable(
) -> None:
    store = FakeStore()
    consumer = FakeConsumer({"commands": 1})
    producer = FakeProducer()
    codec = CommandCodec(Framing())
    commands = [create(uuid.uuid4()), create(uuid.uuid4(), POISON), create(uuid.uuid4())]
    for c in commands:
        value, content_type = codec.encode(c)
        consumer.append("commands", 0, value, key=str(c.resource_id).encode(),
                        headers=[("content-type", content_type.encode())])
    metrics = Metrics()
    worker = Worker(Settings(commands_topic="commands", dlq_topic="dlq", batch_max_wait_ms=0,
                             log_format="console"),
                    consumer=consumer, producer=producer, codec=codec,
                    unit_factory=factory(store, refuse_parking=True), metrics=metrics,
                    clock=lambda: T0, monotonic=consumer.clock, native=hot_path(codec))
    consumer.on_idle = worker.stop
    worker.run()
    assert consumer.committed[("commands", 0)] == 3
    dead = [m for m in producer.acknowledged if m.topic() == "dlq"]
    assert [header(m, "dlq.reason") for m in dead] == [b"unparkable"]
    assert outcome(store, commands[0]) == outcome(store, commands[2]) == ("applied", None)


# --- the environment is never charged to a command -----------------------------------------


def test_a_failure_common_to_every_command_parks_nothing_and_pauses() -> None:
    """A trigger (or a constraint a bad migration added) refusing every row: commands of
    several resources fail alone and nothing commits — no proof, so nothing is parked."""
    store, db = FakeStore(), Database()
    db.refuse_all = RowRefused("refusing every row (SQLSTATE P0001)", "P0001")
    commands = [create(uuid.uuid4()) for _ in range(5)]
    work = Isolation(batch(*commands))
    with pytest.raises(DatabaseRefused, match="not any command's"):
        work.run(factory(store, db=db), T0)
    assert store.processed == {}
    assert store.parked == {}
    assert not work.done
    db.refuse_all = None  # the operator drops the trigger: the same work now applies
    report = work.run(factory(store, db=db), T0)
    assert (report.applied, report.parked) == (5, 0)
    assert work.done


def test_so_many_resources_failing_with_no_success_stop_the_search_early() -> None:
    store, db = FakeStore(), Database()
    db.refuse_all = RowRefused("refused", "23514")
    units = [0]
    make = factory(store, db=db)

    def counting() -> FakeBatchUnit:
        units[0] += 1
        return make()

    work = Isolation(batch(*[create(uuid.uuid4()) for _ in range(200)]))
    with pytest.raises(DatabaseRefused):
        work.run(counting, T0)
    assert units[0] < 3 * SYSTEMIC_AFTER * 8, "halving 200 commands to the end costs ~400"


def test_a_poison_command_first_in_its_batch_is_parked_once_the_rest_commits() -> None:
    """The proof comes after the failure: the command is held (with its resource's later
    commands) until another part of the batch commits."""
    store = FakeStore()
    p, g = uuid.uuid4(), uuid.uuid4()
    commands = [create(p, POISON), create(g), update(p, status=Status.ACTIVE),
                update(g, name="g2")]
    report = Isolation(batch(*commands)).run(factory(store), T0)
    assert (report.applied, report.parked) == (2, 2)
    assert outcome(store, commands[0]) == ("parked", "PRK-001")
    assert outcome(store, commands[2]) == ("parked", "PRK-002")
    assert store.resources[g].name == "g2"
    assert [e.incoming.command.command_id for e in store.parked.values()] == [
        commands[0].command_id, commands[2].command_id]


def test_a_lone_resource_is_parked_only_on_a_writable_database() -> None:
    """Nothing to compare with (the batch is one resource's): the health check decides."""
    store = FakeStore()
    p = uuid.uuid4()
    commands = [create(p, POISON), update(p, status=Status.ACTIVE)]
    work = Isolation(batch(*commands))
    store.writable = False
    with pytest.raises(DatabaseReadOnly):
        work.run(factory(store), T0)
    assert store.parked == {}
    store.writable = True
    report = work.run(factory(store), T0)
    assert (report.parked, outcome(store, commands[0])) == (2, ("parked", "PRK-001"))


def test_parking_that_fails_for_a_transient_reason_pauses_and_never_dead_letters() -> None:
    store, db = FakeStore(), Database()
    db.parking_fails = DatabaseReadOnly("cannot execute INSERT in a read-only transaction")
    good, bad = create(uuid.uuid4()), create(uuid.uuid4(), POISON)
    work = Isolation(batch(good, bad))
    with pytest.raises(DatabaseReadOnly):
        work.run(factory(store, db=db), T0)
    assert work.unparkable == []
    report = work.run(factory(store, db=db), T0)
    assert work.unparkable == []
    assert (report.applied, report.parked) == (1, 1)
    assert outcome(store, bad) == ("parked", "PRK-001")


def test_an_unparkable_commands_resource_goes_on_after_it() -> None:
    store = FakeStore()
    p, g = uuid.uuid4(), uuid.uuid4()
    commands = [create(g), create(p, POISON), create(uuid.uuid4()), update(p, status=Status.ACTIVE)]
    work = Isolation(batch(*commands))
    work.run(factory(store, refuse_parking=True), T0)
    assert [i.command.command_id for i, _ in work.unparkable] == [commands[1].command_id]
    # The update of a resource never created is refused by the rules, not lost.
    assert outcome(store, commands[3])[0] == "rejected"
