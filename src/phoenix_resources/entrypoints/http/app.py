"""The read-only HTTP lookup API (FastAPI on uvicorn): the ASGI app, assembled.

Guarantees:

* Read-only: the app connects with ``settings.api_database_url()`` (a role that can only
  ``SELECT``) through :func:`bootstrap.api_db_pool`, opened by the lifespan and closed with it.
  Nothing is opened at import time (serving is :mod:`.server`'s).
* Every error is ``application/problem+json`` with a stable code (``problems``, answered by
  ``handlers``); bad input is a 400, never a 500. Every response carries the security
  headers (``edge``).
* ``GET /api/v1/resources/{id}`` is the hot path: one coalesced primary-key query, the JSON
  rendered by PostgreSQL, no model validation; the models in ``models`` only describe it.
  Its answer is built in one place (``lookup``) for both paths that serve it: the fast
  ASGI layer (``fast``) and the documented route (``routes``).

Layers, outermost first: ``Edge`` (auth, timeout, headers, metrics), ``FastLookup`` (the
plain hot paths), then FastAPI's routes: ``routes`` (``/api/v1``), ``operations``
(health, readiness, metrics, AsyncAPI) and ``docs`` (``/docs``, offline).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from phoenix_resources.adapters.postgres.queries import ReadQueries
from phoenix_resources.bootstrap import api_db_pool
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.http.docs import add_docs_routes
from phoenix_resources.entrypoints.http.documents import Documents
from phoenix_resources.entrypoints.http.edge import Edge, TokenCheck
from phoenix_resources.entrypoints.http.fast import ApiState, FastLookup
from phoenix_resources.entrypoints.http.handlers import install_error_handlers
from phoenix_resources.entrypoints.http.openapi import openapi_builder
from phoenix_resources.entrypoints.http.operations import (
    Readiness,
    add_asyncapi_route,
    add_ops_routes,
)
from phoenix_resources.entrypoints.http.routes import add_api_routes
from phoenix_resources.observability import Metrics
from phoenix_resources.observability.tracing import Tracing


def create_app(settings: Settings, *, metrics: Metrics | None = None,
               readiness: Readiness | None = None, tracing: Tracing | None = None) -> FastAPI:
    """The ASGI app; opens its pool on lifespan start and closes it on shutdown. Traced
    (one span per request) when ``tracing`` is on; by default as the settings say."""
    metrics = metrics or Metrics(component="api")
    tracing = tracing or Tracing.from_settings(settings, "api")
    tokens = TokenCheck(settings.api_token_hashes)
    state = ApiState()
    state.page_max_bytes = settings.http_page_max_bytes

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool = api_db_pool(settings)
        # wait=False: the API starts (and /readyz says 503) while the database is away.
        await pool.open(wait=False)
        # Half the request budget: a missing database answers 503, not a 408 at the deadline.
        state.queries = ReadQueries(pool, checkout_timeout=settings.http_request_timeout_s / 2,
                                    documents=Documents(settings.list_cache_bytes))
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="phoenix-resources", version="1", lifespan=lifespan,
                  # Tracing/metrics are Prometheus here; FastAPI's OpenTelemetry hooks off.
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  # /docs is served offline by .docs (no CDN), not FastAPI's page.
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  description="Read-only lookup of resources and command outcomes. "
                              "Writes happen only through command events on Kafka.")
    install_error_handlers(app)
    add_api_routes(app, state)
    add_ops_routes(app, state, metrics, readiness)
    add_docs_routes(app)
    add_asyncapi_route(app, settings)
    app.openapi = openapi_builder(app, auth=tokens.enabled)  # type: ignore[method-assign]
    app.add_middleware(FastLookup, state=state)
    app.add_middleware(Edge, timeout_s=settings.http_request_timeout_s, tokens=tokens,
                       requests=metrics.http_requests, seconds=metrics.http_seconds,
                       access_log_ratio=settings.http_access_log_ratio)
    if tracing.enabled:
        from phoenix_resources.entrypoints.http.tracing import add_tracing

        add_tracing(app, tracing)
    return app
