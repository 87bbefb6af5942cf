"""The gRPC server's activity interceptor on its own: unary calls pass untouched, streaming
calls are counted open from start to end however they end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from phoenix_resources.entrypoints.grpc.activity import ActiveStreams, ServingProbe

pytestmark = pytest.mark.unit

WATCH = "/phoenix.resources.v1.ResourceService/WatchResources"


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _open(registry: CollectorRegistry, method: str) -> float | None:
    return registry.get_sample_value("phoenix_grpc_active_streams", {"method": method})


def _intercept(meter: ActiveStreams, method: str, handler: Any) -> Any:
    async def continuation(_: Any) -> Any:
        return handler

    return asyncio.run(meter.intercept_service(continuation, _Details(method)))


def test_unary_calls_get_the_handler_they_had_and_streams_start_at_zero() -> None:
    registry = CollectorRegistry()
    meter = ActiveStreams(registry)
    assert _open(registry, "WatchResources") == 0

    async def get(request: Any, context: Any) -> Any:
        return request

    unary = grpc.unary_unary_rpc_method_handler(get)
    assert _intercept(meter, "/phoenix.resources.v1.ResourceService/GetResource", unary) \
        is unary
    assert _intercept(meter, "/nowhere/Nothing", None) is None


def test_a_stream_is_counted_open_until_it_ends_however_it_ends() -> None:
    registry = CollectorRegistry()
    meter = ActiveStreams(registry)
    closed: list[str] = []

    async def watch(request: Any, context: Any) -> AsyncIterator[int]:
        try:
            for i in range(3):
                yield i
        finally:
            closed.append("closed")

    handler = grpc.unary_stream_rpc_method_handler(watch)
    counted = _intercept(meter, WATCH, handler)
    assert counted is not handler
    assert counted.response_streaming
    assert _intercept(meter, WATCH, handler) is counted, "one twin per handler, made once"

    async def scenario() -> None:
        finished = counted.unary_stream(None, None)
        assert [m async for m in finished] == [0, 1, 2]
        assert _open(registry, "WatchResources") == 0
        left = counted.unary_stream(None, None)
        assert await left.__anext__() == 0
        assert _open(registry, "WatchResources") == 1
        await left.aclose()  # the client went away mid-stream
        assert _open(registry, "WatchResources") == 0

    asyncio.run(scenario())
    assert closed == ["closed", "closed"], "the service's own stream is closed each time"


def test_a_stream_written_through_its_context_is_counted_too() -> None:
    """The health service's Watch writes through the context and returns."""
    registry = CollectorRegistry()
    meter = ActiveStreams(registry)
    seen: list[float | None] = []

    async def watch(request: Any, context: Any) -> None:
        seen.append(_open(registry, "Watch"))

    counted = _intercept(meter, "/grpc.health.v1.Health/Watch",
                         grpc.unary_stream_rpc_method_handler(watch))
    asyncio.run(counted.unary_stream(None, None))
    assert seen == [1]
    assert _open(registry, "Watch") == 0


def test_the_probe_is_not_ready_before_the_server_is_bound() -> None:
    assert ServingProbe("0.0.0.0", lambda: None)() is False
