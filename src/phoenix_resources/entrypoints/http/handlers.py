"""The app's exception handlers: every error FastAPI or a route raises is answered
``application/problem+json`` with its stable code (:mod:`.problems`).

Bad input (a failed validation) is 400 ``RES-001`` with every failing field named, never a
422; an unknown route 404, a write method 405 (the API is read-only); a database that does
not answer 503 with ``Retry-After``, its driver's text logged, never sent (it carries the
host and the role).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.errors import DatabaseUnavailable

log = logging.getLogger("phoenix_resources.http")


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


def install_error_handlers(app: FastAPI) -> None:
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
