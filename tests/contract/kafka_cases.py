"""The cases of ``test_kafka_fakes.py``: what the worker and the relay rely on from Kafka's
consumer and producer, as tests every backend runs.

:class:`KafkaContract` holds the tests and asks its subclass for topics, for records already
in a topic's log, and for consumers (configured as ``adapters.kafka.new_consumer`` does:
manual offset storage, auto-commit of what was stored, earliest reset, cooperative-sticky)
and producers (``new_producer``: idempotent). A real consumer takes a moment to join its
group, so tests consume in rounds of :attr:`KafkaContract.wait_s` until what they wait for
came (the fake answers at once); they assert what came, never how long it took.
"""

from __future__ import annotations

import abc
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from phoenix_resources.adapters.publish import publish_all
from phoenix_resources.adapters.records import OutgoingRecord
from phoenix_resources.errors import RecordRefused

ROUNDS = 120
"""Consume calls a test makes at most while waiting for records (of ``wait_s`` each)."""
QUIET_ROUNDS = 4
"""Consume calls that must bring nothing, where nothing is expected."""
LIMIT = 20_000
"""A topic's ``max.message.bytes`` where a test needs one."""
BIG = 50_000  # random bytes: compression cannot bring it under the limit

Record = tuple[bytes | None, bytes, Any]
"""(key, value, headers: a list of (name, bytes) pairs, or None)"""


def records(n: int, prefix: str = "r") -> list[Record]:
    return [(f"{prefix}{i}".encode(), f"value {prefix}{i}".encode(),
              [("content-type", b"application/json"), ("n", str(i).encode())])
            for i in range(n)]


def seen(messages: Sequence[Message]) -> list[tuple[int | None, int | None, Record]]:
    """(partition, offset, (key, value, headers)) of each message, in the order consumed."""
    for m in messages:
        assert m.error() is None, m.error()
    return [(m.partition(), m.offset(), (m.key(), m.value() or b"", m.headers()))
            for m in messages]


class Rebalances:
    """Rebalance callbacks that record what they were given (and may act on it)."""

    def __init__(self, on_assign: Callable[[Any, list[TopicPartition]], None] | None = None
                 ) -> None:
        self.assigned: list[tuple[str, int]] = []
        self.revoked: list[tuple[str, int]] = []
        self._then = on_assign

    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.assigned += [(tp.topic, tp.partition) for tp in partitions]
        if self._then is not None:
            self._then(consumer, partitions)

    def on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.revoked += [(tp.topic, tp.partition) for tp in partitions]


