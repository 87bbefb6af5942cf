"""Liveness and readiness, and the small HTTP server of the worker and relay processes.

Semantics (docs/operations.md#health):

* ``GET /healthz`` — **live**: 200 while the process serves HTTP and none of its components
  (worker, relay threads) has died; 503 otherwise. Liveness never depends on PostgreSQL or
  Kafka: restarting a process does not bring a database back.
* ``GET /readyz`` — **ready**: 200 when every check passes, else 503; the body lists every
  check (``{"status": "ready"|"not ready", "checks": {name: {"ok": …, …}}}``). The worker's
  checks: the database answers; it has joined its group (partitions assigned, or none left
  to assign to it); it is not stuck (records waiting and no batch finished for
  ``PHOENIX_STUCK_AFTER_S``). The relay's: the database answers; when leading, not stuck
  (outbox rows waiting and nothing published for ``PHOENIX_STUCK_AFTER_S``).
* ``GET /metrics`` — the process's registry (``phoenix_ready{component}`` mirrors /readyz).

A check is evaluated at most once per ``ttl`` (the database ping costs a connection), so
probes and scrapes together cost at most one ping a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from phoenix_resources.errors import ConfigurationError

log = logging.getLogger("phoenix_resources.health")

Detail = dict[str, Any]
Check = Callable[[], Detail]
"""A readiness check: a dict with at least ``ok`` (bool)."""


class CachedCheck:
    """``check`` evaluated at most once per ``ttl`` seconds; an exception counts as not ok."""

    def __init__(self, check: Callable[[], Detail], ttl: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._check = check
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._value: Detail = {"ok": False}

    def __call__(self) -> Detail:
        with self._lock:
            if self._clock() - self._at >= self._ttl:
                try:
                    self._value = dict(self._check())
                except Exception as e:
                    self._value = {"ok": False, "error": str(e)[:300]}
                self._at = self._clock()
            return dict(self._value)


def database_check(ping: Callable[[float], float], timeout: float = 1.0) -> Check:
    """A check from a ping that returns the round trip in seconds (raises when down)."""

    def check() -> Detail:
        return {"ok": True, "latency_ms": round(ping(timeout) * 1000, 2)}

    return CachedCheck(check)


@dataclass
class Health:
    """The checks of one process."""

    checks: dict[str, Check] = field(default_factory=dict)
    alive: list[Callable[[], bool]] = field(default_factory=list)

    def live(self) -> bool:
        return all(fn() for fn in self.alive)

    def ready(self) -> tuple[bool, dict[str, Detail]]:
        results: dict[str, Detail] = {}
        for name, check in self.checks.items():
            try:
                results[name] = check()
            except Exception as e:
                results[name] = {"ok": False, "error": str(e)[:300]}
        return all(r.get("ok") is True for r in results.values()), results

    def is_ready(self) -> bool:
        return self.ready()[0]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, self.server.exposition(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            live = self.server.health.live()
            self._json(200 if live else 503, {"status": "ok" if live else "dead"})
        elif path == "/readyz":
            ready, checks = self.server.health.ready()
            self._json(200 if ready else 503,
                       {"status": "ready" if ready else "not ready", "checks": checks})
        else:
            self._json(404, {"status": "not found", "paths": ["/metrics", "/healthz",
                                                              "/readyz"]})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._answer(status, orjson.dumps(body, default=str), "application/json")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes and scrapes are not worth a log line each


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], exposition: Callable[[], bytes],
                 health: Health) -> None:
        super().__init__(address, _Handler)
        self.exposition = exposition
        self.health = health


class HealthServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one port, served by a daemon thread."""

    def __init__(self, host: str, port: int, exposition: Callable[[], bytes],
                 health: Health) -> None:
        try:
            self._server = _Server((host, port), exposition, health)
        except OSError as e:
            raise ConfigurationError(f"cannot serve /metrics on {host}:{port}: {e} (another "
                                     "process on this port? see PHOENIX_*_METRICS_PORT)") from e
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="health-server", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("serving metrics and health", extra={"port": self.port})
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
