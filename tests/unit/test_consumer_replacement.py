"""A consumer out of its group for ``consumer_replace_after_s`` is replaced between batches.

The group state comes from librdkafka's statistics documents (``adapters/group_membership``);
here they are fed by hand, with the real :class:`Worker` (and its :class:`ConsumerSession`) on
the fakes of ``tests/fakes.py``.
``tests/e2e/test_outages.py`` replaces a consumer through a real broker outage.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError, TopicPartition

from phoenix_resources.adapters.group_membership import GroupMembership
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import CreateResource
from phoenix_resources.entrypoints.worker import Worker
from phoenix_resources.errors import BrokerFatal
from phoenix_resources.observability import Metrics
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.framing import Framing
from tests.fakes import FakeClock, FakeConsumer, FakeProducer, FakeStore
from tests.support.encoded import hot_path

pytestmark = pytest.mark.unit

TOPIC = "commands"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CODEC = CommandCodec(Framing())
LIMIT = 60.0


def stats(state: str, join_state: str) -> str:
    return json.dumps({"name": "rdkafka#consumer-1", "type": "consumer",
                       "cgrp": {"state": state, "join_state": join_state, "stateage": 10,
                                "rebalance_cnt": 1, "assignment_size": 2}})


SETTLED = stats("up", "steady")
LOOKING = stats("wait-coord", "init")


class Rig:
    """A worker whose consumers share one group's logs and committed offsets."""

    def __init__(self, limit: float = LIMIT) -> None:
        self.clock = FakeClock()
        self.membership = GroupMembership(monotonic=self.clock)
        self.store = FakeStore()
        self.consumers = [FakeConsumer({TOPIC: 2}, clock=self.clock)]
        self.worker = Worker(
            Settings(commands_topic=TOPIC, dlq_topic="dlq", batch_max_wait_ms=0,
                     consumer_replace_after_s=limit, stuck_after_s=90, log_format="console"),
            consumer=self.consumers[0], producer=FakeProducer(), codec=CODEC,
            unit_factory=self.store.unit_factory(), metrics=Metrics(), clock=lambda: T0,
            native=hot_path(CODEC),
            monotonic=self.clock, membership=self.membership, new_consumer=self._replacement)
        self.session = self.worker.session
        self.session.start()

    def _replacement(self) -> FakeConsumer:
        """What bootstrap's ``new_consumer`` does: a consumer of the same group, whose
        statistics from now on are the ones that count."""
        self.membership.stats_callback()
        first = self.consumers[0]
        consumer = FakeConsumer({TOPIC: 2}, clock=self.clock)
        consumer.logs, consumer.committed, consumer.on_idle = (first.logs, first.committed,
                                                               first.on_idle)
        self.consumers.append(consumer)
        return consumer

    def send(self, n: int) -> None:
        for _ in range(n):
            command = CreateResource(command_id=uuid.uuid4(), resource_id=uuid.uuid4(),
                                     issued_at=T0, name="r", config={})
            value, content_type = CODEC.encode(command)
            self.consumers[0].append(TOPIC, 0, value, key=str(command.resource_id).encode(),
                                     headers=[("content-type", content_type.encode())])

    def replacements(self) -> float:
        return self.worker.metrics.consumer_replacements._value.get()  # type: ignore[no-any-return]


def test_a_consumer_out_of_its_group_too_long_is_replaced_and_the_new_one_resumes() -> None:
    rig = Rig()
    rig.send(3)
    rig.membership.observe(SETTLED)
    rig.worker.run_once()
    assert len(rig.store.processed) == 3
    rig.membership.observe(LOOKING)
    rig.clock.advance(LIMIT - 1)
    rig.worker.run_once()
    assert rig.replacements() == 0, "not before the limit"

    rig.clock.advance(2)
    rig.send(2)
    rig.worker.run_once()

    old, new = rig.consumers
    assert rig.replacements() == 1
    assert old.closed, "the replaced consumer is closed"
    assert rig.session.consumer is new
    assert old.committed[(TOPIC, 0)] == 3, "it committed what it had stored as it closed"
    rebalances = rig.worker.metrics.rebalances
    assert rebalances.labels("revoked")._value.get() == 0, "its closing revoke is ignored"
    assert rebalances.labels("lost")._value.get() == 1, "what it held is reported lost, once"
    assert len(rig.store.processed) == 5, "the new consumer resumed at the committed offset"
    assert rig.store.commits == 2


def test_one_replacement_per_period_while_the_group_stays_out_of_reach() -> None:
    rig = Rig()
    rig.membership.observe(LOOKING)
    rig.clock.advance(LIMIT + 1)
    rig.worker.run_once()
    rig.membership.observe(LOOKING)  # the new consumer is not settled either
    rig.clock.advance(LIMIT / 2)
    rig.worker.run_once()
    assert rig.replacements() == 1
    rig.clock.advance(LIMIT)
    rig.worker.run_once()
    assert rig.replacements() == 2
    assert [c.closed for c in rig.consumers] == [True, True, False]


