"""The gRPC server (``grpc.aio``): ``ResourceService``, the standard health service and server
reflection, on ``PHOENIX_GRPC_HOST:PHOENIX_GRPC_PORT`` (127.0.0.1:50051).

Guarantees:

* Building a :class:`GrpcServer` opens nothing; :meth:`GrpcServer.run` (blocking, its own
  event loop: a component of ``phoenix-resources run``, or the whole of
  ``phoenix-resources grpc``) opens the read-only pool (:func:`bootstrap.api_db_pool`, the
  HTTP API's design), the command publisher and the port, and closes them on the way out.
* The port is bound exclusively (no ``SO_REUSEPORT``): a port in use is an error at start,
  never two servers sharing it. Port 0 binds any free port (:attr:`GrpcServer.port`). The
  one exception: the processes of one ``phoenix-resources grpc`` with
  ``PHOENIX_GRPC_PROCESSES`` > 1 share it, and only they (``processes.py``).
* Bounded (:func:`server_options`): message sizes, connections (more are closed as they
  arrive), calls per connection and in all (more: ``RESOURCE_EXHAUSTED``), the time a new
  connection has to start HTTP/2, keepalive enforced both ways, idle connections closed.
* Reflection answers ``file_containing_symbol`` for methods too (``pkg.Service.Method``,
  which the reflection spec allows and tools such as ``ghz`` ask for; Python's descriptor
  pool alone knows only services and types).
* Health (``grpc.health.v1.Health``): the overall status ``""`` and
  ``phoenix.resources.v1.ResourceService`` are SERVING while the read database answers within
  a second (checked at start, then every :data:`HEALTH_INTERVAL_S`), NOT_SERVING otherwise
  and from the start of a shutdown.
* Graceful shutdown (:meth:`GrpcServer.stop`, thread-safe; SIGTERM/SIGINT in ``grpc``):
  health turns NOT_SERVING, new calls are refused, watch streams end with UNAVAILABLE and
  their position (clients resume), calls in flight get ``grpc_request_timeout_s + 1``
  seconds, then commands in flight are flushed and the pool is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from psycopg_pool import AsyncConnectionPool

from phoenix_resources import bootstrap
from phoenix_resources.adapters.postgres.queries import ReadQueries
from phoenix_resources.client import CommandPublisher
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.grpc.activity import ActiveStreams, ServingProbe
from phoenix_resources.entrypoints.grpc.edge import Edge
from phoenix_resources.entrypoints.grpc.service import (
    CommandSender,
    ResourceService,
    add_to_server,
)
from phoenix_resources.entrypoints.http.documents import Documents
from phoenix_resources.entrypoints.http.edge import TokenCheck
from phoenix_resources.entrypoints.http.guard import FILES_RESERVE, ensure_open_files
from phoenix_resources.entrypoints.supervisor import Component, Supervisor
from phoenix_resources.errors import ConfigurationError, DatabaseUnavailable
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from phoenix_resources.observability import Metrics, configure_logging

log = logging.getLogger("phoenix_resources.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ResourceService"].full_name
HEALTH_INTERVAL_S = 5.0
HEALTH_PING_S = 1.0
KEEPALIVE_ANSWER_S = 20.0
"""How long a keepalive ping of the server may wait for its answer before the connection is
closed."""
WATCH_FILES = 8
"""Descriptors a watch stream's consumer takes at most (broker sockets, wake-up pipes)."""
FLUSH_ON_STOP_S = 5.0
"""Longest wait for commands in flight at shutdown (they are acknowledged or reported)."""


@dataclass
class _Running:
    server: grpc.aio.Server
    pool: AsyncConnectionPool
    sender: CommandSender
    health: HealthServicer
    health_task: asyncio.Task[None]
    stopping: asyncio.Event


