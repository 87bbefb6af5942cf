"""Run the worker, the relay and the API as threads of one process, or one of them alone.

SIGTERM / SIGINT ask every component to stop; the process exits within
``SHUTDOWN_GRACE_S``. The worker finishes (or abandons, uncommitted) its in-flight batch, so
a stop never commits an offset past the database. If a component dies of an unexpected
error, the others are stopped and the process exits non-zero (let the supervisor restart it).
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Literal

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings, redact
from phoenix_resources.entrypoints.relay import Relay, build_relay
from phoenix_resources.entrypoints.worker import Worker, build_worker
from phoenix_resources.observability import Metrics, configure_logging
from phoenix_resources.observability.health import (
    Health,
    HealthServer,
    database_check,
)
from phoenix_resources.observability.tracing import Tracing

log = logging.getLogger("phoenix_resources.runner")

SHUTDOWN_GRACE_S = 20.0


@dataclass
class Component:
    name: str
    run: Callable[[], None]
    stop: Callable[[], None]


class Supervisor:
    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.failed: list[str] = []
        self._components: list[Component] = []
        self._threads: list[threading.Thread] = []

    def add(self, component: Component) -> None:
        self._components.append(component)

    def _body(self, c: Component) -> None:
        try:
            c.run()
        except BaseException:
            log.exception("component died", extra={"component": c.name})
            self.failed.append(c.name)
        finally:
            self.stopping.set()

    def run(self) -> int:
        for c in self._components:
            t = threading.Thread(target=self._body, args=(c,), name=c.name, daemon=True)
            self._threads.append(t)
            t.start()
        self._install_signals()
        self.stopping.wait()
        for c in self._components:
            c.stop()
        for t in self._threads:
            t.join(SHUTDOWN_GRACE_S)
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            log.error("components did not stop in time", extra={"components": stuck})
        return 1 if self.failed or stuck else 0

    def _install_signals(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("stopping", extra={"signal": signal.Signals(signum).name})
            self.stopping.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _serve_health(settings: Settings, component: Literal["worker", "relay"],
                  metrics: Metrics, health: Health) -> HealthServer | None:
    """/metrics, /healthz and /readyz of a worker or relay process, on its own port."""
    port = settings.metrics_port_for(component)
    if not port:
        return None
    return HealthServer(settings.http_host, port, metrics.exposition, health).start()


def _health(settings: Settings, supervisor: Supervisor) -> Health:
    """Live while no component died; ready while the database answers (and the
    components' own checks, added by the caller, pass)."""
    return Health(checks={"database": database_check(bootstrap.database_ping(settings))},
                  alive=[lambda: not supervisor.failed])


def _start(settings: Settings, component: str) -> tuple[Metrics, Tracing]:
    configure_logging(settings.log_level, settings.log_format)
    log.info("starting", extra={"database": redact(settings.database_url),
                                "kafka": settings.kafka_bootstrap_servers,
                                "component": component})
    bootstrap.check_schema(settings)
    bootstrap.prepare_topics(settings)
    return Metrics(component=component), Tracing.from_settings(settings, component)


def _worker_component(settings: Settings, metrics: Metrics,
                      tracing: Tracing) -> tuple[Component, Worker]:
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

    return Component("worker", run, worker.stop), worker


def _relay_component(settings: Settings, metrics: Metrics,
                     tracing: Tracing) -> tuple[Component, Relay]:
    relay = build_relay(settings, metrics, tracing)
    return Component("relay", relay.run, relay.stop), relay


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


def run_worker(settings: Settings) -> int:
    metrics, tracing = _start(settings, "worker")
    supervisor = Supervisor()
    component, worker = _worker_component(settings, metrics, tracing)
    supervisor.add(component)
    health = _health(settings, supervisor)
    health.checks["consumer"] = worker.readiness
    metrics.set_readiness("worker", health.is_ready)
    return _run(supervisor, tracing, settings,
                _serve_health(settings, "worker", metrics, health))


def run_relay(settings: Settings) -> int:
    metrics, tracing = _start(settings, "relay")
    supervisor = Supervisor()
    component, relay = _relay_component(settings, metrics, tracing)
    supervisor.add(component)
    health = _health(settings, supervisor)
    health.checks["relay"] = relay.watch.readiness
    metrics.set_readiness("relay", health.is_ready)
    return _run(supervisor, tracing, settings,
                _serve_health(settings, "relay", metrics, health))


def run_all(settings: Settings) -> int:
    """Worker + relay + HTTP API + gRPC API in one process (the ``make run`` default)."""
    from phoenix_resources.entrypoints.grpc.server import GrpcServer
    from phoenix_resources.entrypoints.http.server import build_server

    metrics, tracing = _start(settings, "all")
    supervisor = Supervisor()
    worker_component, worker = _worker_component(settings, metrics, tracing)
    supervisor.add(worker_component)
    relay_component, relay = _relay_component(settings, metrics, tracing)
    supervisor.add(relay_component)
    health = _health(settings, supervisor)
    health.checks["worker"] = worker.readiness
    health.checks["relay"] = relay.watch.readiness
    metrics.set_readiness("all", health.is_ready)

    async def readiness() -> dict[str, object]:
        # The API checks the database itself; the worker's and relay's own checks here.
        return {"worker": worker.readiness(), "relay": relay.watch.readiness()}

    server = build_server(settings, metrics=metrics, readiness=readiness, tracing=tracing)

    def stop_server() -> None:
        server.should_exit = True

    supervisor.add(Component("api", server.run, stop_server))
    grpc_server = GrpcServer(settings, metrics=metrics)
    supervisor.add(Component("grpc", grpc_server.run, grpc_server.stop))
    log.info("serving", extra={"url": f"http://{settings.http_host}:{settings.http_port}"})
    return _run(supervisor, tracing, settings)
