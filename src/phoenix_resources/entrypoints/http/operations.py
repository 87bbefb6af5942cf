"""The operations routes: ``/healthz``, ``/readyz``, ``/metrics`` and ``/asyncapi.json``.

Guarantees: ``/healthz`` never touches the database (a restart does not bring it back);
``/readyz`` is 200 only while the read database answers within
:data:`READY_DB_TIMEOUT_S` and every check the caller adds passes (in ``run``: the worker's
and the relay's), else 503 ``RES-007`` with ``Retry-After`` and the failing checks named —
never the database's host or role. In an ``api`` process (metrics of component ``api``),
``/metrics`` evaluates the same verdict at each scrape as ``phoenix_ready{component="api"}``
(``run`` exports its own verdict, which covers the API's). They are open like
``/openapi.json`` (no token).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.entrypoints.http.fast import ApiState
from phoenix_resources.entrypoints.http.models import Health, Ready
from phoenix_resources.entrypoints.http.openapi import JSON, problem_doc
from phoenix_resources.errors import DatabaseUnavailable
from phoenix_resources.observability import Metrics

log = logging.getLogger("phoenix_resources.http")

Readiness = Callable[[], Awaitable[dict[str, object]]]

READY_DB_TIMEOUT_S = 1.0


def add_ops_routes(app: FastAPI, state: ApiState, metrics: Metrics,
                    readiness: Readiness | None) -> None:
    @app.get("/healthz", response_model=Health, tags=["operations"],
             summary="The process is alive")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.get("/readyz", response_model=Ready, tags=["operations"],
             summary="The database answers (and, in `run`, the worker has partitions)",
             responses=problem_doc(p.UNAVAILABLE))
    async def readyz(request: Request) -> Response:
        checks = await _ready_checks(state, readiness)
        return Response(orjson.dumps({"status": "ready", "checks": checks}), media_type=JSON)

    verdict = _Verdict()
    if metrics.component == "api":
        metrics.set_readiness("api", verdict)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def prometheus() -> Response:
        if metrics.component == "api":
            verdict.ready = await _passes(state, readiness)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


class _Verdict:
    """``phoenix_ready`` of an API process: the verdict of ``/readyz``'s checks, taken when
    ``/metrics`` is scraped (they are asynchronous; the collector that exports it is not)."""

    def __init__(self) -> None:
        self.ready = False

    def __call__(self) -> bool:
        return self.ready


async def _ready_checks(state: ApiState, readiness: Readiness | None) -> dict[str, object]:
    """``/readyz``'s checks when they pass; else :class:`~.problems.ApiProblem` 503."""
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
    return checks


async def _passes(state: ApiState, readiness: Readiness | None) -> bool:
    try:
        await _ready_checks(state, readiness)
    except p.ApiProblem:
        return False
    return True


def add_asyncapi_route(app: FastAPI, settings: Settings) -> None:
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
