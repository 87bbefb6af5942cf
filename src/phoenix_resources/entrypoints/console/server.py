"""Assemble the console and serve it: ``phoenix-resources console``.

Beside the pages, open like ``/healthz`` (no token), as every process has them:
``/readyz`` (the database the console acts on answers within a second; the body as the
worker's) and ``/metrics`` (``phoenix_build_info`` and ``phoenix_ready`` of component
``console``, the process and Python figures).
"""

from __future__ import annotations

import logging

import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from phoenix_resources.config import Settings, redact
from phoenix_resources.entrypoints.console.actions import action_routes
from phoenix_resources.entrypoints.console.app import Console, page_routes, secured
from phoenix_resources.entrypoints.console.auth import Sessions, Tokens
from phoenix_resources.entrypoints.console.glance import Watcher
from phoenix_resources.entrypoints.console.operations import LiveOperations, Operations
from phoenix_resources.entrypoints.http.guard import ConnectionLimits, GuardedConfig
from phoenix_resources.errors import ConfigurationError
from phoenix_resources.observability import Metrics
from phoenix_resources.observability.health import Health

log = logging.getLogger("phoenix_resources.console")


def tokens_of(settings: Settings) -> Tokens:
    """The console's tokens; none at all is a configuration error (it never runs open)."""
    tokens = Tokens(settings.console_viewer_token_hashes,
                    settings.console_operator_token_hashes)
    if not tokens.configured:
        raise ConfigurationError(
            "the console needs at least one token: set PHOENIX_CONSOLE_OPERATOR_TOKEN_HASHES "
            "and/or PHOENIX_CONSOLE_VIEWER_TOKEN_HASHES (label -> SHA-256 hex digest)")
    return tokens


def create_app(settings: Settings, operations: Operations, *, watcher: Watcher | None = None,
               sessions: Sessions | None = None, metrics: Metrics | None = None,
               health: Health | None = None) -> ASGIApp:
    """The ASGI app over ``operations`` (live, or a fake in tests); ``health`` holds the
    readiness checks (none: ready)."""
    console = Console(tokens=tokens_of(settings), sessions=sessions or Sessions(),
                      operations=operations,
                      watcher=watcher or Watcher(settings.console_processes),
                      dlq_topic=settings.dlq_topic)
    static = StaticFiles(packages=[("phoenix_resources.entrypoints.console", "static")])
    app = Starlette(routes=[*page_routes(), *action_routes(),
                            *ops_routes(metrics or Metrics(component="console"),
                                        health or Health()),
                            Mount("/static", static, name="static")])
    app.state.console = console
    return secured(app)


def ops_routes(metrics: Metrics, health: Health) -> list[BaseRoute]:
    """``/readyz`` and ``/metrics`` (their checks may wait on the database: in a thread)."""
    metrics.set_readiness("console", health.is_ready)

    async def readyz(_: Request) -> Response:
        ready, checks = await run_in_threadpool(health.ready)
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return Response(orjson.dumps(body, default=str), 200 if ready else 503,
                        media_type="application/json")

    async def prometheus(_: Request) -> Response:
        return Response(await run_in_threadpool(metrics.exposition),
                        media_type=CONTENT_TYPE_LATEST)

    return [Route("/readyz", readyz), Route("/metrics", prometheus)]


def build_server(settings: Settings, operations: Operations,
                 health: Health | None = None) -> uvicorn.Server:
    """A server the caller runs (``server.run()``) and stops (``should_exit``)."""
    app = create_app(settings, operations, health=health)
    # The API's connection guard: request deadlines and a bound on connections, so slow or
    # abusive clients cannot hold the console (login needs no credential to reach it).
    limits = ConnectionLimits(max_connections=settings.http_max_connections,
                              header_timeout_s=settings.http_header_timeout_s,
                              body_timeout_s=settings.http_body_timeout_s)
    return uvicorn.Server(GuardedConfig(app, limits=limits, host=settings.console_host,
                                        port=settings.console_port, log_config=None,
                                        access_log=False, lifespan="off", server_header=False,
                                        timeout_keep_alive=settings.http_keepalive_timeout_s))


def serve(settings: Settings) -> int:
    """Blocking: check the settings and the schema, open the database pool, serve until
    SIGTERM / SIGINT; returns the exit code."""
    from phoenix_resources import bootstrap
    from phoenix_resources.observability import configure_logging
    from phoenix_resources.observability.health import database_check

    configure_logging(settings.log_level, settings.log_format)
    tokens_of(settings)
    bootstrap.check_schema(settings)
    operations = LiveOperations.build(settings)
    operations.open()
    try:
        health = Health(checks={"database": database_check(bootstrap.database_ping(settings))})
        server = build_server(settings, operations, health)
        log.info("serving the console", extra={
            "url": f"http://{settings.console_host}:{settings.console_port}",
            "database": redact(settings.database_url),
            "processes": sorted(settings.console_processes)})
        server.run()
    finally:
        operations.close()
    return 0
