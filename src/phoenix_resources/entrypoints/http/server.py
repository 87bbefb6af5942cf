"""Serving the API: ``phoenix-resources api`` (:func:`serve`), or one uvicorn server another
process runs as a component (:func:`build_server`, the ``run`` command).

Guarantees: nothing is opened at import time; :func:`create_app_from_env` is the factory
uvicorn's worker processes import, and it rebuilds exactly the settings :func:`serve` was
given, handed over through a file only this user can read (never the environment). A
stopping server lets requests in flight finish within ``http_request_timeout_s`` + 1 s.
Every connection is served under the guard (``guard.py``): deadlines to send a request, a
bound on a request head, on connections and on kept-alive idleness.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from phoenix_resources.config import Settings, revealed
from phoenix_resources.entrypoints.http.app import create_app
from phoenix_resources.entrypoints.http.guard import (
    FILES_RESERVE,
    ConnectionLimits,
    GuardedConfig,
    ensure_open_files,
)
from phoenix_resources.entrypoints.http.operations import Readiness
from phoenix_resources.observability import Metrics, configure_logging
from phoenix_resources.observability.multiprocess import forget, multiprocess_dir
from phoenix_resources.observability.tracing import Tracing

SETTINGS_FILE_ENV = "PHOENIX_API_SETTINGS_FILE"
"""Names the private file that hands :func:`serve`'s settings to its worker processes."""


def server_config(app: Any, settings: Settings, **options: Any) -> GuardedConfig:
    """uvicorn's configuration for the API: httptools under the connection guard (request
    deadlines, a bound on connections: ``guard.py``), uvloop, keep-alive bound."""
    limits = ConnectionLimits(max_connections=settings.http_max_connections,
                              header_timeout_s=settings.http_header_timeout_s,
                              body_timeout_s=settings.http_body_timeout_s)
    return GuardedConfig(app, limits=limits, host=settings.http_host, port=settings.http_port,
                         loop="uvloop", lifespan="on", access_log=False, log_config=None,
                         server_header=False,
                         timeout_keep_alive=settings.http_keepalive_timeout_s,
                         timeout_graceful_shutdown=int(settings.http_request_timeout_s) + 1,
                         **options)


def build_server(settings: Settings, *, metrics: Metrics | None = None,
                 readiness: Readiness | None = None,
                 tracing: Tracing | None = None) -> uvicorn.Server:
    """A single-process server the caller runs (``await server.serve()``) and stops."""
    ensure_open_files(settings.http_max_connections + FILES_RESERVE)
    app = create_app(settings, metrics=metrics, readiness=readiness, tracing=tracing)
    return uvicorn.Server(server_config(app, settings))


def create_app_from_env() -> FastAPI:
    """uvicorn's import-string factory for worker processes: Settings read when called, from
    the private file :func:`serve` wrote (the environment names the file, it never carries
    the settings: a child's environment is readable by too many, ``/proc/<pid>/environ``
    and crash reports included)."""
    path = os.environ.get(SETTINGS_FILE_ENV)
    if path:
        with open(path, "rb") as f:
            settings = Settings.model_validate(json.loads(f.read()))
    else:
        settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    metrics = Metrics(component="api")
    metrics.mirror_in_background()  # the other workers answer scrapes for this one too
    app = create_app(settings, metrics=metrics)
    _freeze_heap()
    return app


def _freeze_heap() -> None:
    """Move everything alive now (modules, the app, the OpenAPI models) out of the collector's
    sight: full collections then scan only per-request garbage, which keeps GC pauses out of
    the latency tail. Only for dedicated server processes (``serve``), never in tests."""
    gc.collect()
    gc.freeze()


class Workers(Multiprocess):
    """uvicorn's supervisor of the worker processes, which also tells prometheus-client's
    multiprocess mode when a worker is gone — exited, killed, replaced after a failed health
    check, retired by SIGHUP or SIGTTOU — so that its gauges leave the scrape
    (:func:`~phoenix_resources.observability.multiprocess.forget`)."""

    def keep_subprocess_alive(self) -> None:
        before = self._pids()
        super().keep_subprocess_alive()
        self._forget_gone(before)

    def handle_signals(self) -> None:
        before = self._pids()
        super().handle_signals()
        self._forget_gone(before)

    def _pids(self) -> set[int]:
        return {p.pid for p in self.processes if p.pid is not None}

    def _forget_gone(self, before: set[int]) -> None:
        for pid in before - self._pids():
            forget(pid)


def serve(settings: Settings) -> None:
    """Blocking: the ``phoenix-resources api`` command. ``http_workers`` > 1 starts worker
    processes; their metrics are then kept in a shared directory and any worker's scrape
    answers for all of them (``observability/multiprocess.py``)."""
    configure_logging(settings.log_level, settings.log_format)
    if settings.http_workers == 1:
        server = build_server(settings)
        _freeze_heap()
        server.run()
        return
    ensure_open_files(settings.http_max_connections + FILES_RESERVE)
    # Worker processes rebuild the app; hand them these exact settings through a file only
    # this user can read, named (not carried) by the environment, removed on the way out.
    folder = tempfile.mkdtemp(prefix="phoenix-api-")  # mode 0700
    path = os.path.join(folder, "settings.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(json.dumps(revealed(settings)).encode())
    os.environ[SETTINGS_FILE_ENV] = path
    try:
        with multiprocess_dir():
            # uvicorn.run's multi-process path, with the guarded configuration (which
            # uvicorn.run cannot take); it pickles, limits included, to every worker.
            config = server_config(f"{__name__}:create_app_from_env", settings,
                                   factory=True, workers=settings.http_workers)
            Workers(config, sockets=[config.bind_socket()]).run()
    finally:
        os.environ.pop(SETTINGS_FILE_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)
