"""The client library against a broker that is not there, with the real librdkafka: the
connection checks name the bootstrap servers, a subscriber built to give up does so once
every broker is down, and librdkafka's retries reach ``logging`` as one line per problem —
however many clients retry it."""

from __future__ import annotations

import logging

import pytest

from phoenix_resources.client import ClientSettings, CommandPublisher, EventSubscriber
from phoenix_resources.errors import BrokerUnreachable
from tests.support.net import free_port

pytestmark = pytest.mark.integration


def test_clients_of_a_dead_broker_fail_fast_and_log_each_problem_once(
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    servers = f"127.0.0.1:{port}"
    settings = ClientSettings(kafka_bootstrap_servers=servers)
    with caplog.at_level(logging.INFO, logger="phoenix_resources.librdkafka"):
        publisher = CommandPublisher(settings)
        try:
            with pytest.raises(BrokerUnreachable, match=f"Kafka at {servers} within 1s"):
                publisher.check_connection(1)
            publisher.poll(1.0)  # librdkafka's lines are handed over while polling
        finally:
            publisher.close(timeout=0)
        with (EventSubscriber(settings, unreachable_after_s=1) as events,
              pytest.raises(BrokerUnreachable, match=servers)):
            next(events.deliveries(timeout=60))  # all brokers down: checked, gave up

    refused = [r for r in caplog.records if r.name == "phoenix_resources.librdkafka"
               and f"Connect to ipv4#127.0.0.1:{port} failed" in r.getMessage()]
    assert len(refused) == 1, [r.getMessage() for r in refused]
    assert refused[0].levelno == logging.ERROR
