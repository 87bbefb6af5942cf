"""The worker's consumer lifecycle on its own: rebalances, pause and resume, waiting by
polling, offsets and close, driving the real :class:`ConsumerSession` with ``tests/fakes.py``'s
FakeConsumer. The worker's use of it is in ``test_worker_rules.py``; replacing a consumer out
of its group in ``test_consumer_replacement.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from phoenix_resources.entrypoints.consumer_session import ConsumerSession
from phoenix_resources.observability import Metrics
from phoenix_resources.observability.worker_watch import WorkerWatch
from tests.fakes import TP, FakeConsumer

pytestmark = pytest.mark.unit

TOPIC = "commands"
P0, P1, P2 = (TOPIC, 0), (TOPIC, 1), (TOPIC, 2)


class Rig:
    """A started session on a FakeConsumer; ``gone`` records what ``on_gone`` was told, with
    the group's committed offsets at that moment; ``commit_calls`` counts commit attempts."""

    def __init__(self, partitions: int = 2, *, auto_commit: bool = True,
                 assigned: list[TP] | None = None,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.consumer = FakeConsumer({TOPIC: partitions}, auto_commit=auto_commit,
                                     initial_assignment=assigned)
        self.metrics = Metrics()
        self.gone: list[tuple[set[int], dict[TP, int]]] = []
        self.commit_calls = 0
        real_commit = self.consumer.commit

        def commit(**kwargs: Any) -> Any:
            self.commit_calls += 1
            return real_commit(**kwargs)

        self.consumer.commit = commit  # type: ignore[method-assign]
        watch = WorkerWatch(self.metrics, self.consumer,  # type: ignore[arg-type]
                            monotonic=self.consumer.clock)
        self.session = ConsumerSession(
            self.consumer, topic=TOPIC, watch=watch, metrics=self.metrics,  # type: ignore[arg-type]
            on_gone=lambda ps: self.gone.append((ps, dict(self.consumer.committed))),
            stopping=stopping, monotonic=self.consumer.clock)

    def started(self) -> Rig:
        self.session.start()
        self.session.consume(100, 0)  # serves the initial assignment
        return self

    def send(self, partition: int, n: int = 1) -> None:
        for i in range(n):
            self.consumer.append(TOPIC, partition, b"v%d" % i)

    def rebalances(self, event: str) -> float:
        return self.metrics.rebalances.labels(event)._value.get()  # type: ignore[no-any-return]


def test_revoke_tells_the_worker_first_then_commits_what_was_stored() -> None:
    rig = Rig(auto_commit=False).started()
    rig.send(0)
    rig.send(1, 2)
    rig.session.store_offsets(rig.session.consume(100, 0))
    rig.consumer.schedule_revoke(P1)
    rig.session.consume(100, 0)
    assert rig.gone == [({1}, {})], "told before anything was committed"
    assert rig.consumer.committed == {P0: 1, P1: 2}
    assert rig.session.assignment == {P0}
    assert rig.rebalances("revoked") == 1


def test_lost_tells_the_worker_and_commits_nothing() -> None:
    rig = Rig().started()
    rig.send(1)
    rig.session.store_offsets(rig.session.consume(100, 0))
    rig.consumer.schedule_lost(P1)
    rig.session.consume(100, 0)
    assert rig.gone == [({1}, {})]
    assert rig.commit_calls == 0, "lost partitions are someone else's: no commit is tried"
    assert rig.session.assignment == {P0}
    assert rig.rebalances("lost") == 1


def test_offsets_are_stored_only_for_partitions_still_assigned() -> None:
    rig = Rig().started()
    rig.send(0, 2)
    rig.send(1)
    taken = rig.session.consume(100, 0)
    rig.consumer.schedule_lost(P1)
    rig.session.consume(100, 0)
    rig.session.store_offsets(taken)
    assert rig.consumer.store_calls == [{P0: 2}]


def test_a_partition_assigned_while_paused_is_paused_until_resume() -> None:
    rig = Rig(3, assigned=[P0, P1]).started()
    rig.session.pause()
    assert (rig.session.paused, rig.consumer.paused) == (True, {P0, P1})
    rig.consumer.schedule_assign(P2)
    rig.session.wait(1.0)
    assert rig.consumer.paused == {P0, P1, P2}
    rig.session.resume()
    assert (rig.session.paused, rig.consumer.paused) == (False, set())


@pytest.mark.parametrize("leave", ["revoke", "lost"])
def test_partitions_that_leave_while_paused_are_fetched_when_they_come_back(
        leave: str) -> None:
    """librdkafka keeps a pause on a partition that leaves the assignment: a worker that
    waits out a fault and loses its partitions meanwhile (its group session expired) must
    not get them back paused for good."""
    rig = Rig(2).started()
    rig.session.pause("BrokerUnavailable")
    getattr(rig.consumer, f"schedule_{leave}")(P0, P1)
    rig.session.wait(1.0)
    assert rig.session.assignment == set()
    rig.session.resume()
    rig.consumer.schedule_assign(P0, P1)
    rig.send(0)
    rig.send(1)
    assert sorted(m.partition() for m in rig.session.consume(100, 0)) == [0, 1]


def test_a_held_partition_that_leaves_is_fetched_when_it_comes_back() -> None:
    """The same for a partition held for its dead letters: leaving ends the hold, and the
    pause must go with it."""
    rig = Rig(2).started()
    rig.session.hold({P0})
    rig.consumer.schedule_revoke(P0)
    rig.session.consume(100, 0)
    assert rig.session.held == frozenset()
    rig.consumer.schedule_assign(P0)
    rig.send(0)
    assert [m.partition() for m in rig.session.consume(100, 0)] == [0]


def test_wait_rewinds_a_record_that_slips_through_the_pause() -> None:
    rig = Rig(1).started()
    rig.send(0, 2)
    rig.session.pause()
    rig.consumer.slip_through_pause(1)
    rig.session.wait(1.0)
    assert rig.consumer.seeks == [(P0, 0)]
    rig.session.resume()
    assert [m.offset() for m in rig.session.consume(100, 0)] == [0, 1], "nothing skipped"


def test_wait_polls_until_the_time_is_up() -> None:
    polls: list[str] = []
    rig = Rig().started()
    rig.consumer.on_call = polls.append
    started = rig.consumer.clock()
    rig.session.wait(1.0)
    assert set(polls) == {"poll"}
    assert rig.consumer.clock() >= started + 1.0


def test_wait_ends_when_the_worker_stops() -> None:
    polls: list[str] = []
    rig = Rig(stopping=lambda: len(polls) >= 3).started()
    rig.consumer.on_call = polls.append
    rig.session.wait(60.0)
    assert polls == ["poll"] * 3


def test_close_commits_what_was_stored_and_leaves() -> None:
    rig = Rig(auto_commit=False).started()
    rig.send(0)
    rig.session.store_offsets(rig.session.consume(100, 0))
    rig.session.close()
    assert rig.consumer.committed == {P0: 1}
    assert rig.consumer.closed


def test_close_before_subscribing_commits_nothing() -> None:
    rig = Rig()
    rig.session.close()
    assert rig.commit_calls == 0
    assert rig.consumer.closed
