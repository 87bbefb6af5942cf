"""``phoenix-resources grpc`` as several server processes on one port
(``PHOENIX_GRPC_PROCESSES`` > 1; Linux only).

One ``grpc.aio`` process keeps one core busy at most: gRPC's completion-queue thread and the
event loop share its interpreter. Several processes use several cores, as the HTTP API's
``PHOENIX_HTTP_WORKERS`` do.

Guarantees:

* **The port is this command's alone.** Before any server starts, the parent claims it
  (:func:`claim_port`): a socket bound with ``SO_REUSEPORT`` that never listens (so it takes
  no connection; it also turns port 0 into a free port), and an abstract Unix socket named
  after the address, which a second such command cannot bind. A port held by anything
  else — another program, a one-process server, a second multi-process one — is an error at
  start (exit code 1), as with one process. The servers then bind it with
  ``grpc.so_reuseport``; the kernel spreads *connections* over them (all calls of one
  connection go to one process).
* **Each process is a whole server** (:class:`~.server.GrpcServer`: its own pool,
  publisher, health and reflection; the limits — connections, concurrent calls, watch
  streams — hold per process).
* **Metrics**: the parent serves ``PHOENIX_METRICS_PORT`` with every server process's
  counters and histograms summed and each one's process and Python figures (prometheus-client's
  multiprocess mode, as the HTTP API with several workers), and ``phoenix_ready`` from the
  health service on the shared port.
* **Stopping**: SIGTERM or SIGINT stops every server gracefully (each as one process does)
  and the command exits 0 once all have. A server process that ends on its own — at start
  (e.g. the database settings are wrong) or later — stops the others, and the command exits
  1 (let the platform restart it), as a component of any process does (``supervisor``).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.supervisor import SHUTDOWN_GRACE_S
from phoenix_resources.errors import ConfigurationError
from phoenix_resources.observability.metrics import ReadyCollector, multiprocess_dir

log = logging.getLogger("phoenix_resources.grpc")

STOP_MARGIN_S = 5.0
"""Beyond a server process's own bound on its shutdown (``supervisor.SHUTDOWN_GRACE_S``), how
long the parent waits for it before killing it."""
LOCK_PREFIX = "phoenix-resources-grpc"


@dataclass
class PortClaim:
    """The port held for this command's servers; :meth:`release` when they are gone."""

    port: int
    sockets: tuple[socket.socket, ...]

    def release(self) -> None:
        for s in self.sockets:
            s.close()


def claim_port(host: str, port: int) -> PortClaim:
    """Hold ``host:port`` for servers that bind it with ``SO_REUSEPORT`` (see the module
    doc); :class:`ConfigurationError` when it is taken, or off Linux."""
    if not sys.platform.startswith("linux"):
        raise ConfigurationError("PHOENIX_GRPC_PROCESSES > 1 needs Linux (SO_REUSEPORT)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise ConfigurationError(f"cannot listen on {host}:{port} ({e})") from e
    held = socket.socket(family, kind, proto)
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(address)
        port = held.getsockname()[1]
        lock.bind(f"\0{LOCK_PREFIX}:{host}:{port}")  # Linux's abstract namespace
    except OSError as e:
        held.close()
        lock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port} (in use?)") from e
    return PortClaim(port, (held, lock))


def serve_processes(settings: Settings, serve_one: Callable[[Settings], None]) -> int:
    """Blocking: ``phoenix-resources grpc`` with ``grpc_processes`` servers, each running
    ``serve_one`` (a module-level function: it is imported by name in the new process) with
    the settings of one of them. Returns the exit code."""
    try:
        claim = claim_port(settings.grpc_host, settings.grpc_port)
    except ConfigurationError as e:
        log.error("cannot start", extra={"error": str(e)})
        return 1
    try:
        with multiprocess_dir() as folder:
            if settings.metrics_port:
                _serve_metrics(settings, folder, claim.port)
            one = settings.model_copy(update={"grpc_port": claim.port, "grpc_processes": 1})
            return _supervise(one, settings.grpc_processes, serve_one)
    finally:
        claim.release()


def _serve_metrics(settings: Settings, folder: str, port: int) -> None:
    """The servers' counters, histograms and process figures (each server copies its own
    into ``folder``), and ``phoenix_ready{component="grpc"}``: what the health service
    answers on the shared port — whichever server takes the probe's connection."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    from phoenix_resources.entrypoints.grpc.activity import ServingProbe

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    ready = ReadyCollector()
    ready.checks["grpc"] = ServingProbe(settings.grpc_host, lambda: port)
    registry.register(ready)
    start_http_server(settings.metrics_port or 0, addr=settings.grpc_host, registry=registry)


def _supervise(settings: Settings, count: int,
               serve_one: Callable[[Settings], None]) -> int:
    # Spawned, not forked: a child starts gRPC (and its threads) afresh. The settings travel
    # pickled over the process pipe, never through the environment.
    context = multiprocessing.get_context("spawn")
    servers = [context.Process(target=serve_one, args=(settings,), name=f"grpc-{i}",
                               daemon=False) for i in range(count)]
    with _stop_requests() as stop:
        for server in servers:
            server.start()
        log.info("gRPC serving from processes",
                 extra={"address": f"{settings.grpc_host}:{settings.grpc_port}",
                        "pids": [s.pid for s in servers]})
        while not stop.is_set():
            ended = wait([s.sentinel for s in servers], timeout=0.2)
            if ended:
                ended_by = [s for s in servers if s.sentinel in ended]
                log.error("a gRPC server process ended; stopping the others",
                          extra={"pids": [s.pid for s in ended_by],
                                 "exit_codes": [s.exitcode for s in ended_by]})
                break
    failed = not stop.is_set()
    _stop_all(servers, SHUTDOWN_GRACE_S + STOP_MARGIN_S)
    codes = [s.exitcode for s in servers]
    log.info("gRPC server processes stopped", extra={"exit_codes": codes})
    return 1 if failed or any(codes) else 0


@contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _stop_all(servers: Sequence[BaseProcess], timeout: float) -> None:
    for server in servers:
        if server.is_alive():
            server.terminate()  # SIGTERM: the server's graceful shutdown
    for server in servers:
        server.join(timeout)
        if server.is_alive():
            log.error("a gRPC server process did not stop in time; killing it",
                      extra={"pid": server.pid})
            server.kill()
            server.join()
