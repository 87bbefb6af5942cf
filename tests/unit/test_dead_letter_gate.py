"""Dead letters fit the DLQ topic as configured, and one it refuses holds its own partition
only: the real :class:`Worker` on the fakes, the DLQ topic's ``max.message.bytes`` played by
:attr:`FakeProducer.topic_limits` (what the broker enforces) and ``dlq_topic_max_bytes``
(what the worker reads from it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message

from phoenix_resources.adapters.dlq import RECORD_BATCH_OVERHEAD
from phoenix_resources.adapters.records import header_pairs, wire_size
from phoenix_resources.errors import BrokerUnavailable
from tests.fakes import header
from tests.unit.test_worker_rules import DLQ, TOPIC, Rig

pytestmark = pytest.mark.unit

P0, P1 = (TOPIC, 0), (TOPIC, 1)
POISON = b"\x00garbage" + b"x" * 100_000
TOO_SMALL = 300
"""A limit below any dead letter's own headers."""


@dataclass
class Topic:
    """The DLQ topic's ``max.message.bytes``: what the broker enforces and what describing
    the topic answers, changed together as an operator's ``alter_configs`` does."""

    rig: Rig
    limit: int
    describable: bool = True
    reads: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    """Answers describing gives before the current limit (read before an operator's
    change)."""

    def __post_init__(self) -> None:
        self.set(self.limit)

    def set(self, limit: int) -> None:
        self.limit = limit
        self.rig.producer.topic_limits[DLQ] = limit

    def read(self) -> int | None:
        if not self.describable:
            raise BrokerUnavailable("TOPIC_AUTHORIZATION_FAILED: may not describe")
        self.reads.append(self.stale.pop(0) if self.stale else self.limit)
        return self.reads[-1]


def rig_with_dlq_limit(limit: int, partitions: int = 2, describable: bool = True
                       ) -> tuple[Rig, Topic]:
    topic: Topic | None = None
    rig = Rig(partitions=partitions, dlq_topic_max_bytes=lambda: topic.read() if topic else None)
    topic = Topic(rig, limit, describable)
    polls = 0

    def on_call(name: str) -> None:
        # A worker waiting out a fault polls and never idles: a test that expects it not to
        # wait must not hang when it does.
        nonlocal polls
        polls += name == "poll"
        if polls > 1000:
            rig.worker.stop()

    rig.consumer.on_call = on_call
    return rig, topic


@dataclass
class Stopped:
    """The worker as it was when told to stop (closing the consumer then revokes all)."""

    readiness: dict[str, Any]
    paused: set[tuple[str, int]]
    blocked: float | None


def run_until(rig: Rig, done: Callable[[], bool], *,
              each_idle: Callable[[int], None] = lambda n: None, limit: int = 200) -> Stopped:
    """Run the worker; each time it finds nothing to consume a second passes (the gate's
    backoff runs on that clock) and ``each_idle(n)`` runs; stop once ``done()``."""
    idles = 0
    stopped: list[Stopped] = []

    def on_idle() -> None:
        nonlocal idles
        idles += 1
        rig.consumer.clock.advance(1.0)
        each_idle(idles)
        if done() or idles >= limit:
            stopped.append(Stopped(rig.worker.readiness(), set(rig.consumer.paused),
                                   blocked_gauge(rig, 0)))
            rig.worker.stop()

    rig.consumer.on_idle = on_idle
    rig.run()
    assert done(), f"not done after {idles} idle rounds"
    return stopped[0]


def dead_letters(rig: Rig) -> list[Message]:
    return [m for m in rig.producer.acknowledged if m.topic() == DLQ]


def refused(rig: Rig) -> list[Message]:
    return [m for m in rig.producer.failed if m.topic() == DLQ]


def blocked_gauge(rig: Rig, partition: int) -> float | None:
    return rig.metrics.registry.get_sample_value("phoenix_dlq_blocked",
                                                 {"partition": str(partition)})


def batch_size(m: Message) -> int:
    return RECORD_BATCH_OVERHEAD + wire_size(m.key(), m.value(), header_pairs(m))


# --- sized to the topic ---------------------------------------------------------------------


