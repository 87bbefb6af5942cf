"""Run the worker, the relay and the API as threads of one process, or one of them alone.

SIGTERM / SIGINT ask every component to stop; the process exits within
``SHUTDOWN_GRACE_S``. The worker finishes (or abandons, uncommitted) its in-flight batch, so
a stop never commits an offset past the database. If a component dies of an unexpected
error, the others are stopped and the process exits non-zero (let the supervisor restart it).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings, redact
from phoenix_resources.entrypoints.relay import build_relay
from phoenix_resources.entrypoints.worker import build_worker
from phoenix_resources.observability import Metrics, configure_logging

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


def _metrics_server(settings: Settings, metrics: Metrics) -> None:
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.http_host,
                          registry=metrics.registry)


def _start(settings: Settings) -> Metrics:
    configure_logging(settings.log_level, settings.log_format)
    log.info("starting", extra={"database": redact(settings.database_url),
                                "kafka": settings.kafka_bootstrap_servers})
    bootstrap.check_schema(settings)
    bootstrap.prepare_topics(settings)
    return Metrics()


def _worker_component(settings: Settings, metrics: Metrics) -> tuple[Component, Any]:
    warning = bootstrap.replay_window_warning(settings)
    if warning:
        log.warning(warning)
    worker, pool = build_worker(settings, metrics)

    def run() -> None:
        pool.open(wait=False)
        try:
            worker.run()
        finally:
            pool.close()

    return Component("worker", run, worker.stop), worker


def run_worker(settings: Settings) -> int:
    metrics = _start(settings)
    _metrics_server(settings, metrics)
    supervisor = Supervisor()
    supervisor.add(_worker_component(settings, metrics)[0])
    return supervisor.run()


def run_relay(settings: Settings) -> int:
    metrics = _start(settings)
    _metrics_server(settings, metrics)
    relay = build_relay(settings, metrics)
    supervisor = Supervisor()
    supervisor.add(Component("relay", relay.run, relay.stop))
    return supervisor.run()


def run_all(settings: Settings) -> int:
    """Worker + relay + HTTP API + gRPC API in one process (the ``make run`` default)."""
    from phoenix_resources.entrypoints.grpc_server import GrpcServer
    from phoenix_resources.entrypoints.http import build_server

    metrics = _start(settings)
    supervisor = Supervisor()
    worker_component, worker = _worker_component(settings, metrics)
    supervisor.add(worker_component)
    relay = build_relay(settings, metrics)
    supervisor.add(Component("relay", relay.run, relay.stop))

    async def readiness() -> dict[str, object]:
        state = worker.readiness()
        return {"worker": state, "ok": state["assigned_partitions"] > 0}

    server = build_server(settings, metrics=metrics, readiness=readiness)

    def stop_server() -> None:
        server.should_exit = True

    supervisor.add(Component("api", server.run, stop_server))
    grpc_server = GrpcServer(settings, metrics=metrics)
    supervisor.add(Component("grpc", grpc_server.run, grpc_server.stop))
    log.info("serving", extra={"url": f"http://{settings.http_host}:{settings.http_port}"})
    return supervisor.run()
