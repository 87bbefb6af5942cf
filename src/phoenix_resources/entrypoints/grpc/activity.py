"""What the gRPC server is doing now, for Prometheus: the streams open (:class:`ActiveStreams`,
an interceptor), and whether its health service says SERVING (:class:`ServingProbe`, the
``phoenix_ready`` of a ``grpc`` process).

Calls by method and status code and their latency are counted by the service's edge
(``phoenix_grpc_calls_total``, ``phoenix_grpc_call_seconds``: ``edge.py``); this module adds
only what a call's edge cannot see.

Guarantees:

* a unary call costs the interceptor one lookup: it hands back the very handler it was given;
* a streaming call (server, client or both ways) is counted in
  ``phoenix_grpc_active_streams{method}`` from its start to its end, however it ends
  (finished, failed, cancelled by the client, cut by a shutdown); the streaming methods of
  ``ResourceService`` are on the scrape at 0 from the start;
* the probe asks the server's own health service, over loopback, what Kubernetes' gRPC probe
  asks (``ResourceService``), at most once a second; no answer within a second is not ready.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry, Gauge

from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from phoenix_resources.observability.health import CachedCheck, Detail

SERVICE = pb.DESCRIPTOR.services_by_name["ResourceService"]
PROBE_TIMEOUT_S = 1.0
HEALTH_CHECK = "/grpc.health.v1.Health/Check"

if TYPE_CHECKING:  # the stubs' generics, which the runtime classes are not
    Handler = grpc.RpcMethodHandler[Any, Any]
    Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]


class ActiveStreams(grpc.aio.ServerInterceptor):
    """``phoenix_grpc_active_streams{method}``: streaming calls open now, by method name."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._open = Gauge("phoenix_grpc_active_streams",
                           "gRPC streaming calls open now (WatchResources: watch streams)",
                           ["method"], registry=registry, multiprocess_mode="livesum")
        for method in SERVICE.methods:
            if method.server_streaming or method.client_streaming:
                self._open.labels(method.name)
        self._counted: dict[str, tuple[Handler, Handler]] = {}
        """Per method path: the handler the server found, and its counted twin."""

    async def intercept_service(self, continuation: Continuation,
                                handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or not (handler.response_streaming or handler.request_streaming):
            return handler
        path = handler_call_details.method
        known = self._counted.get(path)
        if known is None or known[0] is not handler:
            known = self._counted[path] = (handler, self._counting(path, handler))
        return known[1]

    def _counting(self, path: str, handler: Handler) -> Handler:
        gauge = self._open.labels(path.rsplit("/", 1)[-1])
        kinds = {(False, True): (grpc.unary_stream_rpc_method_handler, handler.unary_stream),
                 (True, False): (grpc.stream_unary_rpc_method_handler, handler.stream_unary),
                 (True, True): (grpc.stream_stream_rpc_method_handler, handler.stream_stream)}
        make, behavior = kinds[(handler.request_streaming, handler.response_streaming)]
        counted = _counted(behavior, gauge)
        if counted is None:
            return handler
        return make(counted, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)


def _counted(behavior: Any, gauge: Gauge) -> Any:
    """``behavior`` counted in ``gauge`` while it runs; None for what the asyncio server
    would not run as it is (a synchronous behaviour is left alone)."""
    if inspect.isasyncgenfunction(behavior):
        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            gauge.inc()
            try:
                async with aclosing(behavior(request, context)) as messages:
                    async for message in messages:
                        yield message
            finally:
                gauge.dec()

        return stream
    if inspect.iscoroutinefunction(behavior):
        async def call(request: Any, context: Any) -> Any:
            gauge.inc()
            try:
                return await behavior(request, context)
            finally:
                gauge.dec()

        return call
    return None


class ServingProbe:
    """``phoenix_ready`` of a ``grpc`` process: 1 when its health service answers SERVING for
    ``ResourceService`` (asked over loopback at ``host`` and the port ``port()`` gives once
    the server is bound), at most once a second."""

    def __init__(self, host: str, port: Callable[[], int | None]) -> None:
        self._host = _loopback(host)
        self._port = port
        self._ask_health: grpc.UnaryUnaryMultiCallable[
            health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse] | None = None
        self._check = CachedCheck(self._ask)

    def __call__(self) -> bool:
        return self._check().get("ok") is True

    def _ask(self) -> Detail:
        port = self._port()
        if not port:
            return {"ok": False}
        if self._ask_health is None:
            channel = grpc.insecure_channel(f"{self._host}:{port}")
            self._ask_health = channel.unary_unary(
                HEALTH_CHECK, request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString)
        answer = self._ask_health(health_pb2.HealthCheckRequest(service=SERVICE.full_name),
                                  timeout=PROBE_TIMEOUT_S)
        return {"ok": answer.status == health_pb2.HealthCheckResponse.SERVING}


def _loopback(host: str) -> str:
    """Where this host's own server answers: a wildcard address means loopback."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