def test_a_dead_letter_is_sized_to_the_dlq_topics_limit_before_it_is_sent() -> None:
    rig, topic = rig_with_dlq_limit(16 * 1024, partitions=1)
    rig.consumer.append(TOPIC, 0, POISON, key=b"k")
    good = rig.send(0)
    rig.run()
    [dead] = dead_letters(rig)
    assert refused(rig) == []  # fitted the first time: no refusal to learn from
    assert topic.reads == [16 * 1024]
    assert batch_size(dead) <= 16 * 1024
    assert len(dead.value() or b"") > 10_000  # as much of the value as fits
    assert header(dead, "dlq.truncated") == b"true"
    assert header(dead, "dlq.original.value.size") == str(len(POISON)).encode()
    assert rig.applied(good) == [True]
    assert rig.consumer.committed[P0] == 2


def test_a_limit_lowered_after_it_was_read_is_read_again_when_the_topic_refuses() -> None:
    rig, topic = rig_with_dlq_limit(16 * 1024, partitions=1)
    topic.stale = [64 * 1024]  # read before an operator lowered it
    rig.consumer.append(TOPIC, 0, POISON, key=b"k")
    rig.send(0)
    rig.run()
    assert topic.reads == [64 * 1024, 16 * 1024]
    assert len(refused(rig)) == 1
    [dead] = dead_letters(rig)  # rebuilt and sent in the same step: nothing held
    assert batch_size(dead) <= 16 * 1024
    assert rig.consumer.committed[P0] == 2


def test_a_limit_that_cannot_be_read_is_found_by_halving_below_each_refusal() -> None:
    rig, _ = rig_with_dlq_limit(16 * 1024, partitions=1, describable=False)
    rig.consumer.append(TOPIC, 0, POISON, key=b"k")
    good = rig.send(0)
    run_until(rig, lambda: rig.consumer.committed.get(P0) == 2)
    [dead] = dead_letters(rig)
    assert header(dead, "dlq.truncated") == b"true"
    assert batch_size(dead) <= 16 * 1024
    assert refused(rig), "the limit was learnt from refusals"
    assert rig.applied(good) == [True]


# --- a dead letter the topic cannot take ----------------------------------------------------


def blocked_rig(limit: int = TOO_SMALL) -> tuple[Rig, Topic, list, list]:  # type: ignore[type-arg]
    """p0: a good command, the poison, two good commands; p1: three good commands. The DLQ
    topic's limit is below any dead letter."""
    rig, topic = rig_with_dlq_limit(limit)
    p0 = rig.send(0)
    rig.consumer.append(TOPIC, 0, POISON, key=b"k")
    p0 += rig.send(0, 2)
    p1 = rig.send(1, 3)
    return rig, topic, p0, p1


def test_a_dead_letter_the_topic_cannot_take_holds_its_own_partition_only() -> None:
    rig, topic, p0, p1 = blocked_rig()
    later: list = []  # type: ignore[type-arg]

    def each_idle(n: int) -> None:
        if n == 3:  # while p0 waits: p1 keeps being consumed, p0 is not
            later.extend(rig.send(1, 2))
            later.extend(rig.send(0, 1))

    stopped = run_until(rig, lambda: len(later) == 3 and rig.applied(later[:2]) == [True, True],
                        each_idle=each_idle, limit=20)
    assert rig.applied(p0) == [True, True, True]  # the batch committed before its DLQ step
    assert rig.applied(p1) == [True] * 3
    assert rig.applied(later) == [True, True, False]  # p0's new command waits
    assert rig.consumer.committed[P1] == 5
    assert rig.consumer.committed[P0] == 1  # up to the poison, never past it
    assert max(o for c in rig.consumer.store_calls for tp, o in c.items() if tp == P0) == 1
    assert dead_letters(rig) == []
    assert len(refused(rig)) == 1  # not sent again against the limit that refused it,
    assert len(topic.reads) > 2  # but that limit is read again at each retry
    state = stopped.readiness
    assert (state["ok"], state["reason"]) == (False, "dlq_blocked")
    assert state["dlq_blocked"]["partitions"] == [0]
    assert state["dlq_blocked"]["refusal"].startswith("MSG_SIZE_TOO_LARGE")
    assert stopped.blocked == 1
    assert stopped.paused == {P0}
    assert rig.transient_errors("BrokerUnavailable") == 0  # not waited out as an outage


def test_a_limit_raised_as_it_is_read_takes_the_dead_letter_built_for_the_new_limit() -> None:
    rig, topic, _, _ = blocked_rig()

    def each_idle(n: int) -> None:
        if n == 3:
            topic.set(16 * 1024)  # the broker takes 16 KiB from now on,
            topic.stale = [TOO_SMALL]  # describing the topic answers the old limit once more

    run_until(rig, lambda: bool(dead_letters(rig)), each_idle=each_idle, limit=30)
    [dead] = dead_letters(rig)
    assert batch_size(dead) > 8 * 1024  # built for 16 KiB, not cut to the old limit
    assert not topic.stale


