"""A command id names one command: another command reusing it — for another resource or of
another type, after the id was recorded or earlier in the same batch — is refused (CMD-012),
announced and counted, never recorded; the id's outcome stays the first command's, and a
true repeat stays a duplicate. Driven through the real :class:`Worker` on the fakes, so the
suite checks the path ``PHOENIX_NATIVE`` chooses and ``test_both_paths`` the other one."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID

import pytest

from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import (
    AnyCommand,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.events import CommandRejected, reuse_rejection_id_for
from phoenix_resources.entrypoints.worker import Worker
from phoenix_resources.observability import Metrics
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import Framing
from tests.fakes import FakeConsumer, FakeProducer, FakeStore
from tests.support.encoded import hot_path

pytestmark = pytest.mark.unit

TOPIC = "commands"
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CODEC = CommandCodec(Framing())
EVENTS = EventCodec(Framing())
REUSED = "CMD-012"


def create(rid: UUID, name: str = "r") -> CreateResource:
    return CreateResource(command_id=uuid.uuid4(), resource_id=rid, issued_at=T0, name=name,
                          config={})


class Rig:
    """A store the worker's batches commit to; each :meth:`batch` is one worker run over
    fresh records (one partition: every record is in its key's)."""

    def __init__(self) -> None:
        self.store = FakeStore()
        self.metrics = Metrics()

    def batch(self, *commands: AnyCommand) -> None:
        consumer = FakeConsumer({TOPIC: 1})
        for command in commands:
            value, content_type = CODEC.encode(command)
            consumer.append(TOPIC, 0, value, key=str(command.resource_id).encode(),
                            headers=[("content-type", content_type.encode())])
        settings = Settings(commands_topic=TOPIC, dlq_topic="dlq", batch_size=100,
                            batch_max_wait_ms=0, log_format="console")
        worker = Worker(settings, consumer=consumer, producer=FakeProducer(), codec=CODEC,
                        unit_factory=self.store.unit_factory(), metrics=self.metrics,
                        clock=lambda: T0, monotonic=consumer.clock, native=hot_path(CODEC))
        consumer.on_idle = worker.stop
        worker.run()
        assert consumer.committed == {(TOPIC, 0): len(commands)}

    def counted(self, outcome: str, code: str = "none") -> float:
        value = self.metrics.registry.get_sample_value(
            "phoenix_commands_total", {"outcome": outcome, "code": code})
        return value or 0.0

    def rejections(self) -> list[tuple[UUID, str, CommandRejected]]:
        """The announced refusals: outbox id, key and the decoded rejection."""
        return [(r.id, r.aggregateid, EVENTS.decode_rejection(r.payload))
                for r in sorted(self.store.outbox, key=lambda r: r.seq)
                if r.topic == "rejections"]


def refusal_of(command: AnyCommand) -> tuple[UUID, str, UUID, str, str]:
    """What the announcement of ``command``'s refusal for reusing its id carries."""
    return (reuse_rejection_id_for(command.command_id, command.resource_id,
                                   command.type.value),
            str(command.resource_id), command.command_id, command.type.value, REUSED)


def announced(rig: Rig) -> list[tuple[UUID, str, UUID, str, str]]:
    return [(rid, key, r.command_id, r.command_type.value, r.code)
            for rid, key, r in rig.rejections()]


def test_a_recorded_id_reused_elsewhere_is_refused_and_its_first_outcome_stays() -> None:
    rig = Rig()
    a, b = uuid.uuid4(), uuid.uuid4()
    first = create(a, "first")
    rig.batch(first)
    before = rig.store.processed[first.command_id]
    elsewhere = replace(create(b, "elsewhere"), command_id=first.command_id)
    retyped = UpdateResource(command_id=first.command_id, resource_id=a, issued_at=T0,
                             name="renamed")
    rig.batch(elsewhere, retyped, first)  # two reuses, then a true repeat
    assert rig.store.processed == {first.command_id: replace(before, duplicate_deliveries=1)}
    assert set(rig.store.resources) == {a}
    assert (rig.store.resources[a].name, rig.store.resources[a].version) == ("first", 1)
    assert announced(rig) == [refusal_of(elsewhere), refusal_of(retyped)]
    message = rig.rejections()[0][2].message
    assert f"already names the CREATE of resource {a}" in message
    assert f"this CREATE of resource {b} is refused and not recorded" in message
    assert (rig.counted("rejected", REUSED), rig.counted("duplicate"),
            rig.counted("applied")) == (2, 1, 1)


def test_within_a_batch_the_first_delivery_of_an_id_keeps_it() -> None:
    rig = Rig()
    a, b = uuid.uuid4(), uuid.uuid4()
    first = create(a)
    reuse = replace(create(b), command_id=first.command_id)
    deleting = DeleteResource(command_id=first.command_id, resource_id=a, issued_at=T0)
    rig.batch(first, reuse, first, deleting)
    row = rig.store.processed[first.command_id]
    assert (row.outcome, row.resource_id, row.command_type, row.duplicate_deliveries) == (
        "applied", a, "CREATE", 1)
    assert set(rig.store.processed) == {first.command_id}
    assert set(rig.store.resources) == {a}
    assert not rig.store.resources[a].deleted
    assert announced(rig) == [refusal_of(reuse), refusal_of(deleting)]
    assert (rig.counted("rejected", REUSED), rig.counted("duplicate")) == (2, 1)


def test_a_batch_that_delivers_the_reuse_before_the_recorded_command_tells_them_apart(
        ) -> None:
    """The recorded command, not the batch's first delivery, owns a recorded id: every
    delivery of the reuse is refused, every delivery of the recorded command a duplicate."""
    rig = Rig()
    a, b = uuid.uuid4(), uuid.uuid4()
    first = create(a)
    rig.batch(first)
    reuse = replace(create(b), command_id=first.command_id)
    rig.batch(reuse, first, reuse, first)
    assert rig.store.processed[first.command_id].duplicate_deliveries == 2
    assert rig.store.processed[first.command_id].resource_id == a
    assert set(rig.store.resources) == {a}
    assert announced(rig) == [refusal_of(reuse)] * 2
    assert (rig.counted("rejected", REUSED), rig.counted("duplicate")) == (2, 2)


def test_a_redelivered_reuse_is_announced_again_under_the_same_id_and_never_recorded(
        ) -> None:
    """Nothing records a refused reuse: every delivery is refused and announced again, with
    the same rejection id (subscribers drop repeats by it), which differs from the id's own
    refusal's and from another reuse's."""
    rig = Rig()
    a = uuid.uuid4()
    refused = UpdateResource(command_id=uuid.uuid4(), resource_id=a, issued_at=T0, name="x")
    rig.batch(refused)  # CMD-004: the id is recorded as a refused update of a
    reuse = replace(create(a), command_id=refused.command_id)
    rig.batch(reuse)
    rig.batch(reuse)
    row = rig.store.processed[refused.command_id]
    assert (row.outcome, row.error_code, row.duplicate_deliveries) == ("rejected", "CMD-004", 0)
    ids = [rid for rid, _, _ in rig.rejections()]
    assert [r.code for _, _, r in rig.rejections()] == ["CMD-004", REUSED, REUSED]
    assert ids[1] == ids[2] == refusal_of(reuse)[0]
    assert len({ids[0], ids[1], refusal_of(replace(reuse, resource_id=uuid.uuid4()))[0]}) == 3
    assert a not in rig.store.resources
    assert rig.counted("rejected", REUSED) == 2
