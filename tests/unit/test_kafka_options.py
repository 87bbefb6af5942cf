"""Kafka option maps: any JSON value in, librdkafka values out, each key to the right client."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from phoenix_resources.adapters import kafka
from phoenix_resources.config import Settings

pytestmark = pytest.mark.unit


def test_per_client_maps_take_any_json_value_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOENIX_KAFKA_CONSUMER_OPTIONS",
                       '{"session.timeout.ms": 45000, "check.crcs": true, '
                       '"debug": ["cgrp", "fetch"], "fetch.wait.max.ms": 100.0}')
    monkeypatch.setenv("PHOENIX_KAFKA_PRODUCER_OPTIONS", '{"linger.ms": 2.5}')
    monkeypatch.setenv("PHOENIX_KAFKA_ADMIN_OPTIONS", '{"socket.timeout.ms": 5000}')
    s = Settings()
    assert s.kafka_consumer_options == {"session.timeout.ms": 45000, "check.crcs": True,
                                        "debug": "cgrp,fetch", "fetch.wait.max.ms": 100}
    assert s.kafka_producer_options == {"linger.ms": "2.5"}
    assert s.kafka_config("admin")["socket.timeout.ms"] == 5000


@pytest.mark.parametrize("raw", ['{"a.b": null}', '{"a.b": {"c": 1}}', '{"a.b": [[1]]}',
                                 '{"a.b": [null]}'])
def test_values_librdkafka_cannot_take_are_refused_naming_the_key(
        monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("PHOENIX_KAFKA_OPTIONS", raw)
    with pytest.raises(ValidationError, match=r"a\.b"):
        Settings()


def test_client_specific_keys_of_the_shared_map_reach_only_their_clients() -> None:
    s = Settings(kafka_options={"security.protocol": "SSL", "session.timeout.ms": 30000,
                                "linger.ms": 20},
                 kafka_consumer_options={"session.timeout.ms": 45000})
    producer = kafka.producer_config(s)
    consumer = kafka.consumer_config(s)
    admin = kafka.admin_config(s)
    assert "session.timeout.ms" not in producer
    assert "session.timeout.ms" not in admin
    assert consumer["session.timeout.ms"] == 45000, "the consumer map beats the shared one"
    assert "linger.ms" not in consumer
    assert "linger.ms" not in admin
    assert producer["linger.ms"] == 20, "the shared options beat the built-in tuning"
    assert {producer["security.protocol"], consumer["security.protocol"],
            admin["security.protocol"]} == {"SSL"}


def test_options_may_tune_but_never_undo_a_guarantee() -> None:
    with pytest.raises(ValidationError, match="acks=1 would break a guarantee"):
        Settings(kafka_producer_options={"acks": 1})
    with pytest.raises(ValidationError, match=r"enable\.auto\.offset\.store"):
        Settings(kafka_options={"enable.auto.offset.store": True})
    with pytest.raises(ValidationError, match="PHOENIX_CONSUMER_GROUP"):
        Settings(kafka_consumer_options={"group.id": "other"})
    with pytest.raises(ValidationError, match="PHOENIX_KAFKA_BOOTSTRAP_SERVERS"):
        Settings(kafka_options={"bootstrap.servers": "elsewhere:9092"})
    same = Settings(kafka_producer_options={"acks": -1, "enable.idempotence": "true"})
    assert kafka.producer_config(same)["acks"] == "all"


def test_static_membership_applies_to_the_workers_group_only() -> None:
    s = Settings(group_instance_id="phoenix-resources-worker-0")
    assert kafka.consumer_config(s)["group.instance.id"] == "phoenix-resources-worker-0"
    assert "group.instance.id" not in kafka.consumer_config(s, "billing-subscriber")
    assert "group.instance.id" not in kafka.consumer_config(Settings())
