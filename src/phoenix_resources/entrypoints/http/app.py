"""The read-only HTTP lookup API (FastAPI on uvicorn).

Guarantees:

* Read-only: the app connects with ``settings.api_database_url()`` (a role that can only
  ``SELECT``) through :func:`bootstrap.api_db_pool`, opened by the lifespan and closed with it.
  Nothing is opened at import time; :func:`create_app_from_env` is the factory uvicorn's worker
  processes import.
* Every error is ``application/problem+json`` with a stable code (``problems``); bad input
  is a 400, never a 500. Every response carries the security headers (``edge``).
* ``GET /api/v1/resources/{id}`` is the hot path: one coalesced primary-key query, the JSON
  rendered by PostgreSQL, no model validation; the models in ``models`` only describe it.
  Its answer is built in one place (``lookup``) for both paths that serve it: the fast
  ASGI layer (``fast``) and the route below, which documents it.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any
from uuid import UUID

import orjson
import uvicorn
from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from phoenix_resources.adapters.postgres.queries import ReadQueries
from phoenix_resources.bootstrap import api_db_pool
from phoenix_resources.config import Settings, revealed
from phoenix_resources.domain.model import NAME_MAX, Status
from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.entrypoints.http.docs import add_docs_routes
from phoenix_resources.entrypoints.http.edge import Edge, TokenCheck
from phoenix_resources.entrypoints.http.fast import ApiState, FastLookup
from phoenix_resources.entrypoints.http.listing import (
    LIMIT_DEFAULT,
    LIMIT_MAX,
    ListQuery,
    decode_cursor,
    listing,
)
from phoenix_resources.entrypoints.http.lookup import lookup
from phoenix_resources.entrypoints.http.models import (
    CommandOutcome,
    Health,
    Problem,
    Ready,
    ResourceOut,
    ResourcePage,
)
from phoenix_resources.errors import DatabaseUnavailable
from phoenix_resources.observability import Metrics, configure_logging
from phoenix_resources.observability.metrics import multiprocess_dir
from phoenix_resources.observability.tracing import Tracing

log = logging.getLogger("phoenix_resources.http")

Readiness = Callable[[], Awaitable[dict[str, object]]]

JSON = "application/json"
SETTINGS_FILE_ENV = "PHOENIX_API_SETTINGS_FILE"
"""Names the private file that hands :func:`serve`'s settings to its worker processes."""
"""How :func:`serve` hands its Settings to uvicorn's worker processes."""
READY_DB_TIMEOUT_S = 1.0


def _problem_doc(*codes: p.Code) -> dict[int | str, dict[str, Any]]:
    return {c.status: {"model": Problem, "description": f"{c.code} {c.title}",
                       "content": {p.PROBLEM_TYPE: {}}} for c in codes}


ETAG_HEADERS = {
    "ETag": {"description": 'The version, as a strong tag: `"<version>"`.',
             "schema": {"type": "string", "pattern": '^"[0-9]+"$'}},
    "Cache-Control": {"description": "`private, max-age=0`: revalidate with If-None-Match.",
                      "schema": {"type": "string"}},
}
_PROBLEM_HEADERS = {
    "401": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    "503": {"Retry-After": {"schema": {"type": "string"}}},
}
COMMON_PROBLEMS = _problem_doc(p.INVALID_REQUEST, p.TIMEOUT, p.UNAVAILABLE, p.INTERNAL)


