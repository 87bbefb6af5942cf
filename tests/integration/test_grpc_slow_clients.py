"""Slow and abusive clients against the real gRPC server: connections that never start
HTTP/2 are closed after the handshake timeout, connections beyond the bound are closed as
they arrive, and calls are answered all the while; the bounds are what the settings say."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from phoenix_resources.config import Settings
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from tests.support.grpc_server import RunningServer, grpc_settings
from tests.support.http_api import Conn, insert_resource

pytestmark = pytest.mark.integration

STALLED = 300


@pytest.fixture
def stalled() -> Iterator[list[socket.socket]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * STALLED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * STALLED + 1024), hard))
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()


def _closed(s: socket.socket) -> bool:
    """Whether the server closed it (what it sent first — its SETTINGS — is drained)."""
    s.setblocking(False)
    try:
        while s.recv(65536):
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def test_stalled_connections_are_bounded_and_closed_and_calls_still_answered(
        settings: Settings, read_url: str, writer: Conn,
        stalled: list[socket.socket]) -> None:
    rid = insert_resource(writer)
    limits = grpc_settings(settings, read_url, grpc_max_connections=50,
                           grpc_handshake_timeout_s=2.0)
    with RunningServer(limits) as api:
        assert api.server.port
        for _ in range(STALLED):
            stalled.append(socket.create_connection(("127.0.0.1", api.server.port), timeout=5))
        time.sleep(1.0)
        held = sum(not _closed(s) for s in stalled)
        assert held <= 50, f"{held} connections held; the bound is 50"
        deadline = time.monotonic() + 2.0 + 8.0
        while not all(_closed(s) for s in stalled) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert all(_closed(s) for s in stalled), "connections that never started HTTP/2 stay"
        with grpc.insecure_channel(f"127.0.0.1:{api.server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert api.stub.GetResource(pb.GetResourceRequest(id=str(rid)), timeout=10).id == str(rid)


def test_a_request_over_the_message_limit_is_refused_before_any_handler(
        settings: Settings, read_url: str) -> None:
    limits = grpc_settings(settings, read_url, grpc_max_message_bytes=64 * 1024,
                           grpc_page_max_bytes=32 * 1024)
    with RunningServer(limits) as api, pytest.raises(grpc.RpcError) as e:
        api.stub.CreateResource(pb.CreateResourceRequest(
            name="big", config={"k": "v" * 100_000}), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
