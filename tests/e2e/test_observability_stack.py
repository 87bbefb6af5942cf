"""A real Prometheus scrapes a running worker, relay and API (two HTTP processes): the key
series exist and say what was sent (issue 11's acceptance test)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from phoenix_resources.client import CommandPublisher
from phoenix_resources.config import Settings
from tests.support.net import free_port
from tests.support.pipeline import publish_raw, wait_until
from tests.support.processes import Process
from tests.support.prometheus import Prometheus

pytestmark = pytest.mark.e2e

CREATES, REJECTED, LOOKUPS = 40, 5, 30


@pytest.fixture
def observed(settings: Settings, database_url: str) -> Iterator[tuple[Settings, Prometheus,
                                                                      str]]:
    ports = {"worker": free_port(), "relay": free_port(), "api": free_port()}
    observed = settings.model_copy(update={
        "metrics_port": None, "worker_metrics_port": ports["worker"],
        "relay_metrics_port": ports["relay"], "http_port": ports["api"], "http_workers": 2,
        "read_database_url": database_url, "log_format": "json"})
    procs = [Process(name, observed) for name in ("worker", "relay", "api")]
    prometheus = None
    try:
        api = f"http://127.0.0.1:{ports['api']}"
        for name, port in ports.items():
            url = api if name == "api" else f"http://127.0.0.1:{port}"
            wait_until(lambda url=url: _answers(f"{url}/healthz"), 60, f"{name} /healthz")
        prometheus = Prometheus({name: [f"127.0.0.1:{port}"] for name, port in ports.items()})
        yield observed, prometheus, api
    finally:
        if prometheus is not None:
            prometheus.stop()
        for p in procs:
            p.terminate()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_prometheus_sees_what_was_sent(observed: tuple[Settings, Prometheus, str]) -> None:
    settings, prom, api = observed
    for job in ("worker", "relay", "api"):
        prom.wait_for(f'up{{job="{job}"}}', 1, timeout=30)
        prom.wait_for(f'count(phoenix_build_info{{job="{job}",component="{job}"}})', 1)
    # Before anything is sent, the series an alert counts with increase() exist at 0.
    prom.wait_for('phoenix_commands_total{job="worker",outcome="dead_lettered",'
                  'code="malformed-json"}', 0)
    prom.wait_for('phoenix_commands_total{job="worker",outcome="parked",code="PRK-001"}', 0)

    with CommandPublisher(settings) as publisher:
        created = [publisher.create(f"r{i}") for i in range(CREATES)]
        for _ in range(REJECTED):
            publisher.update(uuid.uuid4(), name="nobody")  # CMD-004: no such resource
    publish_raw(settings, [(str(uuid.uuid4()).encode(), b"{not json", [])])

    prom.wait_for('sum(phoenix_commands_total{outcome="applied"})', CREATES)
    prom.wait_for('sum(phoenix_commands_total{outcome="rejected",code="CMD-004"})', REJECTED)
    prom.wait_for('sum(phoenix_commands_total{outcome="dead_lettered",code="malformed-json"})', 1)
    prom.wait_for('sum(phoenix_commands_total{outcome=~"duplicate|parked"})', 0)
    prom.wait_for("sum(phoenix_command_latency_seconds_count)", CREATES + REJECTED)
    # Everything consumed: the lag is back to 0, in records and in seconds.
    prom.wait_for('sum(phoenix_consumer_lag_messages{job="worker"})', 0)
    prom.wait_for('max(phoenix_consumer_lag_seconds{job="worker"})', 0)
    prom.wait_for('count(phoenix_consumer_lag_messages{job="worker"})', 3)  # every partition
    prom.wait_for("sum(phoenix_assigned_partitions)", 3)
    # The outbox is drained: every event and rejection published, nothing left behind.
    prom.wait_for("sum(phoenix_events_published_total)", CREATES + REJECTED)
    prom.wait_for(f'sum(phoenix_events_published_total{{topic="{settings.rejections_topic}"}})',
                  REJECTED)
    prom.wait_for("sum(phoenix_event_publish_latency_seconds_count)", CREATES + REJECTED)
    prom.wait_for('phoenix_outbox_backlog_rows{job="relay"}', 0)
    prom.wait_for('phoenix_outbox_parked_rows{job="relay"}', 0)
    prom.wait_for('phoenix_outbox_lag_seconds{job="relay"}', 0)
    prom.wait_for('phoenix_relay_active{job="relay"}', 1)
    prom.wait_for('phoenix_ready{component="worker"}', 1)
    prom.wait_for('phoenix_ready{component="relay"}', 1)

    # The API's counters are the sum over both of its processes, whichever answers a scrape.
    for sent in created[:LOOKUPS]:
        assert httpx.get(f"{api}/api/v1/resources/{sent.resource_id}").status_code == 200
    prom.wait_for('sum(phoenix_http_requests_total{route="/api/v1/resources/{id}",'
                  'status="200"})', LOOKUPS)
    prom.wait_for('sum(phoenix_http_request_seconds_count{route="/api/v1/resources/{id}"})',
                  LOOKUPS)

    # Resource use of each process kind.
    for job in ("worker", "relay"):
        assert (prom.value(f'process_resident_memory_bytes{{job="{job}"}}') or 0) > 0
        assert prom.value(f'process_cpu_seconds_total{{job="{job}"}}') is not None
        assert prom.query(f'python_gc_collections_total{{job="{job}"}}')
