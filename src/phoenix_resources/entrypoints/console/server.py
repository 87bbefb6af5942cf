"""Assemble the console and serve it: ``phoenix-resources console``."""

from __future__ import annotations

import logging

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from phoenix_resources.config import Settings, redact
from phoenix_resources.entrypoints.console.actions import action_routes
from phoenix_resources.entrypoints.console.app import Console, page_routes, secured
from phoenix_resources.entrypoints.console.auth import Sessions, Tokens
from phoenix_resources.entrypoints.console.glance import Watcher
from phoenix_resources.entrypoints.console.operations import LiveOperations, Operations
from phoenix_resources.errors import ConfigurationError

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
               sessions: Sessions | None = None) -> ASGIApp:
    """The ASGI app over ``operations`` (live, or a fake in tests)."""
    console = Console(tokens=tokens_of(settings), sessions=sessions or Sessions(),
                      operations=operations,
                      watcher=watcher or Watcher(settings.console_processes),
                      dlq_topic=settings.dlq_topic)
    static = StaticFiles(packages=[("phoenix_resources.entrypoints.console", "static")])
    app = Starlette(routes=[*page_routes(), *action_routes(),
                            Mount("/static", static, name="static")])
    app.state.console = console
    return secured(app)


def build_server(settings: Settings, operations: Operations) -> uvicorn.Server:
    """A server the caller runs (``server.run()``) and stops (``should_exit``)."""
    app = create_app(settings, operations)
    return uvicorn.Server(uvicorn.Config(app, host=settings.console_host,
                                         port=settings.console_port, log_config=None,
                                         access_log=False, lifespan="off",
                                         server_header=False))


def serve(settings: Settings) -> int:
    """Blocking: check the settings and the schema, open the database pool, serve until
    SIGTERM / SIGINT; returns the exit code."""
    from phoenix_resources import bootstrap
    from phoenix_resources.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    tokens_of(settings)
    bootstrap.check_schema(settings)
    operations = LiveOperations.build(settings)
    operations.open()
    try:
        server = build_server(settings, operations)
        log.info("serving the console", extra={
            "url": f"http://{settings.console_host}:{settings.console_port}",
            "database": redact(settings.database_url),
            "processes": sorted(settings.console_processes)})
        server.run()
    finally:
        operations.close()
    return 0