class GrpcServer:
    """One gRPC server process part. ``run()`` blocks until ``stop()``."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None,
                 reuse_port: bool = False) -> None:
        """``reuse_port``: bind with ``SO_REUSEPORT``, beside the other processes of one
        command (``processes.py``, which holds the port for them); never otherwise."""
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.reuse_port = reuse_port
        self.ready = threading.Event()
        """Set once the port is bound and calls are served."""
        self.port: int | None = None
        """The bound port (the configured one, or the one chosen for port 0)."""
        self._stop_flag = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None

    # --- lifecycle (any thread) -------------------------------------------------------

    def run(self) -> None:
        """Serve until :meth:`stop` (on uvloop when installed, as the HTTP API); raises what
        made the start fail."""
        s = self.settings
        ensure_open_files(s.grpc_max_connections + WATCH_FILES * s.grpc_max_watch_streams
                          + FILES_RESERVE)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(self.serve())

    def stop(self) -> None:
        """Ask :meth:`serve` to shut down gracefully; returns at once. Thread-safe."""
        self._stop_flag.set()
        loop, requested = self._loop, self._stop_requested
        if loop is not None and requested is not None:
            with contextlib.suppress(RuntimeError):  # the loop has finished already
                loop.call_soon_threadsafe(requested.set)

    # --- on the server's loop ---------------------------------------------------------

    async def serve(self) -> None:
        self._stop_requested = requested = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop_flag.is_set():
            return
        running = await self._start()
        try:
            self.ready.set()
            log.info("gRPC serving", extra={"address": f"{self.settings.grpc_host}:{self.port}"})
            await requested.wait()
        finally:
            await self._shutdown(running)

    async def _start(self) -> _Running:
        s = self.settings
        pool = bootstrap.api_db_pool(s)
        await pool.open(wait=False)  # start (NOT_SERVING) while the database is away
        queries = ReadQueries(pool, checkout_timeout=s.grpc_request_timeout_s / 2,
                              documents=Documents(s.list_cache_bytes))
        sender = CommandSender(CommandPublisher(s))
        sender.start()
        stopping = asyncio.Event()
        service = ResourceService(s, queries=queries, sender=sender,
                                  codec=bootstrap.event_codec(s),
                                  edge=Edge(TokenCheck(s.api_token_hashes),
                                            self.metrics.registry),
                                  stopping=stopping)
        server = grpc.aio.server(options=server_options(s, reuse_port=self.reuse_port),
                                 interceptors=[ActiveStreams(self.metrics.registry)],
                                 maximum_concurrent_rpcs=s.grpc_max_concurrent_rpcs)
        add_to_server(service, server)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), server,
            pool=cast(descriptor_pool.DescriptorPool, MethodSymbols(descriptor_pool.Default())))
        address = f"{s.grpc_host}:{s.grpc_port}"
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError as e:
            self.port = 0
            cause: Exception | None = e
        else:
            cause = None
        if not self.port:
            sender.close()
            await pool.close()
            raise ConfigurationError(f"cannot listen on {address} (in use?)") from cause
        await server.start()
        await _check_health(queries, health)
        task = asyncio.get_running_loop().create_task(_keep_health(queries, health))
        return _Running(server, pool, sender, health, task, stopping)

    async def _shutdown(self, r: _Running) -> None:
        log.info("gRPC stopping")
        r.health_task.cancel()
        await r.health.enter_graceful_shutdown()
        r.stopping.set()  # watch streams end at their next read
        await r.server.stop(self.settings.grpc_request_timeout_s + 1)
        with contextlib.suppress(asyncio.CancelledError):
            await r.health_task
        await asyncio.to_thread(r.sender.close, FLUSH_ON_STOP_S)
        await r.pool.close()


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def server_options(s: Settings, *, reuse_port: bool = False) -> list[tuple[str, int]]:
    """The channel arguments of the server: the port bound exclusively (unless
    ``reuse_port``), message sizes, connections and streams bounded, a deadline for a
    connection's HTTP/2 start, keepalive both ways (the server's pings find vanished clients;
    clients' pings are rate-limited), idle connections closed. Settings in
    ``config_limits.py``; the bound on concurrent calls is ``maximum_concurrent_rpcs``."""
    return [
        ("grpc.so_reuseport", int(reuse_port)),
        ("grpc.max_send_message_length", s.grpc_max_message_bytes),
        ("grpc.max_receive_message_length", s.grpc_max_message_bytes),
        ("grpc.max_allowed_incoming_connections", s.grpc_max_connections),
        ("grpc.max_concurrent_streams", s.grpc_max_concurrent_streams),
        ("grpc.server_handshake_timeout_ms", _ms(s.grpc_handshake_timeout_s)),
        ("grpc.keepalive_time_ms", _ms(s.grpc_keepalive_s)),
        ("grpc.keepalive_timeout_ms", _ms(KEEPALIVE_ANSWER_S)),
        ("grpc.http2.min_ping_interval_without_data_ms",
         _ms(s.grpc_client_ping_min_interval_s)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_connection_idle_ms", _ms(s.grpc_max_connection_idle_s)),
    ]


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (``uvicorn[standard]`` brings it), else asyncio's:
    it halves the cost of the event-loop side of every call (psycopg's waits included)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class MethodSymbols:
    """A descriptor pool (duck-typed) that also finds the file of a method's full name."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, symbol: str) -> FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service, _, method = symbol.rpartition(".")
            try:
                found = self._pool.FindServiceByName(service)
            except KeyError:
                found = None
            if found is None or method not in found.methods_by_name:
                raise
            return found.file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


async def _check_health(queries: ReadQueries, health: HealthServicer) -> None:
    try:
        await queries.ping(HEALTH_PING_S)
        up = True
    except DatabaseUnavailable:
        up = False
    status = (health_pb2.HealthCheckResponse.SERVING if up
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    for name in ("", SERVICE_NAME):
        await health.set(name, status)


async def _keep_health(queries: ReadQueries, health: HealthServicer) -> None:
    while True:
        await asyncio.sleep(HEALTH_INTERVAL_S)
        await _check_health(queries, health)


def serve(settings: Settings) -> int:
    """Blocking: the ``phoenix-resources grpc`` command. Returns the exit code."""
    configure_logging(settings.log_level, settings.log_format)
    if settings.grpc_processes > 1:
        from phoenix_resources.entrypoints.grpc.processes import serve_processes

        return serve_processes(settings, serve_one)
    metrics = Metrics(component="grpc")
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.grpc_host,
                          registry=metrics.registry)
    server = GrpcServer(settings, metrics=metrics)
    metrics.set_readiness("grpc", ServingProbe(settings.grpc_host, lambda: server.port))
    supervisor = Supervisor()
    supervisor.add(Component("grpc", server.run, server.stop))
    return supervisor.run()


def serve_one(settings: Settings) -> None:
    """The body of one of several server processes (``processes.py``, spawned): a server
    sharing the port its parent holds; metrics go to the parent's multiprocess directory."""
    configure_logging(settings.log_level, settings.log_format)
    metrics = Metrics(component="grpc")
    metrics.mirror_in_background()  # the parent answers scrapes for every server
    server = GrpcServer(settings, metrics=metrics, reuse_port=True)
    supervisor = Supervisor()
    supervisor.add(Component("grpc", server.run, server.stop))
    code = supervisor.run()
    # Stopped: a SIGTERM now (the parent's, after the process group's) must not turn the
    # exit code into "killed" while the interpreter winds down (it restores default
    # handlers on its way out, except for ignored signals).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)
