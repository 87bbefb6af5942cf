"""The relay's rules, driving the real use case (and the process around it) with a fake
outbox reader and a fake producer behind the real publisher: rows leave the outbox only after
every delivery is acknowledged, and only the leader publishes."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError

from phoenix_resources.adapters.publish import KafkaEventPublisher
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import AnyCommand, CreateResource, UpdateResource
from phoenix_resources.entrypoints.relay import Relay, policy
from phoenix_resources.errors import BrokerUnavailable
from phoenix_resources.observability import Metrics
from phoenix_resources.services.apply_batch import apply_batch
from phoenix_resources.services.ports import Incoming
from phoenix_resources.services.relay import OutboxRelay
from tests.fakes import FakeOutboxReader, FakeProducer, FakeStore, header

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
EVENTS, REJECTIONS = "events", "rejections"
SETTINGS = Settings(relay_batch_size=100, relay_poll_interval_s=0.001, retry_initial_s=0.001,
                    retry_max_s=0.002, event_source="urn:test", log_format="console")


def filled_store() -> FakeStore:
    """Three creates and one rejection, committed by the worker's use case."""
    store = FakeStore()
    commands: list[AnyCommand] = [
        CreateResource(command_id=uuid.uuid4(), resource_id=uuid.uuid4(), issued_at=T0,
                       name="r", config={}) for _ in range(3)]
    commands.append(UpdateResource(command_id=uuid.uuid4(), resource_id=uuid.uuid4(),
                                   issued_at=T0, name="x"))
    apply_batch(store.unit(events_topic=EVENTS, rejections_topic=REJECTIONS),
                [Incoming(c, 0, i) for i, c in enumerate(commands)], T0)
    assert len(store.outbox) == 4
    return store


def publisher(producer: FakeProducer) -> KafkaEventPublisher:
    return KafkaEventPublisher(producer, SETTINGS.event_source)


def rules(session: FakeOutboxReader, producer: FakeProducer) -> OutboxRelay:
    """The use case alone."""
    return OutboxRelay(session, publisher(producer), policy(SETTINGS))


def relay(session: FakeOutboxReader, producer: FakeProducer) -> Relay:
    """The use case inside the relay process's loop."""
    return Relay(SETTINGS, reader=session, publisher=publisher(producer), metrics=Metrics())


def ce_ids(producer: FakeProducer, which: str = "produced") -> list[str]:
    return [(header(m, "ce_id") or b"").decode() for m in getattr(producer, which)]


def test_rows_are_deleted_only_after_every_delivery_is_acknowledged() -> None:
    store = filled_store()
    rows = list(store.outbox)
    producer = FakeProducer()
    acked_at_delete: list[int] = []
    session = FakeOutboxReader(store, on_call=lambda name: acked_at_delete.append(
        len(producer.acknowledged)) if name == "delete" else None)
    assert session.try_lead()
    assert rules(session, producer).publish_once() == 4
    assert acked_at_delete == [4]
    assert store.outbox == []
    assert ce_ids(producer, "acknowledged") == [str(r.id) for r in rows]
    assert [(m.topic(), m.key(), m.value()) for m in producer.acknowledged] == [
        (r.topic, r.aggregateid.encode(), r.payload) for r in rows]


@pytest.mark.parametrize("verdict", ["fail", "withhold"])
def test_an_unacknowledged_delivery_deletes_nothing_and_the_retry_repeats_the_ids(
        verdict: str) -> None:
    store = filled_store()
    rows = list(store.outbox)
    producer = FakeProducer()
    getattr(producer, f"{verdict}_next")(1)
    session = FakeOutboxReader(store)
    assert session.try_lead()
    r = rules(session, producer)
    with pytest.raises(BrokerUnavailable):
        r.publish_once()
    assert store.outbox == rows
    assert session.deleted == []
    producer.release_withheld()  # a late report reaches the old batch; nothing rides on it
    assert r.publish_once() == 4
    assert store.outbox == []
    ids = [str(row.id) for row in rows]
    assert ce_ids(producer) == ids + ids  # the second attempt carries the same ce_id
    assert set(ce_ids(producer, "acknowledged")) == set(ids)


def test_the_running_relay_retries_a_failed_batch_until_every_row_is_delivered() -> None:
    store = filled_store()
    ids = [str(r.id) for r in store.outbox]
    producer = FakeProducer()
    producer.fail_next(1)
    session = FakeOutboxReader(store)
    r = relay(session, producer)
    session.on_call = lambda name: r.stop() if name == "wait_for_commit" else None
    r.run()
    assert store.outbox == []
    assert Counter(ce_ids(producer)) == {i: 2 for i in ids}
    assert ids[0] not in ce_ids(producer, "acknowledged")[:3]  # its first delivery failed
    assert session.calls.count("try_lead") == 2  # stepped down on the fault, then led again
    assert store.relay_lock is None  # released when the relay stopped


def test_a_standby_relay_publishes_nothing_until_the_leader_lets_go() -> None:
    store = filled_store()
    leader = FakeOutboxReader(store)
    assert leader.try_lead()
    producer = FakeProducer()
    standby = FakeOutboxReader(store)
    r = relay(standby, producer)
    standby.on_call = lambda name: r.stop() if standby.calls.count("try_lead") == 3 else None
    r.run()
    assert producer.produced == []
    assert len(store.outbox) == 4
    assert set(standby.calls) == {"try_lead", "close"}

    leader.close()
    takeover = relay(standby, producer)
    standby.on_call = lambda name: takeover.stop() if name == "wait_for_commit" else None
    takeover.run()
    assert len(producer.acknowledged) == 4
    assert store.outbox == []


def test_a_leader_whose_lock_is_gone_publishes_nothing_and_steps_down() -> None:
    store = filled_store()
    rows = list(store.outbox)
    producer = FakeProducer()
    session = FakeOutboxReader(store)
    r = rules(session, producer)
    assert r.lead()
    store.relay_lock = None  # the session ended under it (PostgreSQL freed the lock)
    assert r.publish_once() == 0
    assert producer.produced == []
    assert store.outbox == rows
    assert not r.leading
    assert session.calls[-1] == "close"


def test_readiness_and_metrics_count_parked_rows_as_backlog_and_a_standby_reports_none(
        ) -> None:
    """A parked row is backlog: the leader's readiness and /metrics show it (the relay stays
    ready: everything else is published). A relay that stepped down shows none — the leader
    counts — so a count it made while leading never outlives a retry or a discard."""
    store = filled_store()
    producer = FakeProducer()
    producer.refuse_next(KafkaError.INVALID_RECORD)  # the first row, for good
    session = FakeOutboxReader(store)
    r = relay(session, producer)
    r.rules.run_round()
    state = r.watch.readiness()
    assert (state["ok"], state["leading"]) == (True, True)
    assert (state["backlog_rows"], state["waiting_rows"], state["parked_rows"]) == (1, 0, 1)
    value = r.metrics.registry.get_sample_value
    assert (value("phoenix_outbox_backlog_rows"), value("phoenix_outbox_parked_rows")) == (0, 1)

    r.rules.step_down()
    state = r.watch.readiness()
    assert (state["leading"], state["backlog_rows"], state["parked_rows"]) == (False, 0, 0)
    assert value("phoenix_outbox_parked_rows") == 0
    assert len(store.outbox_parked) == 1  # still parked: counted by whoever leads
