"""The worker's offset and fault rules, driving the real :class:`Worker` with the fakes.

Every record here is a real ``confluent_kafka.Message`` with a real encoded command; only the
broker and the database are in memory (``tests/fakes.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal

import pytest
from confluent_kafka import KafkaError

from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import CreateResource
from phoenix_resources.entrypoints.worker import Worker
from phoenix_resources.errors import DatabaseUnavailable, DecodeError
from phoenix_resources.observability import Metrics
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.framing import Framing
from phoenix_resources.wire.partitioner import partition_for
from tests.fakes import TP, FakeBatchUnit, FakeConsumer, FakeProducer, FakeStore, header
from tests.support.encoded import hot_path

pytestmark = pytest.mark.unit

TOPIC = "commands"
DLQ = "commands.dlq"
P0, P1, P2 = (TOPIC, 0), (TOPIC, 1), (TOPIC, 2)
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CODEC = CommandCodec(Framing())


class DownUnit:
    """A unit whose database cannot be reached (as ``PostgresBatchUnit`` when getconn fails)."""

    def __enter__(self) -> DownUnit:
        raise DatabaseUnavailable("connection refused")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        pass


class WatchedUnit(FakeBatchUnit):
    def __init__(self, store: FakeStore, at_commit: Callable[[], None]) -> None:
        super().__init__(store)
        self._at_commit = at_commit

    def commit(self) -> None:
        self._at_commit()
        super().commit()


@dataclass
class Rig:
    """A worker on fakes. ``down`` says which unit attempts (1-based) find the database down;
    ``before_attempt(n)`` runs as attempt ``n`` starts."""

    partitions: int = 2
    batch_size: int = 100
    auto_commit: bool = True
    partition_check: Literal["refuse", "warn"] = "refuse"
    assigned: Iterable[TP] | None = None
    down: Callable[[int], bool] = lambda n: False
    before_attempt: Callable[[int], None] = lambda n: None
    dlq_topic_max_bytes: Callable[[], int | None] | None = None
    store: FakeStore = field(default_factory=FakeStore)
    producer: FakeProducer = field(default_factory=FakeProducer)
    attempts: int = 0
    stored_at_commit: list[dict[TP, int]] = field(default_factory=list)
    paused_at_consume: list[set[TP]] = field(default_factory=list)
    assigned_at_retry: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.consumer = FakeConsumer({TOPIC: self.partitions}, auto_commit=self.auto_commit,
                                     initial_assignment=self.assigned)
        settings = Settings(commands_topic=TOPIC, dlq_topic=DLQ, batch_size=self.batch_size,
                            batch_max_wait_ms=0, retry_initial_s=0.05, retry_max_s=0.2,
                            log_format="console", partition_check=self.partition_check)
        self.metrics = Metrics()
        self.worker = Worker(settings, consumer=self.consumer, producer=self.producer,
                             codec=CODEC, unit_factory=self._unit, metrics=self.metrics,
                             clock=lambda: T0, monotonic=self.consumer.clock,
                             native=hot_path(CODEC),
                             dlq_topic_max_bytes=self.dlq_topic_max_bytes)
        self.consumer.on_idle = self.worker.stop
        self.consumer.on_call = self._on_consumer_call

    def _unit(self) -> DownUnit | FakeBatchUnit:
        self.attempts += 1
        self.before_attempt(self.attempts)
        if self.down(self.attempts):
            return DownUnit()
        return WatchedUnit(self.store,
                           lambda: self.stored_at_commit.append(dict(self.consumer.stored)))

    def _on_consumer_call(self, name: str) -> None:
        if name == "consume":
            self.paused_at_consume.append(set(self.consumer.paused))

    def send(self, partition: int, n: int = 1) -> list[CreateResource]:
        commands = []
        for _ in range(n):
            cmd = CreateResource(command_id=uuid.uuid4(), resource_id=uuid.uuid4(),
                                 issued_at=T0, name="r", config={})
            value, content_type = CODEC.encode(cmd)
            self.consumer.append(TOPIC, partition, value, key=str(cmd.resource_id).encode(),
                                 headers=[("content-type", content_type.encode())])
            commands.append(cmd)
        return commands

    def run(self) -> None:
        self.worker.run()

    def applied(self, commands: Iterable[CreateResource]) -> list[bool]:
        return [c.command_id in self.store.processed for c in commands]

    def transient_errors(self, kind: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "phoenix_transient_errors_total", {"component": "worker", "kind": kind})
        return value or 0.0


def placed(rig: Rig, *, misplaced: bool) -> CreateResource:
    """A create in its key's partition (as the Java client's partitioner puts it), or in the
    next one."""
    cmd = CreateResource(command_id=uuid.uuid4(), resource_id=uuid.uuid4(), issued_at=T0,
                         name="r", config={})
    key = str(cmd.resource_id).encode()
    home = partition_for(key, rig.partitions)
    value, content_type = CODEC.encode(cmd)
    rig.consumer.append(TOPIC, (home + misplaced) % rig.partitions, value, key=key,
                        headers=[("content-type", content_type.encode())])
    return cmd


def test_a_record_outside_its_keys_partition_is_refused_and_announced() -> None:
    rig = Rig(partitions=4)
    wrong, right = placed(rig, misplaced=True), placed(rig, misplaced=False)
    rig.run()
    refused = rig.store.processed[wrong.command_id]
    assert (refused.outcome, refused.error_code) == ("rejected", "CMD-011")
    assert f"belongs in partition {partition_for(str(wrong.resource_id).encode(), 4)} of 4" \
        in (refused.error_message or "")
    assert rig.store.processed[right.command_id].outcome == "applied"
    assert wrong.resource_id not in rig.store.resources
    announced = [r for r in rig.store.outbox if r.topic == "rejections"]
    assert [r.aggregateid for r in announced] == [str(wrong.resource_id)]


def test_with_the_check_warning_a_misplaced_record_is_applied_and_counted() -> None:
    rig = Rig(partitions=4, partition_check="warn")
    wrong = placed(rig, misplaced=True)
    rig.run()
    assert rig.store.processed[wrong.command_id].outcome == "applied"
    assert rig.metrics.registry.get_sample_value("phoenix_partition_mismatches_total") == 1


def named(calls: list[dict[TP, int]], tp: TP) -> list[int]:
    return [call[tp] for call in calls if tp in call]


# --- offsets follow the database commit ----------------------------------------------------


def test_offsets_are_stored_after_the_commit_as_last_offset_plus_one_per_partition() -> None:
    rig = Rig()
    sent = rig.send(0, 3) + rig.send(1, 2)
    rig.run()
    assert rig.applied(sent) == [True] * 5
    assert rig.stored_at_commit == [{}]
    assert rig.consumer.store_calls == [{P0: 3, P1: 2}]
    assert rig.consumer.committed == {P0: 3, P1: 2}


def test_a_transient_fault_pauses_stores_nothing_and_retries_the_same_batch() -> None:
    seen: list[tuple[dict[TP, int], set[TP]]] = []
    rig = Rig(down=lambda n: n <= 2)
    rig.before_attempt = lambda n: seen.append((dict(rig.consumer.stored),
                                                set(rig.consumer.paused)))
    sent = rig.send(0, 2) + rig.send(1, 1)
    rig.run()
    assert rig.attempts == 3
    assert seen[1:] == [({}, {P0, P1}), ({}, {P0, P1})]  # retries: paused, nothing stored
    assert rig.applied(sent) == [True] * 3
    assert rig.store.commits == 1
    assert rig.consumer.store_calls == [{P0: 2, P1: 1}]
    assert rig.paused_at_consume[-1] == set()  # resumed before consuming again
    assert rig.transient_errors("DatabaseUnavailable") == 2


def test_a_partition_assigned_during_a_fault_is_paused_too() -> None:
    seen: list[set[TP]] = []

    def before(n: int) -> None:
        seen.append(set(rig.consumer.paused))
        if n == 1:
            rig.consumer.schedule_assign(P2)

    rig = Rig(partitions=3, assigned=[P0, P1], down=lambda n: n == 1, before_attempt=before)
    sent = rig.send(0) + rig.send(2)
    rig.run()
    assert seen == [set(), {P0, P1, P2}, set()]  # batch 2 (p2) runs after the resume
    assert rig.applied(sent) == [True, True]
    assert rig.consumer.store_calls == [{P0: 1}, {P2: 1}]


def test_stop_during_a_fault_abandons_the_batch_without_storing() -> None:
    rig = Rig(down=lambda n: True)
    rig.before_attempt = lambda n: rig.worker.stop() if n == 2 else None
    sent = rig.send(0, 2)
    rig.run()
    assert rig.attempts == 2
    assert rig.applied(sent) == [False, False]
    assert rig.consumer.store_calls == []
    assert rig.consumer.committed == {}
    assert rig.consumer.closed


# --- dead letters --------------------------------------------------------------------------


POISON = b"\xc3\x01not a command"


def test_poison_goes_to_the_dlq_with_its_reason_and_original_record() -> None:
    rig = Rig(partitions=1)
    good = rig.send(0)
    rig.consumer.append(TOPIC, 0, POISON, key=b"k-1",
                        headers=[("content-type", b"application/avro"), ("x-app", b"a")])
    good += rig.send(0)
    rig.run()
    with pytest.raises(DecodeError) as reason:
        CODEC.decode(POISON, "application/avro")
    [dead] = rig.producer.acknowledged
    assert (dead.topic(), dead.key(), dead.value()) == (DLQ, b"k-1", POISON)
    assert dead.headers()[:2] == [("content-type", b"application/avro"), ("x-app", b"a")]
    assert header(dead, "dlq.reason") == reason.value.reason.encode()
    assert header(dead, "dlq.detail")
    assert (header(dead, "dlq.source.topic"), header(dead, "dlq.source.partition"),
            header(dead, "dlq.source.offset")) == (TOPIC.encode(), b"0", b"1")
    assert rig.applied(good) == [True, True]
    assert rig.consumer.store_calls == [{P0: 3}]


@pytest.mark.parametrize("verdict", ["fail", "withhold"])
def test_an_unacknowledged_dead_letter_stores_nothing(verdict: str) -> None:
    rig = Rig(partitions=1)
    rig.producer.default_verdict = verdict
    polls: list[dict[TP, int]] = []

    def on_call(name: str) -> None:
        if name == "poll":
            polls.append(dict(rig.consumer.stored))
            if len(polls) == 3:
                rig.worker.stop()

    rig.consumer.on_call = on_call
    good = rig.send(0)
    rig.consumer.append(TOPIC, 0, POISON)
    rig.run()
    assert polls == [{}, {}, {}]
    assert rig.consumer.store_calls == []
    assert rig.consumer.committed == {}
    assert rig.producer.acknowledged == []
    assert len(rig.producer.produced) >= 2  # the dead letter was retried
    assert rig.applied(good) == [True]
    assert rig.store.commits == 1  # retries resend the dead letter; the batch is not redone


def test_a_dead_letter_delivered_on_retry_lets_the_offsets_be_stored() -> None:
    rig = Rig(partitions=1)
    rig.producer.fail_next(1)
    good = rig.send(0)
    rig.consumer.append(TOPIC, 0, POISON)
    rig.run()
    assert len(rig.producer.failed) == 1
    assert [m.value() for m in rig.producer.acknowledged] == [POISON]
    assert rig.applied(good) == [True]
    assert rig.store.commits == 1
    assert rig.consumer.store_calls == [{P0: 2}]


# --- rebalances ----------------------------------------------------------------------------


def two_batches(rig: Rig) -> tuple[list[CreateResource], list[CreateResource]]:
    """p0 and p1 get four commands each; with batch_size 4 the second batch holds offsets
    2-3 of both partitions."""
    p0, p1 = rig.send(0, 4), rig.send(1, 4)
    return p0, p1


def partway(rig: Rig, schedule: Callable[..., None]) -> Callable[[int], None]:
    """As the second batch's first attempt starts (and fails), move p1 away; as its retry
    starts, note how many partitions the worker reports."""

    def before(n: int) -> None:
        if n == 2:
            schedule(P1)
        elif n == 3:
            rig.assigned_at_retry.append(rig.worker.readiness()["assigned_partitions"])

    return before


@pytest.mark.parametrize("auto_commit", [True, False])
def test_revoke_mid_batch_abandons_the_revoked_records_and_commits_what_was_stored(
        auto_commit: bool) -> None:
    rig = Rig(batch_size=4, auto_commit=auto_commit, down=lambda n: n == 2)
    rig.before_attempt = partway(rig, rig.consumer.schedule_revoke)
    p0, p1 = two_batches(rig)
    rig.run()
    assert rig.assigned_at_retry == [1]
    assert rig.applied(p0) == [True] * 4
    assert rig.applied(p1) == [True, True, False, False]  # left for the next owner
    assert rig.consumer.committed == {P0: 4, P1: 2}
    assert named(rig.consumer.store_calls, P1) == [2]
    assert named(rig.consumer.store_calls, P0) == [2, 4]


def test_lost_mid_batch_abandons_the_lost_records_and_commits_nothing_of_them() -> None:
    rig = Rig(batch_size=4, down=lambda n: n == 2)
    rig.before_attempt = partway(rig, rig.consumer.schedule_lost)
    p0, p1 = two_batches(rig)
    rig.run()
    assert rig.assigned_at_retry == [1]
    assert rig.applied(p0) == [True] * 4
    assert rig.applied(p1) == [True, True, False, False]
    assert rig.consumer.committed == {P0: 4}
    assert all(P1 not in c for c in rig.consumer.commits)
    assert named(rig.consumer.store_calls, P1) == [2]  # before the loss only


def test_a_record_that_slips_through_the_pause_is_rewound_not_skipped() -> None:
    rig = Rig(partitions=1, batch_size=2, down=lambda n: n == 1)
    rig.before_attempt = lambda n: rig.consumer.slip_through_pause(1) if n == 1 else None
    sent = rig.send(0, 3)
    rig.run()
    assert rig.consumer.seeks == [(P0, 2)]
    assert rig.applied(sent) == [True] * 3
    assert rig.consumer.store_calls == [{P0: 2}, {P0: 3}]


def poison_rig() -> Rig:
    rig = Rig(partitions=1)
    rig.consumer.append(TOPIC, 0, b"\x00garbage" + b"x" * 100_000, key=b"k")
    rig.send(0)
    return rig


def test_a_dead_letter_too_large_for_the_dlq_topic_is_shrunk_and_sent() -> None:
    rig = poison_rig()
    rig.producer.refuse_larger_than(64 * 1024, KafkaError.MSG_SIZE_TOO_LARGE)
    rig.run()
    dead = [m for m in rig.producer.acknowledged if m.topic() == DLQ]
    assert len(dead) == 1
    assert header(dead[0], "dlq.truncated") == b"true"
    assert header(dead[0], "dlq.original.value.size") == b"100008"
    assert rig.consumer.committed[P0] == 2