class KafkaContract(abc.ABC):
    """The consumer and producer behaviour the worker and the relay rely on, as tests."""

    wait_s: float = 0.5
    """Each consume call's timeout."""

    @abc.abstractmethod
    def topic(self, partitions: int = 1, max_message_bytes: int | None = None) -> str:
        """A new, empty topic."""

    @abc.abstractmethod
    def append(self, topic: str, partition: int, batch: Sequence[Record]) -> None:
        """Put these records at the end of the partition's log, in order."""

    @abc.abstractmethod
    def consumer(self, group: str) -> Any:
        """A new consumer in ``group`` (not yet subscribed)."""

    @abc.abstractmethod
    def producer(self) -> Any:
        """A new producer."""

    @abc.abstractmethod
    def absent_topic(self) -> str:
        """The name of a topic that does not exist."""

    # --- helpers ---------------------------------------------------------------------------

    @pytest.fixture
    def closing(self) -> Iterator[list[Any]]:
        """Consumers to close when the test ends."""
        made: list[Any] = []
        yield made
        for consumer in made:
            consumer.close()  # a closed consumer's close does nothing

    def subscribed(self, closing: list[Any], topic: str, group: str | None = None,
                   rebalances: Rebalances | None = None) -> Any:
        consumer = self.consumer(group or f"g-{uuid.uuid4().hex[:8]}")
        closing.append(consumer)
        r = rebalances or Rebalances()
        consumer.subscribe([topic], on_assign=r.on_assign, on_revoke=r.on_revoke)
        return consumer

    def consume(self, consumer: Any, count: int) -> list[Message]:
        """Consume until ``count`` records came (or the rounds ran out)."""
        got: list[Message] = []
        for _ in range(ROUNDS):
            got += consumer.consume(count - len(got), self.wait_s)
            if len(got) >= count:
                break
        return got

    def quiet(self, consumer: Any) -> list[Message]:
        """What a few more consume calls bring (nothing, when nothing is due)."""
        got: list[Message] = []
        for _ in range(QUIET_ROUNDS):
            got += consumer.consume(100, self.wait_s)
        return got

    def assigned(self, consumer: Any, rebalances: Rebalances, count: int) -> None:
        """Poll until the group assigned ``count`` partitions (a real join takes a moment)."""
        for _ in range(ROUNDS):
            if len(rebalances.assigned) >= count:
                return
            assert consumer.consume(100, self.wait_s) == []
        raise AssertionError(f"only {rebalances.assigned} assigned")

    # --- consuming ---------------------------------------------------------------------------

    def test_consume_returns_each_partitions_records_in_order_as_they_were_written(
            self, closing: list[Any]) -> None:
        topic = self.topic(partitions=2)
        first, second = records(3, "a"), records(2, "b")
        no_headers: list[Record] = [(None, b"bare", None)]
        self.append(topic, 0, first)
        self.append(topic, 1, second + no_headers)
        consumer = self.subscribed(closing, topic)
        got = seen(self.consume(consumer, 6))
        assert [(o, r) for p, o, r in got if p == 0] == list(enumerate(first))
        assert [(o, r) for p, o, r in got if p == 1] == list(enumerate(second + no_headers))
        assert self.quiet(consumer) == []

    def test_poll_returns_one_record_at_a_time_in_order(self, closing: list[Any]) -> None:
        topic = self.topic()
        self.append(topic, 0, records(2))
        consumer = self.subscribed(closing, topic)
        got: list[Message] = []
        for _ in range(ROUNDS):
            message = consumer.poll(self.wait_s)
            if message is not None:
                got.append(message)
            if len(got) == 2:
                break
        assert [(o, r) for _, o, r in seen(got)] == list(enumerate(records(2)))

    def test_subscribing_assigns_every_partition_inside_consume(
            self, closing: list[Any]) -> None:
        topic = self.topic(partitions=3)
        rebalances = Rebalances()
        consumer = self.subscribed(closing, topic, rebalances=rebalances)
        assert rebalances.assigned == []  # callbacks run only inside the client's calls
        self.assigned(consumer, rebalances, 3)
        assert sorted(rebalances.assigned) == [(topic, p) for p in range(3)]

    def test_close_revokes_the_assignment(self, closing: list[Any]) -> None:
        topic = self.topic(partitions=2)
        rebalances = Rebalances()
        consumer = self.subscribed(closing, topic, rebalances=rebalances)
        self.assigned(consumer, rebalances, 2)
        consumer.close()
        # (a partition revoked twice — lost and assigned again on a loaded machine — is fine)
        assert set(rebalances.revoked) == {(topic, 0), (topic, 1)}, \
            (rebalances.assigned, rebalances.revoked)

    def test_a_closed_consumer_refuses_every_call_but_close(self, closing: list[Any]) -> None:
        topic = self.topic()
        consumer = self.subscribed(closing, topic)
        consumer.close()
        tp, at = TopicPartition(topic, 0), TopicPartition(topic, 0, 1)
        for call in (lambda: consumer.consume(1, 0), lambda: consumer.poll(0),
                     lambda: consumer.pause([tp]), lambda: consumer.resume([tp]),
                     lambda: consumer.store_offsets(offsets=[at]),
                     lambda: consumer.commit(asynchronous=False), lambda: consumer.seek(at),
                     lambda: consumer.position([tp]),
                     lambda: consumer.get_watermark_offsets(tp)):
            with pytest.raises(RuntimeError):
                call()
        consumer.close()  # closing again does nothing

    # --- pause and resume ----------------------------------------------------------------------

    def test_a_paused_partition_yields_nothing_until_resumed(self, closing: list[Any]) -> None:
        topic = self.topic(partitions=2)
        rebalances = Rebalances()
        consumer = self.subscribed(closing, topic, rebalances=rebalances)
        self.assigned(consumer, rebalances, 2)
        consumer.pause([TopicPartition(topic, 0)])
        self.append(topic, 0, records(2, "a"))
        self.append(topic, 1, records(2, "b"))
        assert {p for p, _, _ in seen(self.consume(consumer, 2))} == {1}
        assert self.quiet(consumer) == []
        consumer.resume([TopicPartition(topic, 0)])
        assert [(p, o) for p, o, _ in seen(self.consume(consumer, 2))] == [(0, 0), (0, 1)]

    def test_a_pause_inside_on_assign_holds_once_the_partitions_are_assigned(
            self, closing: list[Any]) -> None:
        """What the worker does while it waits out an outage: newly assigned partitions are
        assigned (``incremental_assign``) and then paused inside ``on_assign``."""
        def assign_then_pause(c: Any, tps: list[TopicPartition]) -> None:
            c.incremental_assign(tps)
            c.pause([tp for tp in tps if tp.partition == 0])
        topic = self.topic(partitions=2)
        self.append(topic, 0, records(2, "a"))
        self.append(topic, 1, records(2, "b"))
        consumer = self.subscribed(closing, topic, rebalances=Rebalances(assign_then_pause))
        assert {p for p, _, _ in seen(self.consume(consumer, 2))} == {1}
        assert self.quiet(consumer) == []
        consumer.resume([TopicPartition(topic, 0)])
        assert [(p, o) for p, o, _ in seen(self.consume(consumer, 2))] == [(0, 0), (0, 1)]

    def test_a_pause_inside_on_assign_before_the_assignment_is_lost(
            self, closing: list[Any]) -> None:
        """Only assigned partitions can be paused; inside ``on_assign`` the new ones are
        assigned when the callback returns, unless it assigned them itself."""
        topic = self.topic(partitions=2)
        self.append(topic, 0, records(2, "a"))
        consumer = self.subscribed(closing, topic, rebalances=Rebalances(
            lambda c, tps: c.pause([tp for tp in tps if tp.partition == 0])))
        assert [(p, o) for p, o, _ in seen(self.consume(consumer, 2))] == [(0, 0), (0, 1)]

    def test_a_pause_outlives_the_assignment(self, closing: list[Any]) -> None:
        """librdkafka keeps the application's pause on a partition that leaves the
        assignment: assigned to the same consumer again, it stays paused until resumed. (A
        worker paused by a fault that loses its partitions meanwhile must resume them.)"""
        topic = self.topic()
        rebalances = Rebalances()
        consumer = self.subscribed(closing, topic, rebalances=rebalances)
        self.assigned(consumer, rebalances, 1)
        consumer.pause([TopicPartition(topic, 0)])
        consumer.unsubscribe()
        assert self.quiet(consumer) == []
        assert rebalances.revoked == [(topic, 0)]
        consumer.subscribe([topic], on_assign=rebalances.on_assign,
                           on_revoke=rebalances.on_revoke)
        self.assigned(consumer, rebalances, 2)
        self.append(topic, 0, records(2))
        assert self.quiet(consumer) == []
        consumer.resume([TopicPartition(topic, 0)])
        assert [(p, o) for p, o, _ in seen(self.consume(consumer, 2))] == [(0, 0), (0, 1)]

    # --- offsets -----------------------------------------------------------------------------

    def test_a_new_member_resumes_after_the_committed_offsets(
            self, closing: list[Any]) -> None:
        topic, group = self.topic(), f"g-{uuid.uuid4().hex[:8]}"
        self.append(topic, 0, records(5))
        consumer = self.subscribed(closing, topic, group)
        assert len(self.consume(consumer, 5)) == 5
        consumer.store_offsets(offsets=[TopicPartition(topic, 0, 3)])
        consumer.commit(asynchronous=False)
        consumer.close()
        again = self.subscribed(closing, topic, group)
        assert [o for _, o, _ in seen(self.consume(again, 2))] == [3, 4]

    def test_close_commits_what_was_stored(self, closing: list[Any]) -> None:
        topic, group = self.topic(), f"g-{uuid.uuid4().hex[:8]}"
        self.append(topic, 0, records(4))
        consumer = self.subscribed(closing, topic, group)
        assert len(self.consume(consumer, 4)) == 4
        consumer.store_offsets(offsets=[TopicPartition(topic, 0, 2)])
        consumer.close()
        again = self.subscribed(closing, topic, group)
        assert [o for _, o, _ in seen(self.consume(again, 2))] == [2, 3]

    def test_nothing_stored_means_nothing_committed(self, closing: list[Any]) -> None:
        topic, group = self.topic(), f"g-{uuid.uuid4().hex[:8]}"
        self.append(topic, 0, records(2))
        consumer = self.subscribed(closing, topic, group)
        assert len(self.consume(consumer, 2)) == 2
        with pytest.raises(KafkaException) as refused:
            consumer.commit(asynchronous=False)
        assert refused.value.args[0].code() == KafkaError._NO_OFFSET
        consumer.close()
        again = self.subscribed(closing, topic, group)
        assert [o for _, o, _ in seen(self.consume(again, 2))] == [0, 1]

    def test_storing_an_offset_of_a_partition_it_does_not_read_is_refused(
            self, closing: list[Any]) -> None:
        topic, other = self.topic(), self.topic()
        rebalances = Rebalances()
        consumer = self.subscribed(closing, topic, rebalances=rebalances)
        self.assigned(consumer, rebalances, 1)
        with pytest.raises(KafkaException) as refused:
            consumer.store_offsets(offsets=[TopicPartition(other, 0, 1)])
        assert refused.value.args[0].code() == KafkaError._UNKNOWN_PARTITION

    def test_position_seek_and_watermarks(self, closing: list[Any]) -> None:
        topic = self.topic()
        self.append(topic, 0, records(5))
        consumer = self.subscribed(closing, topic)
        assert len(self.consume(consumer, 3)) == 3
        tp = TopicPartition(topic, 0)
        assert [p.offset for p in consumer.position([tp])] == [3]
        assert consumer.get_watermark_offsets(tp, timeout=10) == (0, 5)
        consumer.seek(TopicPartition(topic, 0, 1))
        assert [o for _, o, _ in seen(self.consume(consumer, 4))] == [1, 2, 3, 4]

    # --- producing ---------------------------------------------------------------------------

    def test_every_record_gets_one_report_and_flush_leaves_nothing_in_flight(self) -> None:
        topic = self.topic()
        producer = self.producer()
        reports: list[tuple[int, KafkaError | None, int | None]] = []
        for i, (key, value, headers) in enumerate(records(3)):
            producer.produce(topic, value=value, key=key, headers=headers,
                             on_delivery=lambda err, msg, i=i: reports.append(
                                 (i, err, msg.offset())))
        assert producer.flush(30) == 0
        assert len(producer) == 0
        assert [(i, err) for i, err, _ in reports] == [(0, None), (1, None), (2, None)]
        offsets = [o or 0 for _, _, o in reports]
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == 3

    def test_a_record_over_the_topics_limit_is_refused_for_its_size(self) -> None:
        topic = self.topic(max_message_bytes=LIMIT)
        producer = self.producer()
        errors: list[KafkaError | None] = []
        producer.produce(topic, value=os.urandom(BIG), key=b"k",
                         on_delivery=lambda err, _msg: errors.append(err))
        assert producer.flush(30) == 0
        assert [e.code() if e else None for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE]

    def test_a_topics_limit_counts_headers_and_takes_what_fits(self) -> None:
        """``max.message.bytes`` bounds key, value and headers together: a small value with
        large headers is refused, a value close to the limit alone is taken (each record in
        a batch of its own)."""
        topic = self.topic(max_message_bytes=LIMIT)
        producer = self.producer()
        errors: list[KafkaError | None] = []
        heavy = [(f"h{i}", os.urandom(1000)) for i in range(LIMIT // 1000 + 5)]
        for value, headers in [(b"small", heavy), (os.urandom(LIMIT - 200), None)]:
            producer.produce(topic, value=value, key=b"k", headers=headers,
                             on_delivery=lambda err, _msg: errors.append(err))
            assert producer.flush(30) == 0
        assert [e.code() if e else None for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE,
                                                              None]

    def test_publish_all_refuses_only_the_oversize_record(self) -> None:
        """What the relay parks: the one record too large, whatever it was batched with (the
        broker refuses whole batches). The later record with its key is held — or delivered,
        when it was in flight before the refusal came; the others are delivered."""
        topic = self.topic(max_message_bytes=LIMIT)
        batch = [OutgoingRecord(topic, b"a", b"small", []),
                 OutgoingRecord(topic, b"b", os.urandom(BIG), []),
                 OutgoingRecord(topic, b"c", b"small", []),
                 OutgoingRecord(topic, b"b", b"small", [])]
        with pytest.raises(RecordRefused) as refused:
            publish_all(self.producer(), batch, keep_key_order=True)
        assert set(refused.value.refused) == {1}
        assert refused.value.refused[1].startswith("MSG_SIZE_TOO_LARGE")
        assert {0, 2} <= refused.value.delivered
        assert refused.value.delivered | refused.value.held == {0, 2, 3}

    def test_publish_all_refuses_a_record_for_a_topic_that_does_not_exist(self) -> None:
        topic, missing = self.topic(), self.absent_topic()
        batch = [OutgoingRecord(missing, b"a", b"lost", []),
                 OutgoingRecord(topic, b"b", b"kept", [])]
        with pytest.raises(RecordRefused) as refused:
            publish_all(self.producer(), batch)
        assert set(refused.value.refused) == {0}
        assert refused.value.delivered == {1}
