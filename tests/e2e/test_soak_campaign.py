"""The bounded fault campaign (``phoenix-resources soak``'s CI size) against a private
PostgreSQL and Kafka broker of this test's own, which it restarts."""

from __future__ import annotations

import pytest

from phoenix_resources.config import Settings
from phoenix_resources.devstack import KafkaBroker, PostgresCluster
from phoenix_resources.soak.campaign import Campaign, Plan
from phoenix_resources.soak.report import render
from phoenix_resources.soak.targets import LocalServices
from tests.support.kafka import Topics, create_topics
from tests.support.net import free_port

pytestmark = pytest.mark.e2e


def test_bounded_campaign_loses_nothing_and_applies_nothing_twice(
        settings: Settings, private_postgres: PostgresCluster,
        private_broker: KafkaBroker) -> None:
    topics = Topics.unique()
    create_topics(private_broker.bootstrap_servers,
                  {topics.commands: 3, topics.events: 3, topics.rejections: 1, topics.dlq: 1})
    on_private = settings.model_copy(update={
        "database_url": private_postgres.url(),
        "kafka_bootstrap_servers": private_broker.bootstrap_servers,
        "commands_topic": topics.commands, "events_topic": topics.events,
        "rejections_topic": topics.rejections, "dlq_topic": topics.dlq,
        "relay_session_timeout_s": 3.0, "http_port": free_port(), "log_format": "json"})
    plan = Plan.bounded(seed=5)
    report = Campaign(plan, on_private, LocalServices(private_postgres, private_broker)).run()
    print(render(report))
    assert report.ok, render(report)
    assert report.injected["sigkill"] >= 20
    assert report.injected["postgres-restart"] >= 2
    assert report.injected["kafka-restart"] >= 2
    assert report.injected["rebalance-storm"] >= 1
    assert report.injected["hung-relay"] >= 1
    assert report.violations("nothing lost") == 0
    assert report.violations("nothing applied twice") == 0
