"""The gRPC server as the real processes run it: ``phoenix-resources grpc`` alone (one server
process, or several sharing its port), and as a component of ``phoenix-resources run``
(worker + relay + HTTP + gRPC in one process); SIGTERM stops each cleanly (exit 0)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.request import urlopen

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from phoenix_resources.config import Settings
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2_grpc as pb_grpc
from tests.support.grpc_server import refused
from tests.support.http_api import reader_url
from tests.support.net import free_port
from tests.support.processes import Process

pytestmark = pytest.mark.e2e


def _serving(channel: grpc.Channel, process: Process, timeout: float = 60) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.alive(), process.output()[-3000:]
        try:
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
        except grpc.RpcError:
            status = None
        if status == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.2)
    raise AssertionError(f"not SERVING in {timeout}s:\n{process.output()[-3000:]}")


def test_phoenix_resources_grpc_serves_and_stops_on_sigterm(
        settings: Settings, pg_server: str, database_url: str) -> None:
    port = free_port()
    served = settings.model_copy(update={
        "read_database_url": reader_url(pg_server, database_url), "grpc_port": port})
    process = Process("grpc", served)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            _serving(channel, process)
            stub = pb_grpc.ResourceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as e:
                stub.GetResource(pb.GetResourceRequest(id=str(uuid.uuid4())), timeout=10)
            refused(e.value, grpc.StatusCode.NOT_FOUND, "RES-002")
    finally:
        code = process.terminate()
    assert code == 0, process.output()[-3000:]


def test_phoenix_resources_run_includes_the_grpc_server(
        settings: Settings, pg_server: str, database_url: str) -> None:
    grpc_port, http_port = free_port(), free_port()
    served = settings.model_copy(update={
        "read_database_url": reader_url(pg_server, database_url), "grpc_port": grpc_port,
        "http_port": http_port})
    process = Process("run", served)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            _serving(channel, process)
            stub = pb_grpc.ResourceServiceStub(channel)
            receipt = stub.CreateResource(pb.CreateResourceRequest(
                name="via-run", wait_for_outcome=True), timeout=60)
            assert receipt.outcome.outcome == pb.OUTCOME_APPLIED
            got = stub.GetResource(pb.GetResourceRequest(id=receipt.resource_id), timeout=10)
            assert (got.name, got.version) == ("via-run", 1)
    finally:
        code = process.terminate()
    assert code == 0, process.output()[-3000:]


def _listening_pids(port: int) -> set[int]:
    """The processes holding a listening TCP socket on ``port`` (from ``/proc``)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    pids = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in {f"socket:[{i}]" for i in inodes}
                   for fd in fd_dir.iterdir()):
                pids.add(int(fd_dir.parent.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT, /proc: Linux")
def test_several_server_processes_share_the_port_of_one_command_and_only_they(
        settings: Settings, pg_server: str, database_url: str) -> None:
    port, metrics_port = free_port(), free_port()
    served = settings.model_copy(update={
        "read_database_url": reader_url(pg_server, database_url), "grpc_port": port,
        "grpc_processes": 2, "metrics_port": metrics_port})
    process = Process("grpc", served)
    second: Process | None = None
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            _serving(channel, process)
        deadline = time.monotonic() + 60
        while len(servers := _listening_pids(port)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(servers) == 2, servers
        assert process.pid not in servers
        for _ in range(6):  # fresh connections, spread over both
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.ResourceServiceStub(channel)
                with pytest.raises(grpc.RpcError) as e:
                    stub.GetResource(pb.GetResourceRequest(id=str(uuid.uuid4())), timeout=10)
                refused(e.value, grpc.StatusCode.NOT_FOUND, "RES-002")
        _metrics_cover_both(metrics_port, servers)
        second = Process("grpc", served)
        assert second.proc.wait(60) == 1, second.output()[-3000:]
        assert "in use" in second.output()
        assert _listening_pids(port) == servers
    finally:
        if second is not None:
            second.terminate()
        code = process.terminate()
    assert code == 0, process.output()[-3000:]
    assert not _listening_pids(port)


def _metrics_cover_both(metrics_port: int, servers: set[int]) -> None:
    """The parent's scrape sums both servers' calls, shows each one's process figures and
    the health service's verdict."""
    deadline = time.monotonic() + 30
    while True:
        samples = [s for family in text_string_to_metric_families(
            urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode())
            for s in family.samples]
        calls = sum(s.value for s in samples if s.name == "phoenix_grpc_calls_total"
                    and s.labels.get("code") == "NOT_FOUND")
        rss = {int(s.labels["pid"]) for s in samples
               if s.name == "process_resident_memory_bytes"}
        ready = [s.value for s in samples
                 if s.name == "phoenix_ready" and s.labels == {"component": "grpc"}]
        if (calls, rss, ready) == (6, servers, [1.0]) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (calls, rss, ready) == (6, servers, [1.0])
