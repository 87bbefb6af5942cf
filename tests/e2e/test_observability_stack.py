"""A real Prometheus scrapes every process kind as it runs — a worker, a relay, the API with
two HTTP processes and with one, the gRPC server, the console, and ``run`` — and the series
the dashboard and the alerts read exist and say what was sent (issue 11's acceptance test)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import pytest

from phoenix_resources.client import CommandPublisher
from phoenix_resources.config import Settings
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2_grpc as pb_grpc
from tests.support.http_api import reader_url
from tests.support.net import free_port
from tests.support.pipeline import publish_raw, wait_until
from tests.support.processes import Process
from tests.support.prometheus import Prometheus

pytestmark = pytest.mark.e2e

CREATES, REJECTED, LOOKUPS, GRPC_LOOKUPS = 40, 5, 30, 7
PARTITIONS = 3  # the commands topic of every test (tests/conftest.py)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _console_env(port: int) -> dict[str, str]:
    token = hashlib.sha256(b"operator-token").hexdigest()
    return {"PHOENIX_CONSOLE_PORT": str(port),
            "PHOENIX_CONSOLE_OPERATOR_TOKEN_HASHES": json.dumps({"alice": token})}


@dataclass
class Stack:
    settings: Settings
    prometheus: Prometheus
    api: str
    grpc: str
    spare_worker: Settings
    """A second worker's settings (same group), for the revoke."""


@pytest.fixture
def stack(settings: Settings, pg_server: str,
          database_url: str) -> Iterator[Stack]:
    """A worker, a relay, the API with two HTTP processes, the gRPC server and the console,
    each scraped as its own job; a second worker's job is scraped too (up once started)."""
    ports = {"worker": free_port(), "relay": free_port(), "api": free_port(),
             "grpc": free_port(), "console": free_port(), "worker2": free_port()}
    observed = settings.model_copy(update={
        "metrics_port": None, "worker_metrics_port": ports["worker"],
        "relay_metrics_port": ports["relay"], "http_port": ports["api"], "http_workers": 2,
        "read_database_url": reader_url(pg_server, database_url), "log_format": "json"})
    grpc_port = free_port()
    procs = [Process("worker", observed), Process("relay", observed), Process("api", observed),
             Process("grpc", observed.model_copy(update={"grpc_port": grpc_port,
                                                         "metrics_port": ports["grpc"]})),
             Process("console", observed, **_console_env(ports["console"]))]
    prometheus = None
    try:
        for name, port in ports.items():
            if name != "worker2":
                wait_until(lambda port=port: _answers(f"http://127.0.0.1:{port}/metrics"), 60,
                           f"{name} /metrics")
        prometheus = Prometheus({name: [f"127.0.0.1:{port}"] for name, port in ports.items()})
        yield Stack(observed, prometheus, f"http://127.0.0.1:{ports['api']}",
                    f"127.0.0.1:{grpc_port}",
                    observed.model_copy(update={"worker_metrics_port": ports["worker2"]}))
    finally:
        if prometheus is not None:
            prometheus.stop()
        for p in procs:
            p.terminate()


