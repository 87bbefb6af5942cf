"""The bounded fault campaign on production's shape (``phoenix-resources soak --topology
cluster``): a three-broker Kafka cluster and a synchronous PostgreSQL pair of this test's own,
with their faults — switchover, crash-promotion, a broker leader killed, in-sync replicas
below ``min.insync.replicas``, a hung broker — among process kills and a hung relay."""

from __future__ import annotations

import pytest

from phoenix_resources import bootstrap
from phoenix_resources.adapters.postgres import schema
from phoenix_resources.config import Settings
from phoenix_resources.devstack.kafka_cluster import BROKER_IDS
from phoenix_resources.soak.campaign import Campaign, Plan
from phoenix_resources.soak.cluster import CLUSTER_KINDS, ClusterServices
from phoenix_resources.soak.report import render
from tests.support.clusters import kafka_cluster, postgres_ha
from tests.support.kafka import Topics
from tests.support.net import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]


def test_bounded_cluster_campaign_loses_nothing_and_applies_nothing_twice() -> None:
    topics = Topics.unique()
    with postgres_ha() as pair, kafka_cluster() as cluster:
        schema.upgrade(pair.url())
        on_cluster = Settings(
            database_url=pair.url(), read_database_url=pair.read_url(),
            kafka_bootstrap_servers=cluster.bootstrap_servers,
            commands_topic=topics.commands, events_topic=topics.events,
            rejections_topic=topics.rejections, dlq_topic=topics.dlq,
            consumer_group=f"g-{topics.commands}", create_topics=True, topic_partitions=3,
            batch_max_wait_ms=20, retry_initial_s=0.05, retry_max_s=1.0,
            relay_session_timeout_s=3.0, relay_poll_interval_s=0.2, log_format="json",
            metrics_port=0, http_port=free_port(), grpc_port=free_port())
        bootstrap.prepare_topics(on_cluster)
        services = ClusterServices(cluster, BROKER_IDS, pair,
                                   bootstrap.topics_to_create(on_cluster), seed=3)
        plan = Plan.bounded_cluster(seed=3)
        report = Campaign(plan, on_cluster, services).run()
        print(render(report))
    assert report.ok, render(report)
    for kind in CLUSTER_KINDS:
        assert report.injected[kind] == 1, kind
    assert report.injected["sigkill"] == plan.faults["sigkill"]
    assert report.injected["hung-relay"] == 1
    assert report.violations("nothing lost") == 0
    assert report.violations("nothing applied twice") == 0
    assert report.violations("nothing parked") == 0
