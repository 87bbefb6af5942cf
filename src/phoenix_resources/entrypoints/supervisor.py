"""Process supervision: the components of one process run as threads, and stop together.

Guarantees:

* SIGTERM / SIGINT ask every component to stop, and each gets :data:`SHUTDOWN_GRACE_S`
  to finish; one still running then is logged by name and the exit code is 1.
* A component that dies of an unexpected error is logged with its traceback (``component
  died``), the others are stopped, and the exit code is 1 (let the platform restart the
  process); a clean stop is 0.
* Health (:func:`process_health`): live while no component died, ready while the database
  answers and the checks the caller adds pass; served with ``/metrics`` on the component's
  own port by :func:`serve_health`.

The worker, relay and ``run`` processes (``runner``) and the gRPC server process
(``grpc.server``) are built on this module; it imports neither of them.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Literal

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings
from phoenix_resources.observability import Metrics
from phoenix_resources.observability.health import (
    Health,
    HealthServer,
    database_check,
)

# The logger keeps the name these lines have always been logged under.
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


def serve_health(settings: Settings, component: Literal["worker", "relay"],
                 metrics: Metrics, health: Health) -> HealthServer | None:
    """/metrics, /healthz and /readyz of a worker or relay process, on its own port."""
    port = settings.metrics_port_for(component)
    if not port:
        return None
    return HealthServer(settings.http_host, port, metrics.exposition, health).start()


def process_health(settings: Settings, supervisor: Supervisor) -> Health:
    """Live while no component died; ready while the database answers (and the
    components' own checks, added by the caller, pass)."""
    return Health(checks={"database": database_check(bootstrap.database_ping(settings))},
                  alive=[lambda: not supervisor.failed])
