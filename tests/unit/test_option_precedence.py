"""Which librdkafka value a client gets, layer by layer (docs/configuration.md): the
library's defaults < the user's option maps < what the caller asks for explicitly (an
argument, the CLI's ``--connect-timeout``) < the pinned guarantees; an alias and the name it
stands for are one key in every layer."""

from __future__ import annotations

from typing import Any

import pytest

from phoenix_resources import bootstrap, kafka_options
from phoenix_resources.adapters import kafka
from phoenix_resources.client import ClientSettings
from phoenix_resources.client.publisher import delivery_timeout, producer_options_for
from phoenix_resources.client.subscriber import consumer_options_for
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.cli.reach import Reach

pytestmark = pytest.mark.unit


def _publisher_config(settings: ClientSettings, delivery_timeout_s: float | None = None,
                      producer_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``CommandPublisher`` builds its producer from."""
    return kafka.producer_config(settings, **producer_options_for(
        settings, delivery_timeout_s, producer_options))


def _timeouts(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items()
            if kafka_options.canonical(k) == "delivery.timeout.ms"}


def test_the_users_producer_option_beats_the_publishers_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOENIX_KAFKA_PRODUCER_OPTIONS", '{"delivery.timeout.ms": 3000}')
    config = _publisher_config(ClientSettings())
    assert _timeouts(config) == {"delivery.timeout.ms": 3000}
    assert delivery_timeout(config) == 3.0, "the publisher waits as long as librdkafka does"


def test_without_user_options_the_publishers_defaults_apply() -> None:
    config = _publisher_config(ClientSettings())
    assert _timeouts(config) == {"delivery.timeout.ms": 30_000}
    assert config["client.id"] == "phoenix-resources-client"


@pytest.mark.parametrize("settings", [
    ClientSettings(kafka_producer_options={"message.timeout.ms": 4000, "client.id": "billing"}),
    ClientSettings(kafka_options={"message.timeout.ms": 4000, "client.id": "billing"}),
    Settings(kafka_options={"delivery.timeout.ms": 4000, "client.id": "billing"}),
], ids=["alias in the producer map", "alias in the shared map", "server settings"])
def test_any_spelling_in_any_user_map_beats_the_default(settings: Any) -> None:
    client = ClientSettings.from_settings(settings) if isinstance(settings, Settings) \
        else settings
    config = _publisher_config(client)
    assert list(_timeouts(config).values()) == [4000], "one key, the user's value"
    assert config["client.id"] == "billing"


def test_an_explicit_argument_beats_the_users_option() -> None:
    settings = ClientSettings(kafka_producer_options={"message.timeout.ms": 4000})
    assert _timeouts(_publisher_config(settings, delivery_timeout_s=7)) == {
        "delivery.timeout.ms": 7000}
    assert _timeouts(_publisher_config(settings, producer_options={
        "delivery.timeout.ms": 9000})) == {"delivery.timeout.ms": 9000}


def test_the_connect_timeout_flag_beats_the_user_only_when_given() -> None:
    settings = ClientSettings(kafka_producer_options={"delivery.timeout.ms": 3000},
                              kafka_options={"socket.connection.setup.timeout.ms": 20000})
    given = _publisher_config(settings, producer_options=Reach.of(2).kafka_options(
        "producer", settings, delivery=True))
    assert _timeouts(given) == {"delivery.timeout.ms": 2000}
    assert given["socket.connection.setup.timeout.ms"] == 2000
    default = _publisher_config(settings, producer_options=Reach.of(None).kafka_options(
        "producer", settings, delivery=True))
    assert _timeouts(default) == {"delivery.timeout.ms": 3000}
    assert default["socket.connection.setup.timeout.ms"] == 20000
    untouched = ClientSettings()
    assert Reach.of(None).kafka_options("producer", untouched, delivery=True) == {
        "socket.connection.setup.timeout.ms": 5000, "delivery.timeout.ms": 5000}
    assert Reach.of(None).kafka_options("consumer", untouched, delivery=True) == {
        "socket.connection.setup.timeout.ms": 5000}, "a delivery timeout is a producer's"


def test_the_connect_timeout_respects_librdkafkas_floor() -> None:
    assert kafka_options.connection_timeout_options("admin", 0.2) == {
        "socket.connection.setup.timeout.ms": 1000}


def test_the_subscribers_defaults_yield_but_its_arguments_do_not() -> None:
    settings = ClientSettings(kafka_consumer_options={"client.id": "audit",
                                                      "auto.offset.reset": "earliest"})
    seen: list[object] = []
    config = kafka.consumer_config(settings, "g", **consumer_options_for(
        settings, False, {"error_cb": seen.append}, seen.append))
    assert config["client.id"] == "audit"
    assert config["auto.offset.reset"] == "latest", "from_beginning=False is an argument"
    plain = kafka.consumer_config(ClientSettings(), "g", **consumer_options_for(
        ClientSettings(), True, None, seen.append))
    assert plain["client.id"] == "phoenix-resources-subscriber"
    assert plain["auto.offset.reset"] == "earliest"
    config["error_cb"]("boom")
    assert seen == ["boom", "boom"], "the subscriber and the caller both hear of errors"


def test_no_alias_in_a_user_map_undoes_a_pinned_guarantee() -> None:
    # request.required.acks is librdkafka's other name of acks: the settings' check reads
    # the name, the layering reads the setting.
    settings = ClientSettings(kafka_producer_options={"request.required.acks": 1,
                                                      "queue.buffering.max.ms": 50})
    config = kafka.producer_config(settings)
    assert "request.required.acks" not in config
    assert config["acks"] == "all"
    assert config["queue.buffering.max.ms"] == 50
    assert "linger.ms" not in config, "the user's alias replaced the built-in linger"


def test_layering_keeps_one_spelling_per_setting_the_last_layers() -> None:
    merged = kafka_options.layered({"delivery.timeout.ms": 1, "linger.ms": 5},
                                   {"message.timeout.ms": 2},
                                   {"delivery.timeout.ms": 3})
    assert merged == {"linger.ms": 5, "delivery.timeout.ms": 3}
    assert kafka_options.unset_by({"message.timeout.ms": 2},
                                  {"delivery.timeout.ms": 1, "client.id": "x"}) == {
        "client.id": "x"}


def test_every_client_gives_up_on_a_request_after_10_s_unless_the_user_says_otherwise(
        ) -> None:
    """A hung broker is noticed, and its partitions' new leaders looked up, within 10 s
    (librdkafka's own 60 s would stall them for a minute)."""
    assert kafka.producer_config(Settings())["socket.timeout.ms"] == 10_000
    assert kafka.consumer_config(Settings())["socket.timeout.ms"] == 10_000
    mine = Settings(kafka_options={"socket.timeout.ms": 30_000})
    assert kafka.producer_config(mine)["socket.timeout.ms"] == 30_000
    assert kafka.consumer_config(mine)["socket.timeout.ms"] == 30_000


def test_a_server_publish_waits_out_its_producers_delivery_timeout() -> None:
    """The server's producers give a record 30 s; a publish waits 5 s longer, so every
    record has its report (delivered or failed) before a retry queues it again."""
    assert _timeouts(bootstrap.producer_config(Settings())) == {"delivery.timeout.ms": 30_000}
    assert bootstrap.publish_wait_s(Settings()) == 35.0
    mine = Settings(kafka_producer_options={"message.timeout.ms": 60_000})
    assert _timeouts(bootstrap.producer_config(mine)) == {"message.timeout.ms": 60_000}
    assert bootstrap.publish_wait_s(mine) == 65.0
    assert bootstrap.publish_wait_s(Settings(kafka_options={"delivery.timeout.ms": 0})) \
        == kafka_options.NO_TIMEOUT_S + bootstrap.PUBLISH_MARGIN_S
