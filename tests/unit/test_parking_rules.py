"""The parking lot's rules on fakes: isolation by halving, parking behind, resuming after a
transient fault, replay in order, discard, and the worker's handling of all of it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import AnyCommand, CreateResource, UpdateResource
from phoenix_resources.domain.model import Status
from phoenix_resources.entrypoints.worker import Worker
from phoenix_resources.errors import DatabaseUnavailable
from phoenix_resources.observability import Metrics
from phoenix_resources.services.isolate import Isolation
from phoenix_resources.services.ports import Incoming, Outcome, StateChange
from phoenix_resources.services.replay import discard, replay_resource
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.framing import Framing
from tests.fakes import FakeBatchUnit, FakeConsumer, FakeProducer, FakeStore, header

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POISON = "poison"


class Database:
    """What the fake database refuses: a resource named ``poison`` (like a CHECK or a trigger
    would) until ``fixed``; and, with ``refuse_parking``, the parking lot's rows too."""

    def __init__(self, *, refuse_parking: bool = False) -> None:
        self.fixed = False
        self.refuse_parking = refuse_parking


class RefusingUnit(FakeBatchUnit):
    def __init__(self, store: FakeStore, db: Database) -> None:
        super().__init__(store)
        self.db = db
        self.refuse_parking = db.refuse_parking

    def write(self, decisions: Sequence[tuple[Incoming, Outcome]],
              changes: dict[UUID, StateChange], now: datetime) -> None:  # type: ignore[override]
        if not self.db.fixed and any(c.after.name == POISON for c in changes.values()):
            raise ValueError("value refused by a CHECK constraint")
        if self.refuse_parking and any(o.__class__.__name__ == "Parked" for _, o in decisions):
            raise ValueError("the parking lot refuses it too")
        super().write(decisions, changes, now)


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
                    clock=lambda: T0, monotonic=consumer.clock)
    consumer.on_idle = worker.stop
    worker.run()
    assert consumer.committed[("commands", 0)] == 3
    dead = [m for m in producer.acknowledged if m.topic() == "dlq"]
    assert [header(m, "dlq.reason") for m in dead] == [b"unparkable"]
    assert outcome(store, commands[0]) == outcome(store, commands[2]) == ("applied", None)
