"""Run the worker, the relay and the API as threads of one process, or one of them alone.

SIGTERM / SIGINT ask every component to stop; the process exits within
``SHUTDOWN_GRACE_S``. The worker finishes (or abandons, uncommitted) its in-flight batch, so
a stop never commits an offset past the database. If a component dies of an unexpected
error, the others are stopped and the process exits non-zero (let the supervisor restart it).
This module builds the components; :mod:`.supervisor` runs and stops them.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Literal

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings, redact
from phoenix_resources.entrypoints.relay import build_relay
from phoenix_resources.entrypoints.supervisor import (
    Component,
    Supervisor,
    process_health,
    serve_health,
)
from phoenix_resources.entrypoints.worker import build_worker
from phoenix_resources.observability import Metrics, configure_logging
from phoenix_resources.observability.health import Check, HealthServer
from phoenix_resources.observability.tracing import Tracing

log = logging.getLogger("phoenix_resources.runner")

Part = Callable[[Settings, Metrics, Tracing], tuple[Component, Check]]
"""Builds one component and its own readiness check."""


def _start(settings: Settings, component: str) -> tuple[Metrics, Tracing]:
    configure_logging(settings.log_level, settings.log_format)
    log.info("starting", extra={"database": redact(settings.database_url),
                                "kafka": settings.kafka_bootstrap_servers,
                                "component": component})
    bootstrap.check_schema(settings)
    bootstrap.prepare_topics(settings)
    return Metrics(component=component), Tracing.from_settings(settings, component)


def _worker_component(settings: Settings, metrics: Metrics,
                      tracing: Tracing) -> tuple[Component, Check]:
    warning = bootstrap.replay_window_warning(settings)
    if warning:
        log.warning(warning)
    worker, pool = build_worker(settings, metrics, tracing)

    def run() -> None:
        pool.open(wait=False)
        try:
            worker.run()
        finally:
            pool.close()

    return Component("worker", run, worker.stop), worker.readiness


def _relay_component(settings: Settings, metrics: Metrics,
                     tracing: Tracing) -> tuple[Component, Check]:
    relay = build_relay(settings, metrics, tracing)
    return Component("relay", relay.run, relay.stop), relay.watch.readiness


def _settle_garbage_collector(threshold: int) -> None:
    """Freeze what start-up built (modules, schemas, pools: never garbage) out of every later
    collection, and collect the youngest generation every ``threshold`` allocations (see
    ``Settings.gc_threshold``). Called once, after everything is built, before any work."""
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


def _run(supervisor: Supervisor, tracing: Tracing, settings: Settings,
         server: HealthServer | None = None) -> int:
    _settle_garbage_collector(settings.gc_threshold)
    try:
        return supervisor.run()
    finally:
        if server is not None:
            server.stop()
        tracing.shutdown()


def _run_alone(settings: Settings, component: Literal["worker", "relay"], part: Part,
               check: str) -> int:
    """One component as the whole process: its readiness (under ``check``) beside the
    database's, both on its own health port."""
    metrics, tracing = _start(settings, component)
    supervisor = Supervisor()
    built, readiness = part(settings, metrics, tracing)
    supervisor.add(built)
    health = process_health(settings, supervisor)
    health.checks[check] = readiness
    metrics.set_readiness(component, health.is_ready)
    return _run(supervisor, tracing, settings,
                serve_health(settings, component, metrics, health))


def run_worker(settings: Settings) -> int:
    return _run_alone(settings, "worker", _worker_component, check="consumer")


def run_relay(settings: Settings) -> int:
    return _run_alone(settings, "relay", _relay_component, check="relay")


def run_all(settings: Settings) -> int:
    """Worker + relay + HTTP API + gRPC API in one process (the ``make run`` default)."""
    # Imported here: a worker or relay process never loads the API servers.
    from phoenix_resources.entrypoints.grpc.server import GrpcServer
    from phoenix_resources.entrypoints.http.server import build_server

    metrics, tracing = _start(settings, "all")
    supervisor = Supervisor()
    worker_component, worker_ready = _worker_component(settings, metrics, tracing)
    supervisor.add(worker_component)
    relay_component, relay_ready = _relay_component(settings, metrics, tracing)
    supervisor.add(relay_component)
    health = process_health(settings, supervisor)
    health.checks["worker"] = worker_ready
    health.checks["relay"] = relay_ready
    metrics.set_readiness("all", health.is_ready)

    async def readiness() -> dict[str, object]:
        # The API checks the database itself; the worker's and relay's own checks here.
        return {"worker": worker_ready(), "relay": relay_ready()}

    server = build_server(settings, metrics=metrics, readiness=readiness, tracing=tracing)

    def stop_server() -> None:
        server.should_exit = True

    supervisor.add(Component("api", server.run, stop_server))
    grpc_server = GrpcServer(settings, metrics=metrics)
    supervisor.add(Component("grpc", grpc_server.run, grpc_server.stop))
    log.info("serving", extra={"url": f"http://{settings.http_host}:{settings.http_port}"})
    return _run(supervisor, tracing, settings)