def create_app(settings: Settings, *, metrics: Metrics | None = None,
               readiness: Readiness | None = None, tracing: Tracing | None = None) -> FastAPI:
    """The ASGI app; opens its pool on lifespan start and closes it on shutdown. Traced
    (one span per request) when ``tracing`` is on; by default as the settings say."""
    metrics = metrics or Metrics(component="api")
    tracing = tracing or Tracing.from_settings(settings, "api")
    tokens = TokenCheck(settings.api_token_hashes)
    state = ApiState()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool = api_db_pool(settings)
        # wait=False: the API starts (and /readyz says 503) while the database is away.
        await pool.open(wait=False)
        # Half the request budget: a missing database answers 503, not a 408 at the deadline.
        state.queries = ReadQueries(pool, checkout_timeout=settings.http_request_timeout_s / 2)
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="phoenix-resources", version="1", lifespan=lifespan,
                  # Tracing/metrics are Prometheus here; FastAPI's OpenTelemetry hooks off.
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  # /docs is served offline by the docs module (no CDN), not FastAPI's page.
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  description="Read-only lookup of resources and command outcomes. "
                              "Writes happen only through command events on Kafka.")
    _install_error_handlers(app)
    _add_api_routes(app, state)
    _add_ops_routes(app, state, metrics, readiness)
    add_docs_routes(app)
    _add_asyncapi_route(app, settings)
    app.openapi = _openapi_builder(app, auth=tokens.enabled)  # type: ignore[method-assign]
    app.add_middleware(FastLookup, state=state)
    app.add_middleware(Edge, timeout_s=settings.http_request_timeout_s, tokens=tokens,
                       requests=metrics.http_requests, seconds=metrics.http_seconds,
                       access_log_ratio=settings.http_access_log_ratio)
    if tracing.enabled:
        from phoenix_resources.entrypoints.http.tracing import add_tracing

        add_tracing(app, tracing)
    return app


# --- routes ---------------------------------------------------------------------------------

