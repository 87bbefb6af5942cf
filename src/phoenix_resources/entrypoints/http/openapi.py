"""The API's OpenAPI document (``/openapi.json``): the response descriptions the routes
declare, and the corrections applied to FastAPI's document.

The document says what the API does: bad input is a 400 (never FastAPI's 422), a problem is
``application/problem+json`` only, with its ``WWW-Authenticate`` / ``Retry-After`` headers;
with bearer tokens configured, every ``/api`` operation requires them and lists 401 and 403.
It is built on first use and kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.entrypoints.http.models import Problem

JSON = "application/json"


def problem_doc(*codes: p.Code) -> dict[int | str, dict[str, Any]]:
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
COMMON_PROBLEMS = problem_doc(p.INVALID_REQUEST, p.TIMEOUT, p.UNAVAILABLE, p.INTERNAL)


def openapi_builder(app: FastAPI, *, auth: bool) -> Callable[[], dict[str, Any]]:
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