@pytest.mark.parametrize(("limit", "document"), [(LIMIT, SETTLED), (0.0, LOOKING)])
def test_a_settled_consumer_or_a_limit_of_zero_is_never_replaced(limit: float,
                                                                 document: str) -> None:
    rig = Rig(limit)
    rig.membership.observe(document)
    rig.clock.advance(10 * LIMIT)
    rig.worker.run_once()
    assert rig.replacements() == 0
    assert rig.consumers[0].closed is False


def test_readiness_reports_the_group_and_fails_once_out_of_it_past_stuck_after_s() -> None:
    rig = Rig(limit=1000)
    rig.membership.observe(SETTLED)
    rig.worker.run_once()
    ready = rig.worker.readiness()
    assert (ready["ok"], ready["group_state"], ready["seconds_out_of_group"]) == (
        True, "up/steady", 0.0)
    rig.membership.observe(LOOKING)
    rig.clock.advance(91)
    ready = rig.worker.readiness()
    assert (ready["ok"], ready["group_state"]) == (False, "wait-coord/init")
    assert ready["seconds_out_of_group"] == 91.0


def test_callbacks_of_the_replaced_consumer_no_longer_move_the_assignment() -> None:
    rig = Rig()
    rig.worker.run_once()
    assert rig.session.assignment == {(TOPIC, 0), (TOPIC, 1)}
    old = rig.consumers[0]
    rig.membership.observe(LOOKING)
    rig.clock.advance(LIMIT + 1)
    rig.worker.run_once()
    assert rig.session.assignment == {(TOPIC, 0), (TOPIC, 1)}, "the new consumer's"
    rig.session._on_revoke(old, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    rig.session._on_lost(old, [TopicPartition(TOPIC, 1)])  # type: ignore[arg-type]
    assert rig.session.assignment == {(TOPIC, 0), (TOPIC, 1)}


def test_a_consumer_that_failed_for_good_is_replaced_at_the_next_batch() -> None:
    """librdkafka's fatal error (a static member fenced, say) leaves a consumer that will
    never fetch again: waiting for it to look out of its group would cost the whole limit."""
    rig = Rig()
    rig.membership.observe(SETTLED)
    rig.send(2)
    rig.worker.run_once()
    rig.consumers[0].emit_error(KafkaError._FATAL)
    rig.worker.run_once()  # the error event comes with this consume
    assert rig.replacements() == 0
    rig.send(1)
    rig.worker.run_once()
    assert rig.replacements() == 1
    assert rig.consumers[0].closed
    assert rig.session.consumer is rig.consumers[1]
    assert len(rig.store.processed) == 3, "the new consumer resumed where the old one was"


@pytest.mark.parametrize("limit", [LIMIT, 0.0])
def test_a_fatal_error_that_cannot_be_replaced_away_stops_the_worker(limit: float) -> None:
    """Replacement off, or a replacement that failed the same way within the limit (two
    processes with one group.instance.id fence each other): the process exits, and its
    supervisor restarts it with a backoff."""
    rig = Rig(limit)
    rig.consumers[0].emit_error(KafkaError._FATAL)
    if limit:
        rig.worker.run_once()
        rig.worker.run_once()
        assert rig.replacements() == 1
        rig.clock.advance(LIMIT / 2)
        rig.consumers[1].emit_error(KafkaError._FATAL)
    with pytest.raises(BrokerFatal):
        rig.worker.run_once()


class TestGroupMembership:
    def test_only_the_newest_consumers_statistics_count(self) -> None:
        clock = FakeClock()
        membership = GroupMembership(monotonic=clock)
        first = membership.stats_callback()
        second = membership.stats_callback()
        first(SETTLED)
        assert membership.state == "starting"
        second(LOOKING)
        assert membership.state == "wait-coord/init"

    def test_out_of_group_counts_from_the_last_settled_document(self) -> None:
        clock = FakeClock()
        membership = GroupMembership(monotonic=clock)
        clock.advance(5)
        assert membership.out_of_group_s() == 5.0, "start counts as settled"
        membership.observe(SETTLED)
        clock.advance(30)
        assert membership.out_of_group_s() == 0.0
        membership.observe(stats("up", "wait-join"))
        assert membership.out_of_group_s() == 30.0

    @pytest.mark.parametrize("document", ["not json", "[]", json.dumps({"type": "consumer"}),
                                          json.dumps({"cgrp": {"state": "up"}})])
    def test_a_document_without_a_group_state_changes_nothing(self, document: str) -> None:
        membership = GroupMembership(monotonic=FakeClock())
        membership.observe(SETTLED)
        membership.observe(document)
        assert membership.state == "up/steady"


def test_the_wait_for_the_group_starts_at_the_first_subscription() -> None:
    clock = FakeClock()
    membership = GroupMembership(monotonic=clock)
    clock.advance(500)  # start-up waited for the schema registry
    membership.joining()
    clock.advance(3)
    assert membership.out_of_group_s() == 3.0


def test_a_worker_that_started_slowly_does_not_replace_its_first_consumer_at_once() -> None:
    rig = Rig()
    rig.clock.advance(10 * LIMIT)  # e.g. waiting for the registry before subscribing
    rig.consumers[0].on_idle = rig.worker.stop
    rig.worker.run()
    assert rig.replacements() == 0