def _reject_unknown_query(request: Request, allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise p.ApiProblem(p.INVALID_REQUEST, f"unknown query parameter(s): {', '.join(unknown)}"
                           f"; allowed: {', '.join(sorted(allowed)) or 'none'}")


def _add_api_routes(app: FastAPI, state: ApiState) -> None:
    no_query: frozenset[str] = frozenset()
    list_query = frozenset({"status", "name_prefix", "limit", "cursor"})

    @app.get("/api/v1/resources/{resource_id}", response_model=ResourceOut,
             tags=["resources"], summary="A resource by id",
             responses={200: {"headers": ETAG_HEADERS},
                        304: {"description": "Not modified (If-None-Match matched the ETag)",
                              "headers": ETAG_HEADERS},
                        **_problem_doc(p.NOT_FOUND), **COMMON_PROBLEMS},
             response_description="The resource; `ETag` is its version. A deleted resource "
                                  "answers 404 RES-004, an unknown id 404 RES-002.")
    async def get_resource(
        request: Request, resource_id: Annotated[UUID, Path()],
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        if request.query_params:
            _reject_unknown_query(request, no_query)
        # The plain form is answered by FastLookup; this route serves the other forms (e.g. an
        # id without hyphens) with the same answer (lookup.py), and documents the operation.
        answer = await lookup(state.queries, resource_id, if_none_match, request.scope["path"])
        return answer.response()

    @app.get("/api/v1/resources", response_model=ResourcePage, tags=["resources"],
             summary="Live resources, keyset-paginated",
             responses={**COMMON_PROBLEMS})
    async def list_resources(
        request: Request,
        status: Annotated[Status | None, Query(description="Only this status.")] = None,
        name_prefix: Annotated[str | None, Query(
            min_length=1, max_length=NAME_MAX,
            description="Only names starting with this; orders by (name, id).")] = None,
        limit: Annotated[int, Query(ge=1, le=LIMIT_MAX)] = LIMIT_DEFAULT,
        cursor: Annotated[str | None, Query(
            max_length=2048, pattern=r"^[A-Za-z0-9_-]+$",
            description="`next_cursor` of the previous page, unchanged (opaque; a cursor "
                        "this API did not issue is refused with 400).")] = None,
    ) -> Response:
        _reject_unknown_query(request, list_query)
        # The plain forms are answered by FastLookup; both send what listing.py answers.
        after = None if cursor is None else decode_cursor(cursor, by_name=name_prefix is not None)
        query = ListQuery(status.value if status else None, name_prefix, after, limit)
        return (await listing(state.queries, query)).response()

    @app.get("/api/v1/commands/{command_id}", response_model=CommandOutcome,
             tags=["commands"], summary="The recorded outcome of a command",
             responses={**_problem_doc(p.NOT_FOUND), **COMMON_PROBLEMS})
    async def get_command(request: Request, command_id: Annotated[UUID, Path()]) -> Response:
        if request.query_params:
            _reject_unknown_query(request, no_query)
        doc = await state.queries.command(command_id)
        if doc is None:
            raise p.ApiProblem(p.NOT_FOUND, f"no outcome recorded for command {command_id} "
                               "(not processed yet, unknown, or pruned)")
        return Response(doc, media_type=JSON)


def _add_ops_routes(app: FastAPI, state: ApiState, metrics: Metrics,
                    readiness: Readiness | None) -> None:
    @app.get("/healthz", response_model=Health, tags=["operations"],
             summary="The process is alive")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.get("/readyz", response_model=Ready, tags=["operations"],
             summary="The database answers (and, in `run`, the worker has partitions)",
             responses=_problem_doc(p.UNAVAILABLE))
    async def readyz(request: Request) -> Response:
        checks: dict[str, object] = {}
        try:
            latency = await state.queries.ping(READY_DB_TIMEOUT_S)
        except DatabaseUnavailable as e:
            # Named, never described: the driver's text carries the host and the role.
            log.warning("readiness: database unavailable", extra={"error": str(e)[:300]})
            raise p.ApiProblem(p.UNAVAILABLE, p.DATABASE_UNAVAILABLE,
                               headers={"retry-after": "1"},
                               checks={"database": {"ok": False}}) from e
        checks["database"] = {"ok": True, "latency_ms": round(latency * 1000, 2)}
        if readiness is not None:
            checks.update(await _extra_checks(readiness))
        return Response(orjson.dumps({"status": "ready", "checks": checks}), media_type=JSON)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _add_asyncapi_route(app: FastAPI, settings: Settings) -> None:
    """``/asyncapi.json``: the Kafka interface's AsyncAPI 3.0 document for these settings
    (``entrypoints/asyncapi.py``), built on first request; open like ``/openapi.json``."""
    cache: list[bytes] = []

    @app.get("/asyncapi.json", tags=["operations"], response_class=Response,
             summary="AsyncAPI 3.0 document of the Kafka topics (commands, events, ...)",
             responses={200: {"content": {JSON: {"schema": {"type": "object"}}}}})
    async def asyncapi() -> Response:
        if not cache:
            from phoenix_resources.entrypoints.asyncapi import document

            cache.append(orjson.dumps(document(settings)))
        return Response(cache[0], media_type=JSON)


async def _extra_checks(readiness: Readiness) -> dict[str, object]:
    """The caller's checks, e.g. ``{"worker": {...}, "ok": True}``.

    Not ready when it raises, when its top-level ``ok`` is False, or when any check's own
    ``ok`` is False. The top-level ``ok`` is a verdict, not a check: it is not echoed back.
    """
    try:
        extra = dict(await readiness())
    except Exception as e:
        log.warning("readiness check failed", extra={"error": str(e)[:300]})
        raise p.ApiProblem(p.UNAVAILABLE, "not ready: the readiness check failed",
                           headers={"retry-after": "1"}) from e
    verdict = extra.pop("ok", True)
    failing = sorted(k for k, v in extra.items() if isinstance(v, dict) and v.get("ok") is False)
    if verdict is False or failing:
        raise p.ApiProblem(p.UNAVAILABLE, f"not ready: {', '.join(failing) or 'readiness check'}",
                           headers={"retry-after": "1"}, checks=extra)
    return extra


# --- errors and the OpenAPI document --------------------------------------------------------

def _problem_response(request: Request, code: p.Code, detail: str,
                      headers: dict[str, str] | None = None, **extensions: Any) -> Response:
    return Response(p.problem_body(code, detail, request.url.path, **extensions),
                    status_code=code.status, media_type=p.PROBLEM_TYPE, headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    async def api_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, p.ApiProblem)
        return _problem_response(request, exc.code, exc.detail, exc.headers, **exc.extensions)

    async def validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _problem_response(request, p.INVALID_REQUEST, _validation_detail(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        by_status = {c.status: c for c in (p.NOT_FOUND, p.METHOD_NOT_ALLOWED)}
        code = by_status.get(exc.status_code, p.INVALID_REQUEST)
        detail = {404: f"no route {request.url.path}",
                  405: f"{request.method} is not allowed here; this API is read-only"}.get(
            exc.status_code, str(exc.detail))
        return _problem_response(request, code, detail, dict(exc.headers or {}))

    async def unavailable(request: Request, exc: Exception) -> Response:
        log.warning("database unavailable", extra={"error": str(exc)[:300]})
        return _problem_response(request, p.UNAVAILABLE, p.DATABASE_UNAVAILABLE,
                                 {"retry-after": "1"})

    app.add_exception_handler(p.ApiProblem, api_problem)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(DatabaseUnavailable, unavailable)


def _openapi_builder(app: FastAPI, *, auth: bool) -> Callable[[], dict[str, Any]]:
    """FastAPI's document, corrected: 400 (not 422) for bad input, problem+json, bearer auth."""
    original = app.openapi

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = original()
        for path, item in doc.get("paths", {}).items():
            for op in item.values():
                responses = op.get("responses", {})
                responses.pop("422", None)
                for code, resp in responses.items():
                    if code != "200" and "content" in resp:
                        # Problems are problem+json only; FastAPI also lists application/json.
                        schema = resp["content"].get(p.PROBLEM_TYPE, {}).get("schema") or \
                            resp["content"].get(JSON, {}).get("schema")
                        resp["content"] = {p.PROBLEM_TYPE: {"schema": schema}}
                    if code in _PROBLEM_HEADERS:
                        resp["headers"] = _PROBLEM_HEADERS[code]
                if auth and path.startswith("/api/"):
                    op["security"] = [{"bearer": []}]
                    responses.update({str(c.status): {
                        "description": f"{c.code} {c.title}",
                        "headers": _PROBLEM_HEADERS.get(str(c.status), {}),
                        "content": {p.PROBLEM_TYPE: {
                            "schema": {"$ref": "#/components/schemas/Problem"}}}}
                        for c in (p.UNAUTHORIZED, p.FORBIDDEN)})
        schemas = doc.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        if auth:
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}}
        app.openapi_schema = doc
        return doc

    return build


# --- serving --------------------------------------------------------------------------------

def _server_options(settings: Settings) -> dict[str, Any]:
    return {"host": settings.http_host, "port": settings.http_port, "loop": "uvloop",
            "http": "httptools", "lifespan": "on", "access_log": False, "log_config": None,
            "server_header": False,
            "timeout_graceful_shutdown": int(settings.http_request_timeout_s) + 1}


def build_server(settings: Settings, *, metrics: Metrics | None = None,
                 readiness: Readiness | None = None,
                 tracing: Tracing | None = None) -> uvicorn.Server:
    """A single-process server the caller runs (``await server.serve()``) and stops."""
    app = create_app(settings, metrics=metrics, readiness=readiness, tracing=tracing)
    return uvicorn.Server(uvicorn.Config(app, **_server_options(settings)))


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
    app = create_app(settings)
    _freeze_heap()
    return app


def _freeze_heap() -> None:
    """Move everything alive now (modules, the app, the OpenAPI models) out of the collector's
    sight: full collections then scan only per-request garbage, which keeps GC pauses out of
    the latency tail. Only for dedicated server processes (``serve``), never in tests."""
    gc.collect()
    gc.freeze()


def serve(settings: Settings) -> None:
    """Blocking: the ``phoenix-resources api`` command. ``http_workers`` > 1 starts worker
    processes; their metrics are then kept in a shared directory and every scrape answers
    the sum over all of them (``observability.metrics.multiprocess_dir``)."""
    configure_logging(settings.log_level, settings.log_format)
    if settings.http_workers == 1:
        server = build_server(settings)
        _freeze_heap()
        server.run()
        return
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
            uvicorn.run(f"{__name__}:create_app_from_env", factory=True,
                        workers=settings.http_workers, **_server_options(settings))
    finally:
        os.environ.pop(SETTINGS_FILE_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)
