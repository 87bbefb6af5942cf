"""publish_all judges every record: transient failures are retried by the caller, permanent
refusals are reported per record, and a refusal of a whole batch never condemns the small
records batched with a large one. Verdicts per error code are checked against librdkafka's
table."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from phoenix_resources.adapters.produce_errors import Verdict, classify
from phoenix_resources.adapters.publish import publish_all
from phoenix_resources.adapters.records import OutgoingRecord
from phoenix_resources.errors import BrokerFatal, BrokerUnavailable, RecordRefused
from tests.support.fake_broker import FakeBroker

pytestmark = pytest.mark.unit

SMALL = b"s" * 100
BIG = b"B" * 50_000


def rec(key: str, value: bytes = SMALL, topic: str = "events") -> OutgoingRecord:
    return OutgoingRecord(topic, key.encode(), value, [("h", b"1")])


def test_all_delivered_returns_the_count() -> None:
    broker = FakeBroker()
    records = [rec("a"), rec("b"), rec("c")]
    assert publish_all(broker, records) == 3  # type: ignore[arg-type]
    assert broker.log == records


def test_only_the_oversize_record_is_refused_not_the_records_batched_with_it() -> None:
    broker = FakeBroker(topic_limit=10_000)
    records = [rec("a"), rec("b", BIG), rec("c"), rec("d")]
    with pytest.raises(RecordRefused) as caught:
        publish_all(broker, records)  # type: ignore[arg-type]
    assert set(caught.value.refused) == {1}
    assert caught.value.refused[1].startswith("MSG_SIZE_TOO_LARGE")
    assert caught.value.delivered == frozenset({0, 2, 3})
    assert caught.value.held == frozenset()
    assert [r.key for r in broker.log] == [b"a", b"c", b"d"]  # resent alone, in order


def test_a_lone_record_refused_for_its_size_is_refused_without_a_second_try() -> None:
    broker = FakeBroker(topic_limit=10_000)
    with pytest.raises(RecordRefused) as caught:
        publish_all(broker, [rec("a", BIG)])  # type: ignore[arg-type]
    assert set(caught.value.refused) == {0}
    assert broker.flushes == 1


def test_keep_key_order_holds_later_records_of_a_refused_key() -> None:
    broker = FakeBroker(topic_limit=10_000)
    records = [rec("k"), rec("k", BIG), rec("k"), rec("other"), rec("k")]
    with pytest.raises(RecordRefused) as caught:
        publish_all(broker, records, keep_key_order=True)  # type: ignore[arg-type]
    e = caught.value
    assert set(e.refused) == {1}
    assert e.delivered == frozenset({0, 3})
    assert e.held == frozenset({2, 4})
    assert [r.key for r in broker.log] == [b"k", b"other"]


def test_without_keep_key_order_later_records_of_the_key_still_go() -> None:
    broker = FakeBroker(topic_limit=10_000)
    records = [rec("k", BIG), rec("k")]
    with pytest.raises(RecordRefused) as caught:
        publish_all(broker, records)  # type: ignore[arg-type]
    assert caught.value.delivered == frozenset({1})


def test_a_record_over_the_producer_limit_is_refused_by_produce_and_holds_its_key() -> None:
    broker = FakeBroker(producer_limit=1000, topic_limit=10**9)
    records = [rec("k", b"x" * 2000), rec("k"), rec("j")]
    with pytest.raises(RecordRefused) as caught:
        publish_all(broker, records, keep_key_order=True)  # type: ignore[arg-type]
    assert set(caught.value.refused) == {0}
    assert caught.value.held == frozenset({1})
    assert [r.key for r in broker.log] == [b"j"]


def test_an_invalid_record_is_refused_and_its_innocent_batch_mates_resent() -> None:
    broker = FakeBroker(invalid={b"poison"})
    records = [rec("a"), rec("b", b"poison"), rec("c")]
    with pytest.raises(RecordRefused) as caught:
        publish_all(broker, records)  # type: ignore[arg-type]
    assert set(caught.value.refused) == {1}
    assert caught.value.refused[1].startswith("INVALID_RECORD")
    assert caught.value.delivered == frozenset({0, 2})


def test_a_transient_failure_wins_over_refusals_so_the_caller_retries_everything() -> None:
    broker = FakeBroker(topic_limit=10_000, propagating={"late"})
    records = [rec("a", BIG), rec("b", topic="late")]
    with pytest.raises(BrokerUnavailable, match="1 of 2 records not delivered"):
        publish_all(broker, records)  # type: ignore[arg-type]


def test_an_unreachable_broker_is_transient() -> None:
    with pytest.raises(BrokerUnavailable, match="_MSG_TIMED_OUT"):
        publish_all(FakeBroker(down=True), [rec("a")])  # type: ignore[arg-type]


def test_a_topic_confirmed_absent_is_a_refusal() -> None:
    broker = FakeBroker(absent={"gone"})
    with pytest.raises(RecordRefused) as caught:
        publish_all(broker, [rec("a", topic="gone"), rec("b")])  # type: ignore[arg-type]
    assert set(caught.value.refused) == {0}
    assert caught.value.refused[0].startswith("UNKNOWN_TOPIC_OR_PART")
    assert caught.value.delivered == frozenset({1})


def test_a_fatal_producer_error_stops_the_process() -> None:
    with pytest.raises(BrokerFatal):
        publish_all(FakeBroker(fatal=True), [rec("a")])  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "verdict"), [
    (KafkaError.MSG_SIZE_TOO_LARGE, Verdict.TOO_LARGE),
    (KafkaError.RECORD_LIST_TOO_LARGE, Verdict.TOO_LARGE),
    (KafkaError.INVALID_RECORD, Verdict.REFUSED),
    (KafkaError.TOPIC_AUTHORIZATION_FAILED, Verdict.REFUSED),
    (KafkaError.CLUSTER_AUTHORIZATION_FAILED, Verdict.REFUSED),
    (KafkaError.TOPIC_EXCEPTION, Verdict.REFUSED),
    (KafkaError.INVALID_TIMESTAMP, Verdict.REFUSED),
    (KafkaError.UNKNOWN_TOPIC_OR_PART, Verdict.TOPIC_MISSING),
    (KafkaError._UNKNOWN_TOPIC, Verdict.TOPIC_MISSING),
    (KafkaError._MSG_TIMED_OUT, Verdict.TRANSIENT),
    (KafkaError._TRANSPORT, Verdict.TRANSIENT),
    (KafkaError._ALL_BROKERS_DOWN, Verdict.TRANSIENT),
    (KafkaError.NOT_ENOUGH_REPLICAS, Verdict.TRANSIENT),
    (KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, Verdict.TRANSIENT),
    (KafkaError.LEADER_NOT_AVAILABLE, Verdict.TRANSIENT),
    (KafkaError.NOT_LEADER_FOR_PARTITION, Verdict.TRANSIENT),
    (KafkaError.REQUEST_TIMED_OUT, Verdict.TRANSIENT),
    (KafkaError.KAFKA_STORAGE_ERROR, Verdict.TRANSIENT),
    (KafkaError.THROTTLING_QUOTA_EXCEEDED, Verdict.TRANSIENT),
    (KafkaError._PURGE_QUEUE, Verdict.TRANSIENT),
    (KafkaError.SASL_AUTHENTICATION_FAILED, Verdict.TRANSIENT),
    (KafkaError._FATAL, Verdict.FATAL),
    (KafkaError.PRODUCER_FENCED, Verdict.FATAL),
])
def test_verdict_per_code(code: int, verdict: Verdict) -> None:
    assert classify(KafkaError(code)) is verdict


def test_an_error_flagged_fatal_is_fatal_whatever_its_code() -> None:
    assert classify(KafkaError(KafkaError._MSG_TIMED_OUT, fatal=True)) is Verdict.FATAL