def test_prometheus_sees_what_was_sent(stack: Stack) -> None:
    settings, prom, api = stack.settings, stack.prometheus, stack.api
    kinds = ("worker", "relay", "api", "grpc", "console")
    for job in kinds:
        prom.wait_for(f'up{{job="{job}"}}', 1, timeout=30)
        prom.wait_for(f'count(phoenix_build_info{{job="{job}",component="{job}"}})', 1)
        # Every process kind says whether it is ready, under its own kind.
        prom.wait_for(f'phoenix_ready{{job="{job}",component="{job}"}}', 1)
    # Before anything is sent, the series an alert counts with increase() exist at 0 ...
    prom.wait_for('phoenix_commands_total{job="worker",outcome="dead_lettered",'
                  'code="malformed-json"}', 0)
    prom.wait_for('phoenix_commands_total{job="worker",outcome="parked",code="PRK-001"}', 0)
    # ... and the idle worker's assigned partitions have their lag, at 0.
    prom.wait_for('count(phoenix_consumer_lag_messages{job="worker"})', PARTITIONS)
    prom.wait_for('count(phoenix_consumer_lag_seconds{job="worker"})', PARTITIONS)
    prom.wait_for('max(phoenix_consumer_lag_messages{job="worker"})', 0)
    prom.wait_for('max(phoenix_consumer_lag_seconds{job="worker"})', 0)

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
    prom.wait_for('count(phoenix_consumer_lag_messages{job="worker"})', PARTITIONS)
    prom.wait_for("sum(phoenix_assigned_partitions)", PARTITIONS)
    # The outbox is drained: every event and rejection published, nothing left behind.
    prom.wait_for("sum(phoenix_events_published_total)", CREATES + REJECTED)
    prom.wait_for(f'sum(phoenix_events_published_total{{topic="{settings.rejections_topic}"}})',
                  REJECTED)
    prom.wait_for("sum(phoenix_event_publish_latency_seconds_count)", CREATES + REJECTED)
    prom.wait_for('phoenix_outbox_backlog_rows{job="relay"}', 0)
    prom.wait_for('phoenix_outbox_parked_rows{job="relay"}', 0)
    prom.wait_for('phoenix_outbox_lag_seconds{job="relay"}', 0)
    prom.wait_for('phoenix_relay_active{job="relay"}', 1)

    # The API's counters are the sum over both of its processes, whichever answers a scrape.
    for sent in created[:LOOKUPS]:
        assert httpx.get(f"{api}/api/v1/resources/{sent.resource_id}").status_code == 200
    prom.wait_for('sum(phoenix_http_requests_total{route="/api/v1/resources/{id}",'
                  'status="200"})', LOOKUPS)
    prom.wait_for('sum(phoenix_http_request_seconds_count{route="/api/v1/resources/{id}"})',
                  LOOKUPS)
    _the_grpc_server_reports_calls_and_streams(stack, [c.resource_id for c in created])
    _every_kind_reports_its_resources(prom, kinds)
    _the_two_api_processes_report_each_its_own(prom)
    _a_replaced_api_process_leaves_its_series_and_keeps_its_counts(prom)
    _revoked_partitions_leave_the_scrape(stack)


def _the_grpc_server_reports_calls_and_streams(stack: Stack, ids: list[uuid.UUID]) -> None:
    prom = stack.prometheus
    prom.wait_for('phoenix_grpc_active_streams{job="grpc",method="WatchResources"}', 0)
    with grpc.insecure_channel(stack.grpc) as channel:
        stub = pb_grpc.ResourceServiceStub(channel)
        stub.GetResource(pb.GetResourceRequest(id=str(ids[0])), timeout=10)
        # The edge makes a method's series at its first call: let Prometheus see it before
        # the others, so that the rate (and the dashboard's p99) has an increase to show.
        prom.wait_for('phoenix_grpc_calls_total{job="grpc",method="GetResource",code="OK"}', 1)
        for rid in ids[1:GRPC_LOOKUPS]:
            stub.GetResource(pb.GetResourceRequest(id=str(rid)), timeout=10)
        with pytest.raises(grpc.RpcError):
            stub.GetResource(pb.GetResourceRequest(id=str(uuid.uuid4())), timeout=10)
        watch = stub.WatchResources(pb.WatchResourcesRequest(from_beginning=True), timeout=120)
        next(watch)  # the stream is open: its first event arrived
        prom.wait_for('phoenix_grpc_active_streams{job="grpc",method="WatchResources"}', 1)
        watch.cancel()
    prom.wait_for('phoenix_grpc_active_streams{job="grpc",method="WatchResources"}', 0)
    prom.wait_for('phoenix_grpc_calls_total{job="grpc",method="GetResource",code="OK"}',
                  GRPC_LOOKUPS)
    prom.wait_for('phoenix_grpc_calls_total{job="grpc",method="GetResource",code="NOT_FOUND"}',
                  1)
    prom.wait_for('sum(phoenix_grpc_call_seconds_count{job="grpc",method="GetResource"})',
                  GRPC_LOOKUPS)
    # The dashboard's p99 has a value.
    prom.wait_for('histogram_quantile(0.99, sum by (le) (rate(phoenix_grpc_call_seconds_bucket'
                  '{job="grpc",method="GetResource"}[1m]))) > bool 0', 1)


def _every_kind_reports_its_resources(prom: Prometheus, kinds: tuple[str, ...]) -> None:
    for job in kinds:
        assert (prom.value(f'sum(process_resident_memory_bytes{{job="{job}"}})') or 0) > 0, job
        assert prom.value(f'sum(process_cpu_seconds_total{{job="{job}"}})') is not None, job
        assert (prom.value(f'sum(process_open_fds{{job="{job}"}})') or 0) > 0, job
        generations = {m["generation"] for m, _ in
                       prom.query(f'python_gc_collections_total{{job="{job}"}}')}
        assert generations == {"0", "1", "2"}, job