def test_once_the_limit_is_raised_the_dead_letter_goes_and_the_partition_resumes() -> None:
    rig, topic, p0, p1 = blocked_rig()
    after: list = []  # type: ignore[type-arg]

    def each_idle(n: int) -> None:
        if n == 3:
            assert rig.worker.readiness()["ok"] is False
            after.extend(rig.send(0, 1))  # waits behind the held partition
            topic.set(16 * 1024)  # the operator raises the topic's max.message.bytes

    stopped = run_until(rig, lambda: bool(after) and rig.applied(after) == [True],
                        each_idle=each_idle, limit=30)
    [dead] = dead_letters(rig)
    assert header(dead, "dlq.source.offset") == b"1"
    assert header(dead, "dlq.truncated") == b"true"
    assert rig.applied(p0 + p1) == [True] * 6
    assert rig.consumer.committed[P0] == 5  # the held batch's end, then the new command
    assert rig.consumer.store_calls.count({P0: 4}) == 1  # stored once delivered
    assert stopped.readiness["ok"] is True
    assert "reason" not in stopped.readiness
    assert stopped.blocked == 0
    assert stopped.paused == set()
    value = rig.metrics.registry.get_sample_value(
        "phoenix_commands_total", {"outcome": "dead_lettered", "code": "unknown-schema"})
    assert value == 1


def test_a_topic_that_refuses_for_another_reason_holds_the_partition_until_it_accepts(
        ) -> None:
    rig, _, p0, p1 = blocked_rig(limit=1_048_588)
    rig.producer.refuse_next(KafkaError.TOPIC_AUTHORIZATION_FAILED, count=3)
    stopped = run_until(rig, lambda: len(dead_letters(rig)) == 1)
    assert len(refused(rig)) == 3
    assert rig.applied(p0 + p1) == [True] * 6
    assert rig.consumer.committed == {P0: 4, P1: 3}
    assert stopped.readiness["ok"] is True


def test_a_held_partition_stays_held_through_a_faults_pause_and_resume() -> None:
    rig, _, _, _ = blocked_rig()
    failures: list[int] = []

    def down(attempt: int) -> bool:  # the attempt right after failures were asked for
        return bool(failures) and failures.pop() > 0

    rig.down = down
    later: list = []  # type: ignore[type-arg]

    def each_idle(n: int) -> None:
        if n == 2:
            failures.append(1)
            later.extend(rig.send(1, 1) + rig.send(0, 1))

    stopped = run_until(rig, lambda: len(later) == 2 and rig.applied(later[:1]) == [True],
                        each_idle=each_idle, limit=10)
    assert rig.transient_errors("DatabaseUnavailable") == 1
    assert stopped.readiness["paused"] is False  # resumed after the fault …
    assert stopped.paused == {P0}  # … but not p0
    assert rig.applied(later) == [True, False]


def test_a_record_of_a_held_partition_that_slips_through_is_rewound_not_applied() -> None:
    rig, topic, _, _ = blocked_rig()
    slipped: list = []  # type: ignore[type-arg]

    def each_idle(n: int) -> None:
        if n == 2:
            slipped.extend(rig.send(0, 1))
            rig.consumer.slip_through_pause(1)
        if n == 4:
            assert rig.applied(slipped) == [False]
            topic.set(16 * 1024)

    run_until(rig, lambda: bool(slipped) and rig.applied(slipped) == [True],
              each_idle=each_idle, limit=20)
    assert (P0, 4) in rig.consumer.seeks
    assert rig.consumer.committed[P0] == 5


def test_a_revoked_held_partition_is_forgotten_and_committed_up_to_the_poison() -> None:
    rig, _, _, _ = blocked_rig()
    seen: list[bool] = []

    def each_idle(n: int) -> None:
        if n == 2:
            seen.append(P0 in rig.worker.gate.held)
            rig.consumer.schedule_revoke(P0)

    stopped = run_until(rig, lambda: bool(seen) and not rig.worker.gate.held,
                        each_idle=each_idle, limit=5)
    assert seen == [True]
    assert rig.consumer.committed[P0] == 1  # the next owner starts at the poison
    assert stopped.readiness["ok"] is True
    assert stopped.blocked == 0