def _the_two_api_processes_report_each_its_own(prom: Prometheus) -> None:
    """Memory and descriptors: a series per HTTP process; CPU and GC: summed, one series."""
    prom.wait_for('count(process_resident_memory_bytes{job="api"})', 2)
    prom.wait_for('count(count by (pid) (process_open_fds{job="api"}))', 2)
    assert len(prom.query('process_cpu_seconds_total{job="api"}')) == 1
    assert (prom.value('process_cpu_seconds_total{job="api"}') or 0) > 0
    assert (prom.value('sum(python_gc_collections_total{job="api"})') or 0) > 0


def _a_replaced_api_process_leaves_its_series_and_keeps_its_counts(prom: Prometheus) -> None:
    """SIGKILL one HTTP process: uvicorn starts another; the dead one's per-process series
    leave the scrape, the counts it made stay in the sums."""
    pids = {m["pid"] for m, _ in prom.query('process_resident_memory_bytes{job="api"}')}
    before = prom.value('sum(phoenix_http_requests_total{job="api"})')
    assert before is not None
    victim = sorted(pids)[0]
    os.kill(int(victim), signal.SIGKILL)
    prom.wait_for(f'count(process_resident_memory_bytes{{job="api",pid="{victim}"}}) or '
                  'vector(0)', 0)
    prom.wait_for('count(process_resident_memory_bytes{job="api"})', 2)
    after = prom.value('sum(phoenix_http_requests_total{job="api"})')
    assert after is not None
    assert after >= before, "a dead process's counts stay in the sums"


def _revoked_partitions_leave_the_scrape(stack: Stack) -> None:
    """A second worker joins the group: the first one's revoked partitions leave its scrape
    (every partition is still on exactly one); it leaves: they are back."""
    prom = stack.prometheus
    spare = Process("worker", stack.spare_worker)
    try:
        prom.wait_for('up{job="worker2"}', 1, timeout=60)
        prom.wait_for('count(phoenix_consumer_lag_messages{job="worker2"}) > bool 0', 1)
        prom.wait_for('count(phoenix_consumer_lag_messages{job=~"worker|worker2"})', PARTITIONS)
        taken = prom.value('count(phoenix_consumer_lag_messages{job="worker2"})')
        assert taken is not None
        prom.wait_for('count(phoenix_consumer_lag_messages{job="worker"})', PARTITIONS - taken)
        prom.wait_for('sum(phoenix_rebalances_total{job="worker",event="revoked"}) > bool 0', 1)
    finally:
        code = spare.terminate()
    assert code == 0, spare.output()[-3000:]
    prom.wait_for('count(phoenix_consumer_lag_messages{job="worker"})', PARTITIONS)


def test_run_and_a_one_process_api_report_ready(settings: Settings, pg_server: str,
                                               database_url: str) -> None:
    """``run`` exports its one verdict (component ``all``: the API and gRPC parts add none);
    an API with one HTTP process exports ``api`` and its process figures."""
    run_port, api_port = free_port(), free_port()
    read = reader_url(pg_server, database_url)
    run = Process("run", settings.model_copy(update={
        "http_port": run_port, "grpc_port": free_port(), "read_database_url": read}))
    api = Process("api", settings.model_copy(update={
        "http_port": api_port, "http_workers": 1, "read_database_url": read}))
    prometheus = None
    try:
        for port in (run_port, api_port):
            wait_until(lambda port=port: _answers(f"http://127.0.0.1:{port}/metrics"), 90,
                       f"{port} /metrics")
        prometheus = Prometheus({"run": [f"127.0.0.1:{run_port}"],
                                 "api": [f"127.0.0.1:{api_port}"]})
        prometheus.wait_for('phoenix_ready{job="run",component="all"}', 1)
        prometheus.wait_for('count(phoenix_ready{job="run"})', 1)
        prometheus.wait_for('phoenix_ready{job="api",component="api"}', 1)
        prometheus.wait_for('count(phoenix_consumer_lag_messages{job="run"})', PARTITIONS)
        for job in ("run", "api"):
            assert prometheus.query(f'process_cpu_seconds_total{{job="{job}"}}'), job
            assert prometheus.query(f'python_gc_collections_total{{job="{job}"}}'), job
    finally:
        if prometheus is not None:
            prometheus.stop()
        for p in (run, api):
            p.terminate()
